"""The content encoder: log-mel frames -> a small Conformer -> frame-level phone classification.

This is the offline stand-in for w2v-BERT: no self-supervised speech model can be downloaded
here, so the encoder is trained on the corpus with the phone timings the corpus stores. It
learns phones across many voices, and its bottleneck features (the layer before the phone
classifier) are what k-means turns into semantic tokens (soundstorm.semantic.kmeans_tokenizer).

    log-mel [B, T, M] at 100 Hz, CMVN per utterance
      -> two stride-2 convolutions (25 Hz by default: `subsample` = 4)
      -> Conformer (soundstorm.model.conformer, the same block as SoundStorm's)
      -> bottleneck Linear -> features [B, S, F]     (k-means input)
      -> phone head Linear -> logits [B, S, P]        (training only)

Padding never leaks: padded frames are zeroed before every convolution and masked in
attention, so a batched utterance gets the features it gets alone.

Notation: B batch, N samples, T mel frames, S output frames, M mel bands, D width,
F bottleneck width, P phones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soundstorm.checkpoint import load_model, save_model
from soundstorm.config_dict import DictConfig
from soundstorm.model.conformer import Conformer
from soundstorm.semantic.features import (
    LogMel,
    frame_mask,
    normalize_frames,
    zero_padding,
)
from soundstorm.semantic.phones import IGNORE


@dataclass(frozen=True)
class ContentEncoderConfig(DictConfig):
    phones: tuple[str, ...]  # the phone inventory, index = class (soundstorm.semantic.phones)
    sample_rate: int = 16000  # Hz of the audio it reads
    mel_hop_length: int = 160  # samples per log-mel frame (100 Hz at 16 kHz)
    n_mels: int = 80
    subsample: int = 4  # mel frames per output frame, a power of two (4: 25 Hz tokens at 16 kHz)
    dim: int = 192  # D, Conformer width
    depth: int = 4
    heads: int = 4
    ff_mult: float = 4.0
    conv_kernel_size: int = 15
    dropout: float = 0.1
    feature_dim: int = 64  # F, the bottleneck that k-means clusters
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "phones", tuple(self.phones))
        if len(self.phones) < 2:
            raise ValueError(f"ContentEncoderConfig.phones needs at least 2 phones, got {self.phones!r}")
        if self.subsample < 1 or self.subsample & (self.subsample - 1):
            raise ValueError(f"ContentEncoderConfig.subsample must be a power of two, got {self.subsample}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"ContentEncoderConfig.dim ({self.dim}) must split into {self.heads} even-sized heads")
        if min(self.sample_rate, self.mel_hop_length, self.n_mels, self.depth, self.feature_dim) < 1:
            raise ValueError("ContentEncoderConfig: sizes and rates must be positive")

    @property
    def hop_length(self) -> int:
        """Samples per output frame (640 at 16 kHz: 25 Hz)."""
        return self.mel_hop_length * self.subsample

    @property
    def rate(self) -> float:
        """Output frames (tokens) per second."""
        return self.sample_rate / self.hop_length



@dataclass
class ContentOutput:
    features: Tensor  # float [B, S, F], the bottleneck; meaningless where not valid
    logits: Tensor  # float [B, S, P], phone logits
    valid: Tensor  # bool [B, S], True = a real frame


class ContentEncoder(nn.Module):
    def __init__(self, config: ContentEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.log_mel = LogMel(config.sample_rate, config.mel_hop_length, config.n_mels)
        steps = config.subsample.bit_length() - 1  # stride-2 convolutions
        widths = [config.n_mels] + [config.dim] * steps
        self.subsampling = nn.ModuleList(
            nn.Conv1d(widths[i], widths[i + 1], kernel_size=3, stride=2, padding=1) for i in range(steps)
        )
        self.input_projection = nn.Linear(widths[-1], config.dim)
        self.conformer = Conformer(config.dim, config.depth, config.heads, int(config.ff_mult * config.dim),
                                   config.conv_kernel_size, config.dropout, config.rope_base)
        self.bottleneck = nn.Linear(config.dim, config.feature_dim)
        self.head = nn.Linear(config.feature_dim, len(config.phones))

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> ContentOutput:
        """wav float [B, 1, N] at config.sample_rate; lengths [B] in samples (default N)."""
        B, _, N = wav.shape
        if lengths is None:
            lengths = torch.full((B,), N, dtype=torch.long, device=wav.device)
        mel = self.log_mel(zero_padding(wav, lengths))  # [B, T, M]
        x = normalize_frames(mel, frame_mask(lengths, self.config.mel_hop_length, mel.shape[1]))  # [B, T, M]
        hop = self.config.mel_hop_length
        for conv in self.subsampling:
            hop *= 2
            x = F.gelu(conv(x.transpose(1, 2))).transpose(1, 2)  # [B, T / 2, D]
            x = x * frame_mask(lengths, hop, x.shape[1])[:, :, None]  # padding stays zero
        valid = frame_mask(lengths, self.config.hop_length, x.shape[1])  # [B, S]
        h = self.conformer(self.input_projection(x), valid)  # [B, S, D]
        features = self.bottleneck(h)  # [B, S, F]
        return ContentOutput(features=features, logits=self.head(F.gelu(features)), valid=valid)

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        save_model(self, self.config, path, dtype=dtype)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> ContentEncoder:
        return load_model(cls, ContentEncoderConfig, path, map_location)


def phone_loss(output: ContentOutput, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Cross-entropy of output.logits against targets int64 [B, S] (IGNORE where unknown).

    Returns the mean loss, the number of correctly classified frames and of counted frames."""
    targets = targets.masked_fill(~output.valid, IGNORE)
    logits = output.logits.float()
    loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE)
    counted = targets != IGNORE
    correct = ((logits.argmax(dim=-1) == targets) & counted).sum()
    return loss, correct, counted.sum()
