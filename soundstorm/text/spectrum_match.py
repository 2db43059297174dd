"""Matching generated speech's long-term spectrum to its voice prompt's: a post-filter.

A SoundStorm trained on few voices answers a voice it has never heard with the timbre of the
voices it knows: on the bundled models the held-out flite-rms voice keeps 0.66 of its prompt's
speaker similarity, and most of what is lost is a spectral envelope the codec's decoder, which
reads the prompt's long-term spectrum too, does not reach (docs/voices.md). This module closes
part of that gap with signal processing, no model: it measures the long-term average spectrum of
the prompt and of the generated speech (the mean power of the frames within 40 dB of the
loudest, so that pauses do not count), smooths both over a third of an octave, and filters the
generated speech with `strength` times their difference in decibels, at most MAX_GAIN_DB either
way. The filter is one linear-phase FIR for the whole of a voice's speech in a request, scaled to
keep the speech's power: no frame-to-frame variation, no delay.

Half the difference (strength 0.5) is the bundled default: the long-term spectrum of 3 s of
speech also carries what those 3 s say, which a full match would copy into every sentence.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

ANALYSIS_SECONDS = 0.064  # STFT window of the spectra: 15.6 Hz bins at 16 kHz
SPEECH_RANGE_DB = 40.0  # frames more than this below the loudest are pauses, not speech
SMOOTH_OCTAVES = 1 / 3  # the envelope, not the harmonics: a third of an octave around each bin
SMOOTH_FLOOR_HZ = 100.0  # below this the smoothing band stops narrowing (there are few bins there)
MAX_GAIN_DB = 12.0  # the filter never boosts or cuts more than this


def _fft_size(sample_rate: int) -> int:
    return 1 << max(4, math.ceil(math.log2(ANALYSIS_SECONDS * sample_rate)))


def long_term_spectrum(wavs: Sequence[np.ndarray], sample_rate: int) -> np.ndarray | None:
    """float64 [F] dB: the mean power spectrum of the speech frames of all of wavs (each float [N]),
    F = n_fft / 2 + 1; None where they hold no frame of speech (silence, or shorter than a window)."""
    n_fft = _fft_size(sample_rate)
    frames = []
    for wav in wavs:
        if len(wav) < n_fft:
            continue
        spectrum = torch.stft(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), n_fft, n_fft // 4,
                              window=torch.hann_window(n_fft), center=False, return_complex=True)  # [F, frames]
        frames.append(spectrum.abs().square().double())
    if not frames:
        return None
    power = torch.cat(frames, dim=1)  # [F, frames]
    energy = power.sum(dim=0)  # [frames]
    if float(energy.max()) <= 0.0:
        return None
    speech = energy >= energy.max() * 10 ** (-SPEECH_RANGE_DB / 10)
    return (10 * torch.log10(power[:, speech].mean(dim=1) + 1e-12)).numpy()


def smooth(spectrum_db: np.ndarray, sample_rate: int, octaves: float = SMOOTH_OCTAVES) -> np.ndarray:
    """spectrum_db [F] averaged over `octaves` around each bin (at least the bin itself)."""
    bins = len(spectrum_db)
    freqs = np.arange(bins) * sample_rate / (2 * (bins - 1))
    centre = np.maximum(freqs, SMOOTH_FLOOR_HZ)
    low = np.searchsorted(freqs, centre * 2 ** (-octaves / 2), side="left")
    high = np.searchsorted(freqs, centre * 2 ** (octaves / 2), side="right")
    index = np.arange(bins)
    low, high = np.minimum(low, index), np.maximum(high, index + 1)
    sums = np.concatenate([[0.0], np.cumsum(spectrum_db)])
    return (sums[high] - sums[low]) / (high - low)


def matching_gain(target_db: np.ndarray, source_db: np.ndarray, sample_rate: int, strength: float) -> np.ndarray:
    """The filter's gain in dB [F]: strength times the smoothed difference target - source,
    clipped to +-MAX_GAIN_DB, then offset so that source's power comes through unchanged."""
    gain = np.clip(strength * (smooth(target_db, sample_rate) - smooth(source_db, sample_rate)),
                   -MAX_GAIN_DB, MAX_GAIN_DB)
    power = 10 ** (source_db / 10)
    return gain - 10 * np.log10(np.sum(power * 10 ** (gain / 10)) / np.sum(power))


def fir_filter(gain_db: np.ndarray) -> np.ndarray:
    """A linear-phase FIR float64 [n_fft + 1] with magnitude response gain_db [n_fft / 2 + 1]
    (frequency sampling, Hann-windowed; its delay is n_fft / 2 samples)."""
    n_fft = 2 * (len(gain_db) - 1)
    impulse = np.fft.irfft(10 ** (gain_db / 20), n_fft)  # zero-phase, circular
    impulse = np.roll(impulse, n_fft // 2)
    return np.append(impulse, impulse[0]) * np.hanning(n_fft + 1)  # symmetric: exactly linear phase


def apply_filter(wav: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """wav float32 [N] through taps (odd length), delay removed: float32 [N]."""
    if len(wav) == 0:
        return wav
    size = len(wav) + len(taps) - 1
    n = 1 << math.ceil(math.log2(size))
    out = np.fft.irfft(np.fft.rfft(wav.astype(np.float64), n) * np.fft.rfft(taps, n), n)
    delay = len(taps) // 2
    return out[delay: delay + len(wav)].astype(np.float32)


def match_spectrum(wavs: Sequence[np.ndarray], prompt: np.ndarray, sample_rate: int,
                   strength: float) -> list[np.ndarray]:
    """wavs (float32 [N] each, one voice's speech) filtered towards prompt's (float32 [M]) long-term
    spectrum by `strength` (0: unchanged, 1: the whole smoothed difference). One filter for all of
    them, from their speech together; where either holds no speech, they come back unchanged."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"the spectrum match's strength must be in [0, 1] (0 = off), got {strength}")
    if strength == 0.0:
        return list(wavs)
    target = long_term_spectrum([prompt], sample_rate)
    source = long_term_spectrum(wavs, sample_rate)
    if target is None or source is None:
        return list(wavs)
    taps = fir_filter(matching_gain(target, source, sample_rate, strength))
    return [apply_filter(wav, taps) for wav in wavs]
