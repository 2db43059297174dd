"""The shared mask schedule and the training mask sampler (DESIGN.md section 3)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from soundstorm import masking


def test_default_steps_is_the_papers() -> None:
    assert masking.default_steps(12) == [16] + [1] * 11
    assert sum(masking.default_steps(12)) == 27  # the paper's 27 forward passes


@given(n=st.integers(0, 3000), num_steps=st.integers(1, 40))
def test_num_masked_after_is_floor_of_cosine(n: int, num_steps: int) -> None:
    counts = [int(masking.num_masked_after(i, num_steps, torch.tensor([n]))) for i in range(1, num_steps + 1)]
    expected = [math.floor(n * math.cos(math.pi / 2 * i / num_steps)) for i in range(1, num_steps)] + [0]
    assert counts == expected
    assert all(a >= b for a, b in zip([n] + counts, counts)), "the schedule never re-masks"


def test_num_masked_after_rejects_bad_steps() -> None:
    with pytest.raises(ValueError, match="step must be in"):
        masking.num_masked_after(0, 4, torch.tensor([10]))


@given(
    data=st.data(),
    batch=st.integers(1, 6),
    num_frames=st.integers(1, 40),
    num_quantizers=st.integers(1, 6),
)
def test_training_mask_structure(data: st.DataObject, batch: int, num_frames: int, num_quantizers: int) -> None:
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, num_frames), min_size=batch, max_size=batch)))
    seed = data.draw(st.integers(0, 2**31))
    num_levels = data.draw(st.sampled_from([None, *range(1, num_quantizers + 1)]))  # levels trained
    m = masking.sample_training_mask(lengths, num_frames, num_quantizers, torch.Generator().manual_seed(seed),
                                     num_levels=num_levels)
    B, T, Q = batch, num_frames, num_quantizers
    trained = Q if num_levels is None else num_levels
    assert m.masked.shape == (B, T, Q) and m.loss.shape == (B, T)
    frames = torch.arange(T)
    for b in range(B):
        L, t, q = int(lengths[b]), int(m.delimiters[b]), int(m.levels[b])
        assert 0 <= t < L and 0 <= q < trained, "only the first num_levels levels are trained"
        assert not m.masked[b, :t].any(), "prompt frames are never masked"
        assert not m.masked[b, L:].any(), "padding is never masked"
        assert not m.masked[b, :, :q].any(), "levels below q stay unmasked"
        region = (frames >= t) & (frames < L)
        assert torch.equal(m.masked[b, :, q + 1 :], region[:, None].expand(T, Q - q - 1)), (
            "levels above q are masked on every frame from the delimiter on"
        )
        assert torch.equal(m.loss[b], m.masked[b, :, q]), "loss exactly on level q's masked frames"
        n = L - t
        assert int(m.loss[b].sum()) == max(1, round(float(m.ratios[b]) * n))


def test_training_mask_is_reproducible() -> None:
    lengths = torch.tensor([30, 20, 7])
    a = masking.sample_training_mask(lengths, 30, 4, torch.Generator().manual_seed(3))
    b = masking.sample_training_mask(lengths, 30, 4, torch.Generator().manual_seed(3))
    assert torch.equal(a.masked, b.masked) and torch.equal(a.levels, b.levels)


def test_training_mask_statistics_are_per_example_and_match_the_paper() -> None:
    """One batch of many examples: delimiter, level and ratio vary per example with the
    paper's distributions (catches sampling them once per batch)."""
    B, T, Q = 40_000, 50, 8
    m = masking.sample_training_mask(torch.full((B,), T), T, Q, torch.Generator().manual_seed(0))
    # Level ~ U{0, Q-1}.
    level_freq = torch.bincount(m.levels, minlength=Q).double() / B
    assert torch.allclose(level_freq, torch.full((Q,), 1 / Q, dtype=torch.float64), atol=0.01)
    # Delimiter ~ U{0, T-1}.
    delimiter_freq = torch.bincount(m.delimiters, minlength=T).double() / B
    assert torch.allclose(delimiter_freq, torch.full((T,), 1 / T, dtype=torch.float64), atol=0.006)
    # Ratio p = cos(u), u ~ U[0, pi/2]: P(p <= x) = 1 - (2 / pi) * arccos(x). KS distance.
    p = m.ratios.double().sort().values
    cdf = 1 - (2 / math.pi) * torch.arccos(p.clamp(0, 1))
    empirical = torch.arange(1, B + 1, dtype=torch.float64) / B
    assert float((cdf - empirical).abs().max()) < 0.01
    # The masked fraction of level q's candidate frames follows p.
    n = (T - m.delimiters).double()
    fraction = m.loss.sum(1).double() / n
    assert float((fraction - m.ratios.double()).abs().mean()) < 0.05
    # Not one value per batch.
    assert m.levels.unique().numel() == Q and m.delimiters.unique().numel() == T


