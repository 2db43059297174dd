"""The masking scheme that training and decoding share (shared/DESIGN.md sections 3 and 4).

SoundStorm's training mask mirrors its decoding: decoding goes level by level and, inside a
level, unmasks tokens following a cosine schedule; training picks one level and one point of
that schedule per example. Both sides take the schedule from this module, so they cannot drift.

Everything here is a pure function of its arguments (and of a torch.Generator).

Notation: B batch, T frames, Q residual quantizer levels. Levels are 0-based in code
(level 0 is the paper's level 1, the coarsest).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

PAPER_FIRST_LEVEL_STEPS = 16


def default_steps(num_quantizers: int) -> list[int]:
    """The paper's schedule: 16 iterations for the coarsest level, 1 for every other level."""
    return [PAPER_FIRST_LEVEL_STEPS] + [1] * (num_quantizers - 1)


def cosine_mask_ratio(progress: float) -> float:
    """Fraction of tokens still masked once `progress` (0 to 1) of a level's iterations ran."""
    return math.cos(math.pi / 2 * progress)


def num_masked_after(step: int, num_steps: int, num_candidates: Tensor) -> Tensor:
    """How many tokens are still masked after iteration `step` (1-based) of `num_steps`.

    Args:
        num_candidates: int64 [B], the number of tokens each example decodes at this level
            (its non-prompt, non-padding frames), NOT the T*Q tokens of the whole grid.
    Returns:
        int64 [B]: floor(n * cos(pi/2 * step / num_steps)), which is 0 after the last step.
    """
    if not 1 <= step <= num_steps:
        raise ValueError(f"step must be in [1, {num_steps}], got {step}")
    if step == num_steps:  # cos(pi/2) is 6e-17 in floating point, not 0
        return torch.zeros_like(num_candidates)
    ratio = cosine_mask_ratio(step / num_steps)
    # float64 keeps floor() exact for any realistic sequence length.
    return torch.floor(num_candidates.double() * ratio).long()


@dataclass
class TrainingMask:
    """One training mask per example of a batch (DESIGN.md section 3)."""

    masked: Tensor  # [B, T, Q] bool, True = the input token is replaced by MASK
    loss: Tensor  # [B, T] bool, True = cross-entropy on this frame, at level `levels[b]`
    levels: Tensor  # [B] int64, the level q being trained (0-based)
    delimiters: Tensor  # [B] int64, prompt delimiter t: frames < t are never masked
    ratios: Tensor  # [B] float32, mask ratio p = cos(u), u ~ U[0, pi/2]


def check_level_weights(level_weights: Sequence[float], num_levels: int) -> Tensor:
    """float64 [N] of sample_training_mask's level_weights, refused unless they are N finite,
    non-negative numbers that are not all 0."""
    weights = torch.as_tensor(level_weights, dtype=torch.float64)
    if weights.shape != (num_levels,) or not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()) \
            or float(weights.sum()) <= 0:
        raise ValueError(f"level_weights must be {num_levels} non-negative numbers, one per level trained, "
                         f"not all 0; got {list(level_weights)}")
    return weights


def sample_training_mask(
    lengths: Tensor,
    num_frames: int,
    num_quantizers: int,
    generator: torch.Generator | None = None,
    num_levels: int | None = None,
    level_weights: Sequence[float] | None = None,
) -> TrainingMask:
    """Sample SoundStorm's training mask, independently for every example.

    For each example b with valid length L (frames >= L are padding):
      1. prompt delimiter t ~ U{0, L-1}: frames < t stay unmasked and get no loss;
      2. level q ~ U{0, N-1}, N = num_levels (default Q), or q drawn in proportion to
         level_weights;
      3. ratio p = cos(u), u ~ U[0, pi/2]; exactly max(1, round(p * n)) of the n frames in
         [t, L) are masked at level q, chosen uniformly at random;
      4. every frame in [t, L) is masked at all levels above q; levels below q stay as they are;
      5. the loss covers exactly the masked frames of level q.

    Args:
        lengths: int64 [B], valid frames per example, each in [1, num_frames].
        num_frames: T, the padded length.
        num_quantizers: Q.
        generator: optional torch.Generator on the device of `lengths`, for reproducibility.
        num_levels: N, train only the first N levels (a model decoded with steps for those
            levels only: soundstorm.decoding). Levels from N on are then masked wherever level
            q is trained, as they stay masked while such a model decodes. Default: all Q.
    """
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D [B], got shape {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > num_frames).any()):
        raise ValueError(f"every length must be in [1, {num_frames}], got {lengths.tolist()}")
    B, T, Q = lengths.shape[0], num_frames, num_quantizers
    trained = Q if num_levels is None else num_levels  # N
    if not isinstance(trained, int) or isinstance(trained, bool) or not 1 <= trained <= Q:
        raise ValueError(f"num_levels must be an integer in [1, {Q}] (the levels trained), got {num_levels!r}")
    device = lengths.device

    def uniform(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, device=device)

    delimiters = torch.floor(uniform(B) * lengths).long().clamp_(max=lengths - 1)  # [B]
    if level_weights is None:
        levels = torch.floor(uniform(B) * trained).long().clamp_(max=trained - 1)  # [B]
    else:
        weights = check_level_weights(level_weights, trained)  # [N]
        bounds = (weights.cumsum(0) / weights.sum()).to(device)  # [N], the last is 1
        # The same one uniform draw per example, read through the weights' cumulative sum.
        levels = torch.searchsorted(bounds, uniform(B).double(), right=True).clamp_(max=trained - 1)  # [B]
    ratios = torch.cos(uniform(B) * (math.pi / 2))  # [B]

    frames = torch.arange(T, device=device)  # [T]
    candidates = (frames >= delimiters[:, None]) & (frames < lengths[:, None])  # [B, T]
    num_candidates = candidates.sum(dim=1)  # [B]
    num_masked = torch.round(ratios * num_candidates).long().clamp_(min=1)  # [B]

    # A uniformly random subset of exactly num_masked[b] candidates: rank random scores,
    # with non-candidates pushed behind every candidate.
    scores = uniform(B, T).masked_fill(~candidates, 2.0)  # [B, T]
    ranks = scores.argsort(dim=1).argsort(dim=1)  # [B, T]
    level_masked = candidates & (ranks < num_masked[:, None])  # [B, T]

    level_ids = torch.arange(Q, device=device)  # [Q]
    is_level = level_ids == levels[:, None, None]  # [B, 1, Q]
    is_above = level_ids > levels[:, None, None]  # [B, 1, Q]
    masked = (level_masked[:, :, None] & is_level) | (candidates[:, :, None] & is_above)  # [B, T, Q]
    return TrainingMask(
        masked=masked, loss=level_masked, levels=levels, delimiters=delimiters, ratios=ratios
    )
