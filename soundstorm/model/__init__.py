"""The SoundStorm model: config, Conformer backbone, embeddings, heads and loss."""

from soundstorm.model.config import PRESETS, SoundStormConfig
from soundstorm.model.soundstorm import SoundStorm, SoundStormOutput

__all__ = ["PRESETS", "SoundStorm", "SoundStormConfig", "SoundStormOutput"]
