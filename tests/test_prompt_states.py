"""Tier 1-2: prompt reuse (soundstorm/model/prompt_states.py, generate's prompt_refresh).

A pass over the frames after the prompts, right after the prompt's states were recorded, must
compute what the full pass computed there: padding, prompts of different lengths (shorter than
the convolution's reach, or none) and per-example positions included. The decoding properties
under every prompt_refresh (prompt kept, masks, budgets, pass counts, batched equals alone) are
in tests/test_decoding.py.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm.model.prompt_states import PromptStates
from tests.conftest import tiny_model

Q = 3


def after_prompt(x: torch.Tensor, prompt_lengths: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, T, ...] -> its frames after each prompt, left-aligned [B, G, ...], and their validity [B, G]."""
    G = int((lengths - prompt_lengths).max())
    index = (prompt_lengths[:, None] + torch.arange(G)).clamp(max=x.shape[1] - 1)  # [B, G]
    valid = torch.arange(G) < (lengths - prompt_lengths)[:, None]
    return x.gather(1, index.view(*index.shape, *[1] * (x.dim() - 2)).expand(-1, -1, *x.shape[2:])), valid


@settings(max_examples=40, deadline=None)
@given(data=st.data(), B=st.integers(1, 4), T=st.integers(2, 24), kernel=st.sampled_from([3, 5, 7]))
def test_a_pass_after_the_prompt_equals_the_full_pass_while_nothing_changed(
        data: st.DataObject, B: int, T: int, kernel: int) -> None:
    model = tiny_model(conv_kernel_size=kernel)
    lengths = torch.tensor(data.draw(st.lists(st.integers(2, T), min_size=B, max_size=B)))
    prompt_lengths = torch.tensor([data.draw(st.integers(0, int(L) - 1)) for L in lengths])
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31)))
    codes = torch.randint(17, (B, T, Q), generator=g)  # MASK (16) included
    condition = torch.randn(B, T, 32, generator=g, dtype=torch.float64)
    valid = torch.arange(T) < lengths[:, None]

    states = PromptStates(prompt_lengths)
    full = model.hidden_states(codes, condition, valid, states)  # [B, T, D]
    assert len(states.keys) == len(states.conv_tails) == model.config.depth
    codes_after, valid_after = after_prompt(codes, prompt_lengths, lengths)
    fast = model.hidden_states_after_prompt(codes_after, after_prompt(condition, prompt_lengths, lengths)[0],
                                            valid_after, states)  # [B, G, D]
    expected, _ = after_prompt(full, prompt_lengths, lengths)
    torch.testing.assert_close(fast[valid_after], expected[valid_after], rtol=0, atol=1e-10)


def test_the_recorded_states_are_the_prompt_s_own_and_refused_when_reused_wrongly() -> None:
    model = tiny_model()
    codes = torch.randint(16, (2, 12, Q))
    prompt_lengths = torch.tensor([5, 1])
    states = PromptStates(prompt_lengths)
    model.hidden_states(codes, None, None, states)
    assert states.frames == 5
    assert states.keys[0].shape == (2, 4, 5, 8)  # [B, H, P, Dh]
    # The convolution's context before a one-frame prompt: zero padding, then its one frame.
    assert states.conv_tails[0].shape == (2, 2, 32)
    assert bool((states.conv_tails[0][1, 0] == 0).all()) and bool((states.conv_tails[0][1, 1] != 0).any())
    with pytest.raises(ValueError, match="must be an empty PromptStates"):
        model.hidden_states(codes, None, None, states)
    with pytest.raises(ValueError, match="do not fit a 2-layer Conformer over 3 examples"):
        model.hidden_states_after_prompt(torch.randint(16, (3, 4, Q)), None, torch.ones(3, 4, dtype=torch.bool), states)


@pytest.mark.parametrize("refresh", ["level", "once"])
def test_a_refresh_at_every_pass_is_the_exact_decoding(refresh: str) -> None:
    """With one pass per level ("level") or one pass in all ("once"), every pass refreshes: the
    tokens are those of exact decoding, bit for bit."""
    model = tiny_model()
    g = torch.Generator().manual_seed(3)
    semantic = torch.randint(10, (2, 10), generator=g)
    prompt = torch.randint(16, (2, 6, Q), generator=g)
    steps = [1, 1, 1] if refresh == "level" else [1]
    kwargs = dict(lengths=torch.tensor([20, 15]), prompt_codes=prompt, prompt_lengths=torch.tensor([6, 4]),
                  steps=steps, guidance_scale=2.0)
    exact = model.generate(semantic, generator=torch.Generator().manual_seed(0), **kwargs)
    reused = model.generate(semantic, generator=torch.Generator().manual_seed(0), prompt_refresh=refresh, **kwargs)
    assert torch.equal(exact, reused)


def test_prompt_reuse_runs_the_later_passes_over_the_new_frames_alone() -> None:
    model = tiny_model()
    seen: list[int] = []
    model.conformer.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    original = model.conformer.forward_after_prompt
    model.conformer.forward_after_prompt = lambda x, *rest: (seen.append(x.shape[1]), original(x, *rest))[1]  # type: ignore[method-assign]
    semantic = torch.randint(10, (2, 10))
    prompt = torch.randint(16, (2, 8, Q))
    model.generate(semantic, lengths=torch.tensor([20, 17]), prompt_codes=prompt, prompt_lengths=torch.tensor([8, 5]),
                   steps=[3, 1, 1], prompt_refresh="once")
    assert seen == [20, 12, 12, 12, 12]  # one full pass, then max(20 - 8, 17 - 5) = 12 frames after the prompts


def test_a_bad_prompt_refresh_is_refused() -> None:
    with pytest.raises(ValueError, match="prompt_refresh must be one of pass, level, once"):
        tiny_model().generate(torch.zeros(1, 5, dtype=torch.long), prompt_refresh="sometimes")
