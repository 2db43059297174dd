"""ARAcousticConfig: AudioLM's coarse and fine acoustic stages, the baseline SoundStorm replaces."""

from __future__ import annotations

from dataclasses import dataclass

from soundstorm.config_dict import DictConfig


@dataclass(frozen=True)
class ARAcousticConfig(DictConfig):
    """Architecture only. Both stages are decoder-only transformers of the same size."""

    codebook_size: int = 1024  # K
    num_quantizers: int = 8  # Q, all levels
    coarse_levels: int = 4  # Qc, the levels the coarse stage generates (AudioLM: 3 of 12; here half)
    semantic_vocab_size: int = 512  # V, the conditioning of the coarse stage
    semantic_rate_ratio: int = 2  # codec frames per semantic token, as in SoundStormConfig
    fine_chunk_frames: int = 150  # the fine stage works on independent chunks (AudioLM: 3 s)
    dim: int = 512
    depth: int = 6
    heads: int = 8
    ff_mult: float = 4.0
    dropout: float = 0.0
    # Dropout on the attention weights; None: `dropout`, as before this field existed. 0 lets
    # PyTorch's CPU attention use its fused kernel: with dropout it falls back to materializing
    # the weights: 1.6x the time of a demo SoundStorm training step and 4.6x a training step of
    # the demo AR baseline over 2251 tokens (measured: benchmarks/attention_dropout.py, docs/benchmarks.md).
    attention_dropout: float | None = None
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("codebook_size", "num_quantizers", "coarse_levels", "semantic_vocab_size", "semantic_rate_ratio",
                     "fine_chunk_frames",
                     "dim", "depth", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ARAcousticConfig.{name} must be a positive integer, got {value!r}")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"ARAcousticConfig.{name} must be in [0, 1), got {value}")
        if not self.coarse_levels < self.num_quantizers:
            raise ValueError(f"ARAcousticConfig.coarse_levels ({self.coarse_levels}) must leave at least one "
                             f"of the {self.num_quantizers} levels to the fine stage")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"ARAcousticConfig.dim ({self.dim}) must split into {self.heads} even-sized heads")

    @property
    def fine_levels(self) -> int:
        return self.num_quantizers - self.coarse_levels

