"""SEANet encoder and decoder (Tagliasacchi et al., 2020), as used by SoundStream and EnCodec.

Encoder: a convolution to C channels, then one block per stride (residual units with
dilations 1, 3, 9, then a strided convolution that doubles the width), then a convolution to D.
The decoder mirrors it with transposed convolutions. ELU everywhere, no normalisation layers
(optional weight normalisation), no activation on the output waveform.

Lengths: every convolution pads so that a strided layer maps L steps to ceil(L / stride) and a
transposed one maps L to L * stride. The encoder therefore turns N samples into
T = ceil(N / hop) frames (hop = prod(strides)), and the decoder turns T frames into T * hop
samples; the model trims the decoder's output back to N.

Padding is non-causal by default: SoundStorm decodes whole utterances offline with a
bidirectional model, so nothing gains from a causal codec, and at equal size a codec that
sees both sides of a sample reconstructs it better. `causal=True` pads only on the left,
for streaming uses.

Notation: B batch, C channels, L steps of the current layer, N samples, T frames, D latent width.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm

from soundstorm.codecs.soundstream.config import SoundStreamConfig


class Conv1d(nn.Module):
    """A 1-D convolution that maps L steps to ceil(L / stride), padding with zeros.

    It pads (effective kernel - stride) steps in all, on the left only when causal and split
    evenly otherwise, plus on the right whatever the last window is missing, so that no input
    sample is dropped.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        effective_kernel = (kernel_size - 1) * dilation + 1
        if effective_kernel < stride:
            raise ValueError(f"kernel {kernel_size} (dilation {dilation}) is narrower than its stride {stride}")
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.conv = apply_weight_norm(conv) if weight_norm else conv
        self.stride = stride
        self.causal = causal
        self.padding_total = effective_kernel - stride

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C_in, L] -> [B, C_out, ceil(L / stride)]."""
        length = x.shape[-1]
        extra = math.ceil(length / self.stride) * self.stride - length  # completes the last window
        if self.causal:
            left, right = self.padding_total, 0
        else:
            right = self.padding_total // 2
            left = self.padding_total - right
        return self.conv(F.pad(x, (left, right + extra)))


class ConvTranspose1d(nn.Module):
    """A transposed 1-D convolution that maps L steps to exactly L * stride.

    The raw output has L * stride + (kernel - stride) steps; the surplus is trimmed on the right
    when causal (so that no output depends on a later input) and split evenly otherwise.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int,
        causal: bool = False,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"transposed kernel {kernel_size} is narrower than its stride {stride}")
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.conv = apply_weight_norm(conv) if weight_norm else conv
        self.stride = stride
        self.padding_total = kernel_size - stride
        self.causal = causal

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C_in, L] -> [B, C_out, L * stride]."""
        y = self.conv(x)  # [B, C_out, L * stride + padding_total]
        if self.causal:
            left, right = 0, self.padding_total
        else:
            right = self.padding_total // 2
            left = self.padding_total - right
        return y[..., left : y.shape[-1] - right]


class ResidualUnit(nn.Module):
    """x + Conv1x1(ELU(DilatedConv(ELU(x)))), the inner width squeezed by `compress`."""

    def __init__(self, channels: int, dilation: int, config: SoundStreamConfig) -> None:
        super().__init__()
        hidden = channels // config.compress
        common = dict(causal=config.causal, weight_norm=config.weight_norm)
        self.block = nn.Sequential(
            nn.ELU(),
            Conv1d(channels, hidden, config.residual_kernel_size, dilation=dilation, **common),
            nn.ELU(),
            Conv1d(hidden, channels, 1, **common),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, L] -> [B, C, L]."""
        return x + self.block(x)


class SEANetEncoder(nn.Module):
    """Waveform [B, 1, N] -> latents [B, D, T], T = ceil(N / hop)."""

    def __init__(self, config: SoundStreamConfig) -> None:
        super().__init__()
        common = dict(causal=config.causal, weight_norm=config.weight_norm)
        channels = config.channels
        layers: list[nn.Module] = [Conv1d(1, channels, config.kernel_size, **common)]
        for stride in config.strides:
            layers += [ResidualUnit(channels, dilation, config) for dilation in config.dilations]
            # A kernel of twice the stride makes neighbouring windows overlap by half.
            layers += [nn.ELU(), Conv1d(channels, 2 * channels, 2 * stride, stride=stride, **common)]
            channels *= 2
        layers += [nn.ELU(), Conv1d(channels, config.latent_dim, config.kernel_size, **common)]
        self.layers = nn.Sequential(*layers)

    def forward(self, wav: Tensor) -> Tensor:
        return self.layers(wav)


class SEANetDecoder(nn.Module):
    """Latents [B, D, T] -> waveform [B, 1, T * hop]."""

    def __init__(self, config: SoundStreamConfig) -> None:
        super().__init__()
        common = dict(causal=config.causal, weight_norm=config.weight_norm)
        channels = config.channels * 2 ** len(config.strides)
        layers: list[nn.Module] = [Conv1d(config.latent_dim, channels, config.kernel_size, **common)]
        for stride in reversed(config.strides):
            layers += [nn.ELU(), ConvTranspose1d(channels, channels // 2, 2 * stride, stride=stride, **common)]
            channels //= 2
            layers += [ResidualUnit(channels, dilation, config) for dilation in config.dilations]
        layers += [nn.ELU(), Conv1d(channels, 1, config.kernel_size, **common)]
        self.layers = nn.Sequential(*layers)

    def forward(self, latents: Tensor) -> Tensor:
        return self.layers(latents)
