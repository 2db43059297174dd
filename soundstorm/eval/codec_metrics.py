"""Quality of coded audio against its reference: PESQ (wideband), STOI and log-mel distance.

Each metric takes (reference, degraded) mono float arrays [N] in [-1, 1] at one sample rate.
Lengths may differ by the codec's frame padding: both are cut to the shorter one, from the
start (the codecs and Opus here keep time alignment; none adds a delay).

    pesq_wb(ref, deg, 16000)        # 1.04 (bad) .. 4.64 (identical)
    stoi(ref, deg, 16000)           # ~0 (unintelligible) .. 1 (identical)
    mel_distance(ref, deg, 16000)   # 0 (identical) and up; L1 of log10 mel magnitudes
"""

from __future__ import annotations

import math

import numpy as np
import torch

from soundstorm.data.audio import resample_audio

PESQ_RATE = 16000  # wideband PESQ (ITU-T P.862.2) is defined at 16 kHz
MEL_BANDS = 80
MEL_WINDOW_SECONDS = 0.064  # 1024 samples at 16 kHz
MEL_FLOOR = 1e-5  # magnitude floor before the log: silence does not dominate the distance


def align(reference: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 [M], M = the shorter length; refuses empty or non-finite input."""
    signals = []
    for name, signal in (("reference", reference), ("degraded", degraded)):
        signal = np.asarray(signal, dtype=np.float64)
        if signal.ndim != 1 or signal.shape[0] == 0:
            raise ValueError(f"the {name} signal must be a non-empty mono waveform [N], got shape {signal.shape}")
        if not np.isfinite(signal).all():
            raise ValueError(f"the {name} signal holds NaN or infinite samples")
        signals.append(signal)
    length = min(len(s) for s in signals)
    return signals[0][:length], signals[1][:length]


def pesq_wb(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """Wideband PESQ MOS-LQO, 1.04 to 4.64 (higher is better). Audio at another rate than
    16 kHz is resampled to it first.

    Raises:
        ValueError: digital silence, or PESQ found no speech in the reference (under about 0.25 s).
    """
    from pesq import PesqError, pesq  # imported on use: a compiled extension only this needs

    reference, degraded = align(reference, degraded)
    if not np.abs(reference).max() > 0 or not np.abs(degraded).max() > 0:
        raise ValueError("PESQ cannot score digital silence (the reference or degraded signal is all zeros)")
    if sample_rate != PESQ_RATE:
        reference = resample_audio(reference.astype(np.float32), sample_rate, PESQ_RATE).astype(np.float64)
        degraded = resample_audio(degraded.astype(np.float32), sample_rate, PESQ_RATE).astype(np.float64)
    try:
        return float(pesq(PESQ_RATE, reference, degraded, "wb"))
    except PesqError as error:
        raise ValueError(f"PESQ cannot score this pair: {type(error).__name__}: {error}") from error


def stoi(reference: np.ndarray, degraded: np.ndarray, sample_rate: int, extended: bool = False) -> float:
    """Short-time objective intelligibility, about 0 to 1 (higher is better); pystoi resamples
    to its 10 kHz internally. `extended`: ESTOI, for signals with modulated noise."""
    from pystoi import stoi as pystoi_stoi

    reference, degraded = align(reference, degraded)
    return float(pystoi_stoi(reference, degraded, sample_rate, extended=extended))


def mel_distance(reference: np.ndarray, degraded: np.ndarray, sample_rate: int, num_mels: int = MEL_BANDS) -> float:
    """Mean absolute difference of log10 mel magnitude spectrograms (>= 0, lower is better).

    80 triangular HTK-scale bands from 0 Hz to Nyquist over a Hann-windowed STFT of
    MEL_WINDOW_SECONDS (rounded up to a power of two) with a quarter-window hop, magnitudes
    floored at MEL_FLOOR.
    """
    reference, degraded = align(reference, degraded)
    n_fft = 2 ** math.ceil(math.log2(MEL_WINDOW_SECONDS * sample_rate))
    signals = torch.from_numpy(np.stack([reference, degraded]))  # [2, M]
    if signals.shape[1] < n_fft:  # shorter than one window: pad so one frame exists
        signals = torch.nn.functional.pad(signals, (0, n_fft - signals.shape[1]))
    spectrum = torch.stft(
        signals, n_fft, hop_length=n_fft // 4, window=torch.hann_window(n_fft, dtype=torch.float64),
        center=True, pad_mode="reflect", return_complex=True,
    ).abs()  # [2, n_fft // 2 + 1, frames]
    mel = mel_filterbank(sample_rate, n_fft, num_mels) @ spectrum  # [2, num_mels, frames]
    log_mel = torch.log10(mel.clamp(min=MEL_FLOOR))
    return float((log_mel[0] - log_mel[1]).abs().mean())


def mel_filterbank(sample_rate: int, n_fft: int, num_mels: int) -> torch.Tensor:
    """float64 [num_mels, n_fft // 2 + 1]: triangles evenly spaced on the HTK mel scale,
    mel(f) = 2595 log10(1 + f / 700), peaking at 1 (unnormalised, as HTK)."""
    def to_mel(hz: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + hz / 700.0)

    def to_hz(mel: torch.Tensor) -> torch.Tensor:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    nyquist = torch.tensor(sample_rate / 2.0, dtype=torch.float64)
    edges = to_hz(torch.linspace(0.0, float(to_mel(nyquist)), num_mels + 2, dtype=torch.float64))  # [num_mels + 2]
    bins = torch.linspace(0.0, float(nyquist), n_fft // 2 + 1, dtype=torch.float64)  # [F]
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # [num_mels, 1]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)  # [num_mels, F]
