"""SoundStormConfig: the architecture of a SoundStorm model, and its named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SoundStormConfig:
    """Architecture only; training settings (optimizer, condition dropout, ...) live elsewhere."""

    codebook_size: int = 1024  # K, codes per RVQ level of the codec
    num_quantizers: int = 8  # Q, RVQ levels generated
    semantic_vocab_size: int = 0  # conditioning token ids; 0 = unconditional model
    semantic_rate_ratio: int = 2  # acoustic frames per semantic token (50 Hz codec / 25 Hz semantic)
    dim: int = 512  # width of the Conformer
    depth: int = 6  # Conformer blocks
    heads: int = 8  # attention heads; dim must be divisible by heads
    ff_mult: float = 4.0  # feed-forward hidden size = ff_mult * dim
    conv_kernel_size: int = 5  # depthwise convolution kernel (odd, so that it is centred)
    dropout: float = 0.0  # dropout in attention, feed-forward and convolution modules
    # Dropout on the attention weights; None: `dropout`, as before this field existed. 0 lets
    # PyTorch's CPU attention use its fused kernel: with dropout it falls back to materializing
    # the weights: 1.6x the time of a demo SoundStorm training step and 4.6x a training step of
    # the demo AR baseline over 2251 tokens (measured: benchmarks/attention_dropout.py, docs/benchmarks.md).
    attention_dropout: float | None = None
    rope_base: float = 10000.0  # base of the rotary position embedding frequencies

    def __post_init__(self) -> None:
        positive = ("codebook_size", "num_quantizers", "semantic_rate_ratio", "dim", "depth", "heads")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SoundStormConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.semantic_vocab_size, int) or self.semantic_vocab_size < 0:
            raise ValueError(
                "SoundStormConfig.semantic_vocab_size must be an integer >= 0 (0 = unconditional), "
                f"got {self.semantic_vocab_size!r}"
            )
        if self.dim % self.heads != 0 or (self.dim // self.heads) % 2 != 0:
            raise ValueError(
                f"SoundStormConfig.dim ({self.dim}) must be divisible by heads ({self.heads}) "
                "into an even head size (rotary embeddings rotate pairs of channels)"
            )
        if self.conv_kernel_size < 1 or self.conv_kernel_size % 2 == 0:
            raise ValueError(
                f"SoundStormConfig.conv_kernel_size must be odd and positive, got {self.conv_kernel_size}"
            )
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"SoundStormConfig.{name} must be in [0, 1), got {value}")
        if self.ff_mult <= 0 or self.rope_base <= 1:
            raise ValueError("SoundStormConfig.ff_mult must be > 0 and rope_base > 1")

    @property
    def mask_id(self) -> int:
        """The MASK token: one extra entry after the K codes in every level's embedding table."""
        return self.codebook_size

    @property
    def null_semantic_id(self) -> int:
        """The 'no condition' token, used for classifier-free guidance (condition dropout)."""
        return self.semantic_vocab_size

    @property
    def conditional(self) -> bool:
        return self.semantic_vocab_size > 0

    @property
    def ff_dim(self) -> int:
        return int(round(self.ff_mult * self.dim))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SoundStormConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SoundStormConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SoundStormConfig:
        """A named preset (see PRESETS), with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)


PRESETS: dict[str, SoundStormConfig] = {
    # For tests and toy tasks: trains in seconds on a CPU.
    "tiny": SoundStormConfig(
        codebook_size=64, num_quantizers=4, dim=64, depth=2, heads=4, ff_mult=2.0
    ),
    # The size this project benchmarks on CPU and trains its bundled model at.
    "small": SoundStormConfig(codebook_size=1024, num_quantizers=8, dim=512, depth=6, heads=8),
    # The paper's model (section 4.1): 12 layers, 16 heads, dim 1024, FF 4096, conv kernel 5,
    # Q = 12 levels of K = 1024 codes (SoundStream at 6 kbps), about 350M parameters.
    "paper": SoundStormConfig(
        codebook_size=1024,
        num_quantizers=12,
        semantic_vocab_size=1024,
        dim=1024,
        depth=12,
        heads=16,
        ff_mult=4.0,
        conv_kernel_size=5,
    ),
}
