"""Frame features of speech for the semantic tokenizers: log-mel spectrograms and MFCCs.

Both are computed from the waveform in the model (no I/O), frame-aligned so that frame t covers
samples [t * hop, (t + 1) * hop): a clip of N samples gives ceil(N / hop) frames, the same count
as the codecs' and the tokenizers' `num_tokens`. Utterance-level mean and variance
normalisation (CMVN) over the valid frames removes a constant spectral tilt per recording,
which carries channel and part of the speaker identity, not content.

Notation: B batch, N samples, T frames, M mel bands, C cepstral coefficients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soundstorm.codecs.soundstream.losses import mel_filterbank


def frame_mask(lengths: Tensor, hop_length: int, num_frames: int) -> Tensor:
    """lengths [B] in samples -> valid [B, T] bool, True where a frame starts inside the audio."""
    frames = (lengths + hop_length - 1) // hop_length  # [B]
    return torch.arange(num_frames, device=lengths.device)[None, :] < frames[:, None]


def zero_padding(wav: Tensor, lengths: Tensor) -> Tensor:
    """wav [B, 1, N] with the samples past each length set to 0, as past the end of a clip:
    the analysis windows of the last valid frames reach into the padding."""
    keep = torch.arange(wav.shape[-1], device=wav.device)[None, :] < lengths[:, None]  # [B, N]
    return wav * keep[:, None, :]


def normalize_frames(x: Tensor, valid: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-utterance mean and variance normalisation of x [B, T, F] over its valid [B, T] frames;
    padded frames become 0."""
    weight = valid[:, :, None].to(x.dtype)  # [B, T, 1]
    count = weight.sum(dim=1, keepdim=True).clamp(min=1.0)  # [B, 1, 1]
    mean = (x * weight).sum(dim=1, keepdim=True) / count
    variance = ((x - mean).pow(2) * weight).sum(dim=1, keepdim=True) / count
    return (x - mean) / (variance + eps).sqrt() * weight


class LogMel(nn.Module):
    """wav [B, 1, N] -> log-mel [B, T, M], T = ceil(N / hop_length), with a centred window."""

    def __init__(self, sample_rate: int, hop_length: int, n_mels: int = 80, win_seconds: float = 0.025) -> None:
        super().__init__()
        self.hop_length = hop_length
        self.win_length = max(hop_length, round(win_seconds * sample_rate))
        self.n_fft = 2 ** math.ceil(math.log2(self.win_length))
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        self.register_buffer("bank", mel_filterbank(self.n_fft, n_mels, sample_rate, f_min=20.0), persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        B, C, N = wav.shape
        if C != 1:
            raise ValueError(f"LogMel expects mono audio [B, 1, N], got {tuple(wav.shape)}")
        num_frames = math.ceil(N / self.hop_length)
        # Pad so that frame t is centred on sample (t + 0.5) * hop and all T frames exist.
        left = (self.n_fft - self.hop_length) // 2
        right = num_frames * self.hop_length - N + self.n_fft - self.hop_length - left
        padded = F.pad(wav[:, 0].float(), (left, right))  # [B, T * hop + n_fft - hop]
        spec = torch.stft(padded, self.n_fft, self.hop_length, self.win_length, self.window,
                          center=False, return_complex=True)  # [B, n_fft / 2 + 1, T]
        power = spec.abs().pow(2)[:, :, :num_frames]
        mel = torch.einsum("mf,bft->btm", self.bank, power)  # [B, T, M]
        return torch.log(mel + 1e-6)


class MFCC(nn.Module):
    """wav [B, 1, N] -> MFCCs with deltas [B, T, 3 C] (HuBERT's first-iteration features:
    13 coefficients, their first and second differences)."""

    def __init__(self, sample_rate: int, hop_length: int, n_mfcc: int = 13, n_mels: int = 40) -> None:
        super().__init__()
        self.log_mel = LogMel(sample_rate, hop_length, n_mels=n_mels)
        # Orthonormal DCT-II [M, C]
        m = torch.arange(n_mels, dtype=torch.float64)
        c = torch.arange(n_mfcc, dtype=torch.float64)
        dct = torch.cos(math.pi / n_mels * (m[:, None] + 0.5) * c[None, :]) * math.sqrt(2.0 / n_mels)
        dct[:, 0] /= math.sqrt(2.0)
        self.register_buffer("dct", dct.float(), persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        cepstra = self.log_mel(wav) @ self.dct  # [B, T, C]
        delta = _delta(cepstra)
        return torch.cat([cepstra, delta, _delta(delta)], dim=-1)  # [B, T, 3C]


def _delta(x: Tensor) -> Tensor:
    """Central difference along time of x [B, T, F], edges repeated."""
    padded = F.pad(x.transpose(1, 2), (1, 1), mode="replicate").transpose(1, 2)  # [B, T + 2, F]
    return (padded[:, 2:] - padded[:, :-2]) / 2.0
