"""SoundStorm: efficient parallel audio generation (Borsos et al., 2023)."""

from soundstorm.decoding import DecodeStep
from soundstorm.masking import TrainingMask, default_steps
from soundstorm.model import PRESETS, SoundStorm, SoundStormConfig, SoundStormOutput

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "DecodeStep",
    "SoundStorm",
    "SoundStormConfig",
    "SoundStormOutput",
    "TrainingMask",
    "default_steps",
    "__version__",
]
