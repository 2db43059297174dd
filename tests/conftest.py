"""Shared fixtures: tiny models, in float64 where tests compare values exactly."""

from __future__ import annotations

import os
import pytest
import torch
from hypothesis import settings

from soundstorm import SoundStorm, SoundStormConfig

# Tiny models run fastest on one thread, and a busy machine cannot stall an OpenMP barrier.
torch.set_num_threads(1)

settings.register_profile("soundstorm", max_examples=25, deadline=None, derandomize=True)
# HYPOTHESIS_PROFILE=thorough for a long hunt (fresh random examples, 12x as many); CI uses the default.
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "soundstorm"))


def tiny_config(**overrides: object) -> SoundStormConfig:
    values: dict[str, object] = dict(
        codebook_size=16, num_quantizers=3, semantic_vocab_size=10, semantic_rate_ratio=2,
        dim=32, depth=2, heads=4, ff_mult=2.0,
    )
    values.update(overrides)
    return SoundStormConfig(**values)  # type: ignore[arg-type]


def tiny_model(seed: int = 0, double: bool = True, **overrides: object) -> SoundStorm:
    """A randomly initialised tiny model in eval mode. Random weights give peaked, varied
    logits after a little scaling, which exercises ranking and sampling."""
    torch.manual_seed(seed)
    model = SoundStorm(tiny_config(**overrides))
    with torch.no_grad():
        model.head_weight.mul_(40.0)  # sharper, position-dependent predictions
    model.eval()
    return model.double() if double else model


@pytest.fixture
def model() -> SoundStorm:
    return tiny_model()


@pytest.fixture
def unconditional_model() -> SoundStorm:
    return tiny_model(semantic_vocab_size=0)
