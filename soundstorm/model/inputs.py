"""Checks on what users hand the model, with errors that say what was expected.

They run once at the entry of forward() and generate(), never inside the decoding loop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from soundstorm.model.config import SoundStormConfig


def _require_int64(tensor: object, name: str, expected_shape: str) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor {expected_shape}, got {type(tensor).__name__}")
    if tensor.dtype != torch.int64:
        raise ValueError(
            f"{name} must be int64 {expected_shape}, got {tensor.dtype}: convert with .long()"
        )
    return tensor


def check_codes(codes: object, config: SoundStormConfig, name: str = "codes") -> Tensor:
    """Acoustic tokens: int64 [B, T, Q] with Q = config.num_quantizers. Values are checked later,
    once the lengths say which frames are real."""
    codes = _require_int64(codes, name, "[B, T, Q]")
    if codes.dim() != 3:
        raise ValueError(f"{name} must have shape [B, T, Q], got {tuple(codes.shape)}")
    if codes.shape[2] != config.num_quantizers:
        raise ValueError(
            f"{name} has {codes.shape[2]} quantizer levels but the model generates "
            f"num_quantizers={config.num_quantizers}: codec and model do not match"
        )
    if codes.shape[0] < 1 or codes.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one example of one frame, got {tuple(codes.shape)}")
    return codes


def check_lengths(
    lengths: object, batch_size: int, num_frames: int, name: str = "lengths", minimum: int = 1
) -> Tensor:
    """Valid frames per example: int64 [B], each in [minimum, T]. None means all are full."""
    if lengths is None:
        return torch.full((batch_size,), num_frames, dtype=torch.int64)
    lengths = _require_int64(lengths, name, "[B]")
    if tuple(lengths.shape) != (batch_size,):
        raise ValueError(f"{name} must have shape [B]=[{batch_size}], got {tuple(lengths.shape)}")
    if bool((lengths < minimum).any()) or bool((lengths > num_frames).any()):
        raise ValueError(
            f"every one of {name} must be in [{minimum}, {num_frames}] frames, got {lengths.tolist()}"
        )
    return lengths


def check_token_range(tokens: Tensor, valid: Tensor, upper: int, name: str) -> None:
    """Every token at a valid position must be in [0, upper)."""
    real = tokens[valid]
    if real.numel() and (bool((real < 0).any()) or bool((real >= upper).any())):
        raise ValueError(
            f"{name} must hold ids in [0, {upper}) at every non-padding position, "
            f"got values in [{int(real.min())}, {int(real.max())}]"
        )


def check_semantic(
    semantic_tokens: object,
    config: SoundStormConfig,
    batch_size: int,
    num_frames: int,
    lengths: Tensor,
) -> Tensor | None:
    """Conditioning tokens: int64 [B, ceil(T / semantic_rate_ratio)], or None when unconditional."""
    if not config.conditional:
        if semantic_tokens is not None:
            raise ValueError(
                "this model is unconditional (semantic_vocab_size=0) but semantic_tokens were given"
            )
        return None
    if semantic_tokens is None:
        raise ValueError(
            f"this model is conditioned on semantic tokens (semantic_vocab_size="
            f"{config.semantic_vocab_size}): pass semantic_tokens [B, S]"
        )
    semantic_tokens = _require_int64(semantic_tokens, "semantic_tokens", "[B, S]")
    ratio = config.semantic_rate_ratio
    expected = math.ceil(num_frames / ratio)
    if semantic_tokens.dim() != 2 or tuple(semantic_tokens.shape) != (batch_size, expected):
        raise ValueError(
            f"semantic_tokens must have shape [B, ceil(T / {ratio})] = [{batch_size}, {expected}] "
            f"for T={num_frames} acoustic frames, got {tuple(semantic_tokens.shape)}"
        )
    semantic_lengths = (lengths + ratio - 1) // ratio  # [B]
    valid = torch.arange(expected, device=lengths.device) < semantic_lengths[:, None]  # [B, S]
    check_token_range(semantic_tokens, valid, config.semantic_vocab_size, "semantic_tokens")
    return semantic_tokens
