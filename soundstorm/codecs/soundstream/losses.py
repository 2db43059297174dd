"""The codec's losses: spectral reconstruction, adversarial (hinge or LSGAN), feature matching.

- Multi-resolution STFT loss (Parallel WaveGAN, Yamamoto et al. 2020): spectral convergence
  plus L1 of log magnitudes, averaged over several FFT sizes.
- Multi-scale mel loss (EnCodec, DAC): L1 of log mel spectrograms over FFT sizes from 32 to
  2048, each with its own number of mel bands. The mel filterbank is computed here (HTK mel
  scale, triangular filters), so nothing needs torchaudio.
- Adversarial losses over a list of discriminator outputs (one per scale), and EnCodec's
  relative feature-matching loss.

Spectra are computed in float32 whatever the autocast. Notation: B batch, N samples,
F frequency bins, L STFT frames, M mel bands.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ADVERSARIAL_LOSSES = ("hinge", "lsgan")


def hz_to_mel(hz: Tensor | float) -> Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> Tensor:
    """Triangular filters evenly spaced on the mel scale: float32 [M, n_fft // 2 + 1].

    Each filter rises linearly from its lower neighbour's centre to its own and falls to its
    upper neighbour's (peak 1). A filter narrower than the bin spacing (low bands of a short
    FFT) would fall between bins and be all zero; it takes the bin nearest its centre instead,
    so that every band carries energy and the loss sees no constant bands.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if n_fft < 2 or n_mels < 1 or not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"mel_filterbank needs n_fft >= 2, n_mels >= 1 and 0 <= f_min < f_max <= {sample_rate / 2} Hz; "
            f"got n_fft={n_fft}, n_mels={n_mels}, f_min={f_min}, f_max={f_max}"
        )
    freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # [F]
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # [M, 1] each
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    bank = torch.clamp(torch.minimum(rising, falling), min=0.0)  # [M, F]
    empty = bank.sum(dim=1) == 0
    if bool(empty.any()):
        nearest = torch.round(centre[:, 0] / (sample_rate / n_fft)).long().clamp(max=n_fft // 2)  # [M]
        bank[empty, nearest[empty]] = 1.0
    return bank.float()


def stft_magnitude(wav: Tensor, n_fft: int, hop_length: int, window: Tensor) -> Tensor:
    """|STFT| of wav [B, 1, N] (or [B, N]) -> float32 [B, F, L], F = n_fft // 2 + 1.

    Zero-padded and centred (reflection would fail on clips shorter than half a window). The
    magnitude is floored at 1e-7 before the square root, so its gradient is finite at 0.
    """
    x = wav.reshape(-1, wav.shape[-1]).float()  # [B, N]
    spec = torch.stft(
        x, n_fft, hop_length=hop_length, win_length=n_fft, window=window,
        center=True, pad_mode="constant", return_complex=True,
    )  # [B, F, L] complex
    return torch.view_as_real(spec).pow(2).sum(dim=-1).clamp(min=1e-14).sqrt()


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, each averaged over FFT sizes (hop = n_fft / 4)."""

    def __init__(self, n_ffts: Sequence[int] = (256, 512, 1024)) -> None:
        super().__init__()
        self.n_ffts = tuple(n_ffts)
        for n_fft in self.n_ffts:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def forward(self, fake: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
        """fake, real [B, 1, N] -> (spectral convergence [], log-magnitude L1 [])."""
        with torch.autocast(device_type=fake.device.type, enabled=False):  # logs of tiny magnitudes need float32
            return self._forward(fake.float(), real.float())

    def _forward(self, fake: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
        convergence, log_magnitude = fake.new_zeros((), dtype=torch.float32), fake.new_zeros((), dtype=torch.float32)
        for n_fft in self.n_ffts:
            window = getattr(self, f"window_{n_fft}")
            fake_mag = stft_magnitude(fake, n_fft, n_fft // 4, window)  # [B, F, L]
            real_mag = stft_magnitude(real, n_fft, n_fft // 4, window)
            # ||Y - X||_F / ||Y||_F over the batch; the floor only matters for an all-silent batch.
            convergence = convergence + torch.linalg.vector_norm(real_mag - fake_mag) / torch.linalg.vector_norm(
                real_mag
            ).clamp(min=1e-5)
            log_magnitude = log_magnitude + F.l1_loss(
                torch.log(fake_mag.clamp(min=1e-5)), torch.log(real_mag.clamp(min=1e-5))
            )
        return convergence / len(self.n_ffts), log_magnitude / len(self.n_ffts)


class MultiScaleMelLoss(nn.Module):
    """L1 between log10 mel spectrograms, averaged over (n_fft, n_mels) scales (hop = n_fft / 4)."""

    def __init__(
        self,
        sample_rate: int,
        n_ffts: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048),
        n_mels: Sequence[int] = (5, 10, 20, 40, 80, 160, 320),
        floor: float = 1e-5,
    ) -> None:
        super().__init__()
        if len(n_ffts) != len(n_mels) or not n_ffts:
            raise ValueError(f"n_ffts and n_mels must be equally long and non-empty, got {n_ffts} and {n_mels}")
        self.n_ffts = tuple(n_ffts)
        self.floor = floor
        for n_fft, bands in zip(self.n_ffts, n_mels, strict=True):
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)
            self.register_buffer(f"mel_{n_fft}", mel_filterbank(n_fft, bands, sample_rate), persistent=False)

    def log_mel(self, wav: Tensor, n_fft: int) -> Tensor:
        """wav [B, 1, N] -> log10 mel spectrogram float32 [B, M, L]."""
        magnitude = stft_magnitude(wav, n_fft, n_fft // 4, getattr(self, f"window_{n_fft}"))  # [B, F, L]
        mel = torch.einsum("mf,bfl->bml", getattr(self, f"mel_{n_fft}"), magnitude)
        return torch.log10(mel.clamp(min=self.floor))

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        """fake, real [B, 1, N] -> []."""
        with torch.autocast(device_type=fake.device.type, enabled=False):  # the mel matmul must not run in bf16
            fake, real = fake.float(), real.float()
            total = fake.new_zeros(())
            for n_fft in self.n_ffts:
                total = total + F.l1_loss(self.log_mel(fake, n_fft), self.log_mel(real, n_fft))
        return total / len(self.n_ffts)


def generator_adversarial_loss(fake_logits: Sequence[Tensor], kind: str = "hinge") -> Tensor:
    """The generator's loss on the discriminator's logits for generated audio (one per scale),
    averaged over scales: hinge mean(relu(1 - D(x'))), LSGAN mean((1 - D(x'))^2)."""
    _check_kind(kind)
    fake_logits = [logits.float() for logits in fake_logits]  # bf16 under autocast: sum in float32
    losses = [
        F.relu(1.0 - logits).mean() if kind == "hinge" else (1.0 - logits).pow(2).mean() for logits in fake_logits
    ]
    return torch.stack(losses).mean()


def discriminator_adversarial_loss(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], kind: str = "hinge"
) -> Tensor:
    """The discriminator's loss, averaged over scales: hinge relu(1 - D(x)) + relu(1 + D(x')),
    LSGAN (1 - D(x))^2 + D(x')^2."""
    _check_kind(kind)
    losses = []
    for real, fake in zip(real_logits, fake_logits, strict=True):
        real, fake = real.float(), fake.float()  # bf16 under autocast: sum in float32
        if kind == "hinge":
            losses.append(F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
        else:
            losses.append((1.0 - real).pow(2).mean() + fake.pow(2).mean())
    return torch.stack(losses).mean()


def feature_matching_loss(
    real_features: Sequence[Sequence[Tensor]], fake_features: Sequence[Sequence[Tensor]]
) -> Tensor:
    """EnCodec's relative feature matching: for every layer of every scale,
    mean |f(x) - f(x')| / mean |f(x)|, averaged. Real features are targets (detach them)."""
    losses = []
    for real_scale, fake_scale in zip(real_features, fake_features, strict=True):
        for real, fake in zip(real_scale, fake_scale, strict=True):
            real, fake = real.float(), fake.float()
            losses.append(F.l1_loss(fake, real) / real.abs().mean().clamp(min=1e-8))
    if not losses:
        raise ValueError("feature_matching_loss got no feature maps")
    return torch.stack(losses).mean()


def _check_kind(kind: str) -> None:
    if kind not in ADVERSARIAL_LOSSES:
        raise ValueError(f"unknown adversarial loss {kind!r}; choose one of {ADVERSARIAL_LOSSES}")


__all__ = [
    "ADVERSARIAL_LOSSES",
    "MultiResolutionSTFTLoss",
    "MultiScaleMelLoss",
    "discriminator_adversarial_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "mel_filterbank",
    "stft_magnitude",
]
