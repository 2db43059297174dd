"""SoundStreamConfig and DiscriminatorConfig: the architectures of our codec and its critic.

Training settings (loss weights, quantizer dropout, when the adversarial loss starts) live in
`training.SoundStreamLossConfig`. The quantizer's own update rules (EMA decay, k-means
initialisation, dead-code restarts) are here because the quantizer module applies them inside
its forward pass, and a checkpoint should resume training the way it was started.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT", "SoundStreamConfig", "DiscriminatorConfig")

DECODERS = ("seanet", "vocos")
# SoundStreamConfig fields that shape only the decoder: codecs that differ in nothing else make
# the same tokens (options.encoder_from trains a new decoder behind another codec's encoder).
DECODER_FIELDS = ("decoder", "vocos_dim", "vocos_depth", "vocos_n_fft", "semantic_vocab_size", "semantic_rate_ratio",
                  "semantic_feature_dim", "reference_mels", "reference_in_blocks")


def _positive_int(owner: str, name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive integer, got {value!r}")


def _int_tuple(owner: str, name: str, value: object) -> tuple[int, ...]:
    """JSON gives lists; the frozen config keeps tuples so that it stays hashable."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{owner}.{name} must be a non-empty list of positive integers, got {value!r}")
    for item in value:
        _positive_int(owner, name, item)
    return tuple(value)


def _from_dict(cls: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(known)}")
    return cls(**values)


