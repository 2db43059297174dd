"""Matching the semantic token rate to the codec's frame rate.

Real systems disagree: 25 Hz w2v-BERT or our content tokens, 50 Hz HuBERT, 50 Hz SoundStream,
75 Hz EnCodec at 24 kHz, 12.5 Hz Mimi. SoundStorm's conditioning takes r codec frames per
semantic token (SoundStormConfig.semantic_rate_ratio) and repeats each token r times, the
paper's way. So:

- frame_rate / semantic_rate a whole number r >= 1: tokens are kept as they are, r is the ratio;
- any other ratio (75 Hz / 25 Hz is whole, 75 / 50 or 12.5 / 50 are not): tokens are resampled
  to the frame rate by nearest index (frame t takes the token under its centre) and r = 1.

`check_semantic_matches` is the one check where a tokenizer meets a model (and its codec).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

_TOLERANCE = 1e-6


def conditioning_ratio(frame_rate: float, semantic_rate: float) -> int:
    """Codec frames per conditioning token: frame_rate / semantic_rate when whole, else 1."""
    if frame_rate <= 0 or semantic_rate <= 0:
        raise ValueError(f"rates must be positive, got frame rate {frame_rate} Hz and semantic rate {semantic_rate} Hz")
    ratio = frame_rate / semantic_rate
    whole = round(ratio)
    return whole if whole >= 1 and abs(ratio - whole) < _TOLERANCE else 1


def match_rate(tokens: np.ndarray, semantic_rate: float, frame_rate: float, num_frames: int) -> np.ndarray:
    """Semantic tokens [S'] of an utterance -> the S = ceil(T / r) conditioning tokens of its
    T = num_frames codec frames, r = conditioning_ratio(frame_rate, semantic_rate).

    A whole ratio trims or extends (repeating the last token): tokenizers and codecs round the
    last frame differently, a token of difference is normal. Otherwise nearest index."""
    if len(tokens) == 0:
        raise ValueError("the semantic tokenizer returned no tokens")
    ratio = conditioning_ratio(frame_rate, semantic_rate)
    whole = abs(frame_rate / semantic_rate - ratio) < _TOLERANCE
    if whole:
        target = math.ceil(num_frames / ratio)
        if len(tokens) >= target:
            return tokens[:target]
        return np.concatenate([tokens, np.repeat(tokens[-1:], target - len(tokens))])
    # Token index under frame t's centre, (t + 0.5) / frame_rate seconds; the epsilon makes a
    # centre that falls exactly on a token boundary (75 Hz over 50 Hz, t = 43) take the later one.
    position = (np.arange(num_frames) + 0.5) * (semantic_rate / frame_rate)
    index = np.minimum(np.floor(position + 1e-9).astype(np.int64), len(tokens) - 1)
    return tokens[index]


class _ModelConfig(Protocol):
    semantic_vocab_size: int
    semantic_rate_ratio: int


def check_semantic_matches(vocab_size: int, semantic_rate: float, frame_rate: float, config: _ModelConfig,
                           what: str = "the semantic tokenizer") -> None:
    """Raise ValueError naming the field if tokens of this vocabulary and rate, with a codec at
    frame_rate, are not what a model with `config` was trained on."""
    if config.semantic_vocab_size == 0:
        raise ValueError(f"the model is unconditional (semantic_vocab_size 0) but {what} was given")
    if vocab_size != config.semantic_vocab_size:
        raise ValueError(f"{what} has {vocab_size} tokens, the model was trained on {config.semantic_vocab_size}")
    ratio = conditioning_ratio(frame_rate, semantic_rate)
    if ratio != config.semantic_rate_ratio:
        raise ValueError(
            f"{what} makes {semantic_rate:g} tokens/s and the codec {frame_rate:g} frames/s: "
            f"{ratio} frames per conditioning token, but the model has semantic_rate_ratio "
            f"{config.semantic_rate_ratio}"
        )
