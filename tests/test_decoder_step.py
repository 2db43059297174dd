"""CausalDecoder.step, the one-position pass of incremental decoding: the same numbers as
forward over that position, bit for bit, whatever the batch, the prefix, the cache's growth, the
step weights (float16, int8) and autocast; and the text-to-semantic model and the AR baseline,
which decode with it, still generate what a full forward pass over their output predicts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm.baselines import ARAcousticConfig, ARAcousticModel
from soundstorm.model.decoder import CausalDecoder, KVCache
from soundstorm.model.step_linear import use_step_weights
from soundstorm.text.model import TextToSemantic, TextToSemanticConfig


def decoder(heads: int = 2, seed: int = 0) -> CausalDecoder:
    torch.manual_seed(seed)
    return CausalDecoder(dim=8 * heads, depth=2, heads=heads, ff_dim=24, dropout=0.1).eval()


@settings(deadline=None, max_examples=30)
@given(batch=st.integers(1, 4), prefix=st.integers(1, 70), steps=st.integers(1, 70), heads=st.sampled_from([1, 2, 4]),
       weights=st.sampled_from([None, torch.float16, torch.int8]), bf16=st.booleans())
def test_a_step_equals_the_forward_pass_over_its_position(batch: int, prefix: int, steps: int, heads: int,
                                                          weights: torch.dtype | None, bf16: bool) -> None:
    """Up to 140 positions: the cache (64 at first) grows on the way, in either path."""
    model = decoder(heads)
    if weights is not None:
        use_step_weights(model, weights)
    x = torch.randn(batch, prefix + steps, model.norm.normalized_shape[0], generator=torch.Generator().manual_seed(prefix))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        by_forward, by_step = KVCache(), KVCache()
        model(x[:, :prefix], by_forward)
        model(x[:, :prefix], by_step)
        for t in range(prefix, prefix + steps):
            expected = model(x[:, t : t + 1], by_forward)[:, 0]  # [B, D]
            got = model.step(x[:, t], by_step)
            assert torch.equal(got, expected), (t, (got - expected).abs().max())
        assert by_step.length == by_forward.length == prefix + steps
        for layer in range(len(model.blocks)):
            assert torch.equal(by_step.keys[layer][:, :, : prefix + steps], by_forward.keys[layer][:, :, : prefix + steps])
            assert torch.equal(by_step.values[layer][:, :, : prefix + steps],
                               by_forward.values[layer][:, :, : prefix + steps])


def test_a_step_with_an_empty_cache_is_the_first_position() -> None:
    model = decoder()
    x = torch.randn(3, 16)
    with torch.inference_mode():
        assert torch.equal(model.step(x, KVCache()), model(x[:, None], KVCache())[:, 0])


def test_a_step_refuses_training_mode_and_a_sequence() -> None:
    model = decoder()
    with pytest.raises(RuntimeError, match="eval"):
        model.train().step(torch.randn(1, 16), KVCache())
    with pytest.raises(ValueError, match=r"x \[B, D\]"):
        model.eval().step(torch.randn(1, 2, 16), KVCache())


def test_text_to_semantic_generation_follows_its_own_greedy_predictions() -> None:
    """Greedy tokens from step-by-step decoding are the argmax of a full forward pass over text,
    separator and those tokens: the steps see what training's teacher-forced pass sees."""
    torch.manual_seed(0)
    model = TextToSemantic(TextToSemanticConfig(semantic_vocab_size=16, dim=32, depth=2, heads=2, dropout=0.0)).eval()
    text = torch.tensor([3, 5, 7, 9, 11, 2])
    prompt = torch.tensor([1, 4, 4, 9])
    out = model.generate(text, prompt, temperature=0.0, max_tokens=20, min_tokens=20)
    sequence = model._sequence(text, torch.cat([prompt, out]), eos=False)
    with torch.inference_mode():
        logits = model.head(model.decoder(model.embedding(sequence[None])))[0].float()  # [L, V + 1]
        logits[:, model.eos] = float("-inf")  # min_tokens: EOS is never drawn
    first = len(text) + len(prompt)  # the position that predicts the first new token
    assert torch.equal(logits[first : first + len(out)].argmax(-1), out)


def test_the_ar_baseline_generates_what_its_full_forward_pass_predicts() -> None:
    torch.manual_seed(0)
    config = ARAcousticConfig(codebook_size=16, num_quantizers=2, coarse_levels=1, semantic_vocab_size=10,
                              semantic_rate_ratio=2, fine_chunk_frames=8, dim=32, depth=2, heads=2, ff_mult=2.0)
    model = ARAcousticModel(config).double().eval()
    semantic = torch.randint(10, (2, 4), generator=torch.Generator().manual_seed(1))
    codes = model.generate(semantic, num_frames=8, temperature=0).codes  # [B, T, Q]
    stage = model.coarse
    prefix = torch.cat([semantic, semantic.new_full((2, 1), model.coarse_sep)], dim=1)
    ids = torch.cat([prefix, codes[:, :, 0] + config.semantic_vocab_size], dim=1)
    with torch.inference_mode():
        hidden = stage.hidden(ids)  # [B, L, D]
        predicted = stage.level_logits(hidden[:, prefix.shape[1] - 1 : -1], 0).argmax(-1)  # [B, T]
    assert torch.equal(predicted, codes[:, :, 0])