def test_training_only_the_first_levels_spreads_over_those_levels_alone() -> None:
    """num_levels L: q ~ U{0, L-1}, and the levels from L on are masked like any level above q,
    as they stay masked while a model decoded with steps for L levels runs."""
    B, T, Q, L = 20_000, 12, 8, 4
    m = masking.sample_training_mask(torch.full((B,), T), T, Q, torch.Generator().manual_seed(1), num_levels=L)
    level_freq = torch.bincount(m.levels, minlength=Q).double() / B
    assert torch.allclose(level_freq[:L], torch.full((L,), 1 / L, dtype=torch.float64), atol=0.015)
    assert level_freq[L:].sum() == 0
    region = torch.arange(T)[None, :] >= m.delimiters[:, None]  # [B, T]
    assert torch.equal(m.masked[:, :, L:], region[:, :, None].expand(B, T, Q - L))
    # All levels is the paper's mask, draw for draw.
    a = masking.sample_training_mask(torch.full((50,), T), T, Q, torch.Generator().manual_seed(2), num_levels=Q)
    b = masking.sample_training_mask(torch.full((50,), T), T, Q, torch.Generator().manual_seed(2))
    assert torch.equal(a.masked, b.masked) and torch.equal(a.levels, b.levels)
    for bad in (0, Q + 1, 2.5, True):
        with pytest.raises(ValueError, match=rf"num_levels must be an integer in \[1, {Q}\]"):
            masking.sample_training_mask(torch.full((2,), T), T, Q, num_levels=bad)  # type: ignore[arg-type]


def test_level_weights_set_how_often_each_level_is_trained() -> None:
    B, T, Q = 40_000, 12, 8
    m = masking.sample_training_mask(torch.full((B,), T), T, Q, torch.Generator().manual_seed(3), num_levels=4,
                                     level_weights=[1, 2, 0, 3])
    level_freq = torch.bincount(m.levels, minlength=Q).double() / B
    expected = torch.tensor([1 / 6, 2 / 6, 0, 3 / 6, 0, 0, 0, 0], dtype=torch.float64)
    assert torch.allclose(level_freq, expected, atol=0.01)
    assert level_freq[2] == 0  # a zero weight is never drawn, even at the boundaries
    # The rest of the mask keeps its structure: the loss is on the chosen level's masked frames only.
    region = torch.arange(T)[None, :] >= m.delimiters[:, None]
    assert torch.equal(m.masked[:, :, 4:], region[:, :, None].expand(B, T, Q - 4))
    assert bool((m.loss <= region).all())
    for bad in ([1, 2, 3], [1, -1, 1, 1], [0, 0, 0, 0], [1, float("nan"), 1, 1]):
        with pytest.raises(ValueError, match="level_weights must be 4 non-negative numbers"):
            masking.sample_training_mask(torch.full((2,), T), T, Q, num_levels=4, level_weights=bad)


def test_training_mask_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError, match=r"every length must be in \[1, 10\]"):
        masking.sample_training_mask(torch.tensor([0, 5]), 10, 4)
    with pytest.raises(ValueError, match=r"every length must be in \[1, 10\]"):
        masking.sample_training_mask(torch.tensor([11]), 10, 4)
