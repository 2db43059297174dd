"""EnCodec's multi-scale STFT discriminator (Défossez et al., 2022, section 3.4).

Each sub-discriminator reads a complex STFT (real and imaginary parts as two channels, so it
sees phase as well as magnitude) through 2-D convolutions: kernels of 3 frames x 9 bins,
dilated in time and strided by 2 in frequency, LeakyReLU(0.2), one logit map out. Scales
differ by FFT size (hop = n_fft / 4).

Notation: B batch, N samples, C channels, L STFT frames, F frequency bins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm

from soundstorm.codecs.soundstream.config import DiscriminatorConfig


@dataclass
class DiscriminatorOutput:
    logits: list[Tensor]  # per scale: [B, 1, L_s, F'_s]
    features: list[list[Tensor]]  # per scale, per layer: [B, C, L_s, F'_layer] (after the activation)

    def split(self, batch_size: int) -> tuple[DiscriminatorOutput, DiscriminatorOutput]:
        """Split the outputs of one forward pass on cat([a, b]) into those of a and of b, where
        a has `batch_size` examples. One pass for both keeps DDP to one forward per backward."""
        first = DiscriminatorOutput(
            [x[:batch_size] for x in self.logits], [[f[:batch_size] for f in scale] for scale in self.features]
        )
        second = DiscriminatorOutput(
            [x[batch_size:] for x in self.logits], [[f[batch_size:] for f in scale] for scale in self.features]
        )
        return first, second


class STFTDiscriminator(nn.Module):
    """One scale: wav [B, 1, N] -> logits [B, 1, L, F'] and the feature map of every layer."""

    def __init__(self, n_fft: int, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

        def conv(
            in_ch: int,
            out_ch: int,
            kernel: tuple[int, int],
            stride: tuple[int, int] = (1, 1),
            dilation: tuple[int, int] = (1, 1),
        ) -> nn.Module:
            padding = ((kernel[0] - 1) * dilation[0] // 2, (kernel[1] - 1) * dilation[1] // 2)
            layer = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, dilation=dilation, padding=padding)
            return apply_weight_norm(layer) if config.weight_norm else layer

        def width(layer: int) -> int:
            return min(config.filters_scale**layer * config.filters, config.max_filters)

        convs = [conv(2, config.filters, (3, 9))]
        for index, dilation in enumerate(config.dilations):
            convs.append(conv(width(index), width(index + 1), (3, 9), stride=(1, 2), dilation=(dilation, 1)))
        last = width(len(config.dilations))
        convs.append(conv(last, last, (3, 3)))
        self.convs = nn.ModuleList(convs)
        self.activation = nn.LeakyReLU(0.2)
        self.post = conv(last, 1, (3, 3))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = wav.reshape(-1, wav.shape[-1]).float()  # [B, N]
        spec = torch.stft(
            x, self.n_fft, hop_length=self.hop_length, win_length=self.n_fft, window=self.window,
            center=True, pad_mode="constant", normalized=True, return_complex=True,
        )  # [B, F, L]
        x = rearrange(torch.view_as_real(spec), "b f l c -> b c l f")  # [B, 2, L, F]
        features = []
        for layer in self.convs:
            x = self.activation(layer(x))
            features.append(x)
        return self.post(x), features  # [B, 1, L, F']


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        self.discriminators = nn.ModuleList(STFTDiscriminator(n_fft, config) for n_fft in config.n_ffts)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, wav: Tensor) -> DiscriminatorOutput:
        """wav float [B, 1, N] -> logits and feature maps of every scale."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"the discriminator expects wav [B, 1, N], got {tuple(wav.shape)}")
        logits, features = [], []
        for discriminator in self.discriminators:
            scale_logits, scale_features = discriminator(wav)
            logits.append(scale_logits)
            features.append(scale_features)
        return DiscriminatorOutput(logits, features)

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        from soundstorm.checkpoint import save_model

        save_model(self, self.config, path, dtype=dtype)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> MultiScaleSTFTDiscriminator:
        from soundstorm.checkpoint import load_model

        return load_model(cls, DiscriminatorConfig, path, map_location=map_location)