@dataclass(frozen=True)
class SoundStreamConfig:
    """A SEANet encoder and decoder around a residual vector quantizer.

    The encoder maps 1 x N samples to D x T latents with T = ceil(N / hop_length),
    hop_length = prod(strides); each of the Q levels spends log2(K) bits a frame.
    """

    sample_rate: int = 16000  # Hz of the audio it encodes and decodes
    channels: int = 16  # C, width after the first convolution; doubles at every downsampling
    latent_dim: int = 64  # D, width of the latents and of every codebook entry
    strides: tuple[int, ...] = (2, 4, 5, 8)  # encoder downsampling factors (decoder: reversed)
    dilations: tuple[int, ...] = (1, 3, 9)  # one residual unit per dilation in every block
    kernel_size: int = 7  # first and last convolution, and the residual units
    residual_kernel_size: int = 7  # dilated convolution of the residual units
    compress: int = 2  # residual units squeeze their width by this factor (SEANet)
    causal: bool = False  # pad only on the left, for streaming; offline SoundStorm does not need it
    weight_norm: bool = True  # weight normalisation on every convolution (stabilises GAN training)
    num_quantizers: int = 8  # Q, residual VQ levels
    codebook_size: int = 1024  # K, codes per level
    ema_decay: float = 0.99  # decay of the codebooks' exponential moving averages
    kmeans_iters: int = 10  # k-means iterations on the first batch to initialise codebooks; 0 = random vectors
    dead_code_steps: int = 100  # a code unused for this many training steps is restarted; 0 = never
    # "seanet": transposed convolutions mirroring the encoder (SoundStream). "vocos": ConvNeXt
    # blocks at the frame rate predicting an STFT, inverted with hop = hop_length (vocos.py).
    # The decoder makes no token: either fits behind the same encoder and codebooks.
    decoder: str = "seanet"
    vocos_dim: int = 384  # ConvNeXt width (its MLPs are 3x wider)
    vocos_depth: int = 8  # ConvNeXt blocks
    vocos_n_fft: int = 1280  # STFT size of the inverse transform (4 hops: windows overlap 75%)
    # > 0: the Vocos decoder also reads semantic tokens of this vocabulary, one per
    # semantic_rate_ratio frames (vocos.py: what a text-to-speech decoder can lean on where
    # SoundStorm's finer levels are unsure); their embedding starts at zero, so a decoder given
    # none (or before training) decodes as one without. 0: a plain codec decoder.
    semantic_vocab_size: int = 0
    semantic_rate_ratio: int = 2
    # > 0 (with semantic_vocab_size): each semantic token is also described by a fixed feature
    # vector of this width, its tokenizer's k-means centroid (for the bundled tokens: the phone
    # posteriors it stands for), read through one learned projection shared by all tokens
    # (vocos.py). 0: the per-token embedding alone.
    semantic_feature_dim: int = 0
    # > 0 (vocos decoder): the decoder also reads a voice reference, the long-term spectrum of a few
    # seconds of the speaker (mean log-mel in this many bands, its level removed), through one
    # projection added to every frame (vocos.py): the envelope of a voice whose tokens the codec's
    # ten training voices taught it to render as theirs. 0: none.
    reference_mels: int = 0
    # With reference_mels: every ConvNeXt block also adds its own projection of the reference to
    # its input, not the first alone.
    reference_in_blocks: bool = False

    def __post_init__(self) -> None:
        owner = "SoundStreamConfig"
        for name in ("sample_rate", "channels", "latent_dim", "kernel_size", "residual_kernel_size",
                     "compress", "num_quantizers", "codebook_size", "vocos_dim", "vocos_depth", "vocos_n_fft"):
            _positive_int(owner, name, getattr(self, name))
        object.__setattr__(self, "strides", _int_tuple(owner, "strides", self.strides))
        object.__setattr__(self, "dilations", _int_tuple(owner, "dilations", self.dilations))
        if self.channels % self.compress != 0:
            raise ValueError(
                f"{owner}.channels ({self.channels}) must be divisible by compress ({self.compress}): "
                "residual units work at channels / compress"
            )
        if self.decoder not in DECODERS:
            raise ValueError(f"{owner}.decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.decoder == "vocos" and (self.vocos_n_fft < 2 * self.hop_length or (self.vocos_n_fft - self.hop_length) % 2):
            raise ValueError(
                f"{owner}.vocos_n_fft ({self.vocos_n_fft}) must be at least twice the hop ({self.hop_length}) "
                "and differ from it by an even number of samples (the inverse STFT trims half on each side)"
            )
        if self.codebook_size < 2:
            raise ValueError(f"{owner}.codebook_size must be >= 2, got {self.codebook_size}")
        if isinstance(self.semantic_vocab_size, bool) or not isinstance(self.semantic_vocab_size, int) \
                or self.semantic_vocab_size < 0:
            raise ValueError(f"{owner}.semantic_vocab_size must be an integer >= 0 (0: none), got {self.semantic_vocab_size!r}")
        _positive_int(owner, "semantic_rate_ratio", self.semantic_rate_ratio)
        if self.semantic_vocab_size and self.decoder != "vocos":
            raise ValueError(f"{owner}.semantic_vocab_size: only the vocos decoder reads semantic tokens")
        if isinstance(self.semantic_feature_dim, bool) or not isinstance(self.semantic_feature_dim, int) \
                or self.semantic_feature_dim < 0:
            raise ValueError(f"{owner}.semantic_feature_dim must be an integer >= 0 (0: none), got {self.semantic_feature_dim!r}")
        if self.semantic_feature_dim and not self.semantic_vocab_size:
            raise ValueError(f"{owner}.semantic_feature_dim describes semantic tokens: it needs semantic_vocab_size > 0")
        if isinstance(self.reference_mels, bool) or not isinstance(self.reference_mels, int) or self.reference_mels < 0:
            raise ValueError(f"{owner}.reference_mels must be an integer >= 0 (0: none), got {self.reference_mels!r}")
        if self.reference_mels and self.decoder != "vocos":
            raise ValueError(f"{owner}.reference_mels: only the vocos decoder reads a voice reference")
        if self.reference_in_blocks and not self.reference_mels:
            raise ValueError(f"{owner}.reference_in_blocks reads the voice reference in every block: it needs reference_mels > 0")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"{owner}.ema_decay must be in (0, 1), got {self.ema_decay}")
        if not isinstance(self.kmeans_iters, int) or self.kmeans_iters < 0:
            raise ValueError(f"{owner}.kmeans_iters must be an integer >= 0, got {self.kmeans_iters!r}")
        if not isinstance(self.dead_code_steps, int) or self.dead_code_steps < 0:
            raise ValueError(f"{owner}.dead_code_steps must be an integer >= 0, got {self.dead_code_steps!r}")

    @property
    def hop_length(self) -> int:
        """Samples per frame: the product of the strides."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Frames per second (50.0 at 16 kHz with hop 320)."""
        return self.sample_rate / self.hop_length

    @property
    def bitrate(self) -> float:
        """Bits per second with all Q levels (4000.0 for 8 x 1024 codes at 50 Hz)."""
        return self.frame_rate * self.num_quantizers * math.log2(self.codebook_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SoundStreamConfig:
        return _from_dict(cls, values)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SoundStreamConfig:
        """A named preset (see PRESETS), with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown SoundStream preset {name!r}; choose one of {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """EnCodec's multi-scale STFT discriminator: one 2-D convolutional critic per STFT size,
    reading the complex spectrogram (real and imaginary parts as two channels)."""

    n_ffts: tuple[int, ...] = (1024, 512, 256)  # one sub-discriminator per STFT size; hop = n_fft / 4
    filters: int = 16  # width of every sub-discriminator (EnCodec: 32)
    max_filters: int = 256  # width cap as filters grow with depth
    filters_scale: int = 1  # width multiplier per layer
    dilations: tuple[int, ...] = (1, 2, 4)  # time dilations of the strided layers
    weight_norm: bool = True

    def __post_init__(self) -> None:
        owner = "DiscriminatorConfig"
        object.__setattr__(self, "n_ffts", _int_tuple(owner, "n_ffts", self.n_ffts))
        object.__setattr__(self, "dilations", _int_tuple(owner, "dilations", self.dilations))
        for name in ("filters", "max_filters", "filters_scale"):
            _positive_int(owner, name, getattr(self, name))
        for n_fft in self.n_ffts:
            if n_fft < 16 or n_fft % 4:
                raise ValueError(f"{owner}.n_ffts must be multiples of 4 and >= 16, got {self.n_ffts}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiscriminatorConfig:
        return _from_dict(cls, values)


PRESETS: dict[str, SoundStreamConfig] = {
    # For tests: about 0.13M parameters, 4 levels of 64 codes; a training step takes milliseconds.
    "tiny": SoundStreamConfig(channels=4, latent_dim=16, num_quantizers=4, codebook_size=64, kmeans_iters=5),
    # The size this project trains on CPU: 8 levels x 1024 codes at 50 Hz = 4 kbps.
    "small": SoundStreamConfig(),
    # Paper-size SEANet: C = 32 like SoundStream and EnCodec, EnCodec's D = 128, and the
    # 12 levels x 1024 codes that SoundStorm generates (6 kbps at 16 kHz / 50 Hz).
    "paper": SoundStreamConfig(channels=32, latent_dim=128, num_quantizers=12, codebook_size=1024),
}
