"""Baselines that SoundStorm is measured against: AudioLM's autoregressive acoustic stages."""

from soundstorm.baselines.acoustic import ARAcousticModel, ARAcousticOutput, ARGeneration
from soundstorm.baselines.config import ARAcousticConfig

__all__ = ["ARAcousticConfig", "ARAcousticModel", "ARAcousticOutput", "ARGeneration"]
