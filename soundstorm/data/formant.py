"""Formant shift at a constant pitch: a longer or shorter vocal tract behind the same voice source.

Playing audio faster or slower (`played`) moves the pitch and the formants together, so every
voice made that way keeps the ratio of its source's vocal tract to its pitch; the corpus's ten
voices give ten such ratios and no more (docs/voices.md). `formant_shifted` moves the spectral
envelope alone: in each short-time frame, the log-magnitude envelope (a true envelope over the
cepstrum's first `LIFTER_SECONDS` of quefrency, below the period of any speaking pitch) is stretched along
frequency by `factor`, and the frame is filtered by the ratio of the new envelope to the old.
The harmonics stay where they were (the pitch does not move) and take the amplitudes of the
moved envelope (the formants do). Phases are kept, so the result is the source through a
smooth time-varying filter: no vocoder, nothing a codec would hear as a new kind of buzz.

Notation: N samples, F frames, K frequency bins (n_fft // 2 + 1).
"""

from __future__ import annotations

import numpy as np

FRAME_SECONDS = 0.064  # analysis window: resolves harmonics down to a pitch of ~60 Hz
LIFTER_SECONDS = 0.002  # envelope = quefrencies below 2 ms: under the period of a 400 Hz pitch
MAX_GAIN_DB = 30.0  # the filter never moves a bin by more: a deep envelope notch must not explode
TRUE_ENVELOPE_ITERATIONS = 40  # at most; it stops sooner once no bin lies above the envelope by more than
TRUE_ENVELOPE_TOLERANCE = float(np.log(10 ** (1.0 / 20)))  # 1 dB (in natural log units)


def _frame_size(sample_rate: int) -> int:
    return 1 << int(np.ceil(np.log2(FRAME_SECONDS * sample_rate)))  # 1024 at 16 kHz


def smoothed(log_magnitude: np.ndarray, lifter: int) -> np.ndarray:
    """float [F, K] log magnitudes -> [F, K] keeping only the quefrencies below `lifter` samples."""
    n_fft = 2 * (log_magnitude.shape[-1] - 1)
    cepstrum = np.fft.irfft(log_magnitude, n=n_fft, axis=-1)  # [F, n_fft], real and even
    cepstrum[:, lifter : n_fft - lifter + 1] = 0.0
    return np.fft.rfft(cepstrum, axis=-1).real


def log_envelope(log_magnitude: np.ndarray, lifter: int) -> np.ndarray:
    """float [F, K] log magnitudes -> their true envelope [F, K] (Röbel and Rodet, 2005): smoothed
    again and again, each time raised to the spectrum wherever the spectrum lies above it, until it
    rests on the harmonics' peaks. A single cepstral smoothing runs between the peaks and the
    troughs, at a height that depends on how deep the troughs are, which is the pitch's doing:
    moved with it, a formant of a 200 Hz voice went the wrong way (tests/test_formant.py)."""
    envelope = smoothed(log_magnitude, lifter)
    for _ in range(TRUE_ENVELOPE_ITERATIONS - 1):
        if (log_magnitude - envelope).max() < TRUE_ENVELOPE_TOLERANCE:
            break
        envelope = smoothed(np.maximum(log_magnitude, envelope), lifter)
    return envelope


def warped(envelope: np.ndarray, factor: float) -> np.ndarray:
    """[F, K] -> [F, K] with out[:, k] = envelope[:, k / factor] (linear interpolation, the
    last bin held above Nyquist): what lay at f now lies at factor * f."""
    bins = envelope.shape[-1]
    position = np.minimum(np.arange(bins) / factor, bins - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, bins - 1)
    fraction = position - low
    return envelope[:, low] * (1.0 - fraction) + envelope[:, high] * fraction


def formant_shifted(wav: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """wav float32 [N] with its formants `factor` times higher (1: unchanged), its pitch, length
    and RMS level as they were; scaled down if a sample would pass 0.99."""
    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"formant factor must be in [0.5, 2], got {factor!r}")
    if factor == 1.0 or not len(wav):
        return wav
    n_fft = _frame_size(sample_rate)
    hop = n_fft // 4
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann: its squares at 1/4 hops sum to a constant
    n = len(wav)
    frames_count = int(np.ceil((n + n_fft) / hop)) + 1
    padded = np.zeros((frames_count - 1) * hop + n_fft)
    padded[n_fft // 2 : n_fft // 2 + n] = wav  # a frame centred on the first and on the last sample
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop] * window  # [F, n_fft]
    spectrum = np.fft.rfft(frames, axis=-1)  # [F, K]
    floor = 1e-6 * max(float(np.abs(spectrum).max()), 1e-12)  # silence must not steer the envelope
    envelope = log_envelope(np.log(np.abs(spectrum) + floor), round(LIFTER_SECONDS * sample_rate))
    max_gain = MAX_GAIN_DB / 20.0 * np.log(10.0)
    gain = np.exp(np.clip(warped(envelope, factor) - envelope, -max_gain, max_gain))
    out_frames = np.fft.irfft(spectrum * gain, n=n_fft, axis=-1) * window  # [F, n_fft]
    out = np.zeros_like(padded)
    norm = np.zeros_like(padded)
    for index in range(frames_count):  # overlap-add, weighted by the analysis and synthesis windows
        out[index * hop : index * hop + n_fft] += out_frames[index]
        norm[index * hop : index * hop + n_fft] += window**2
    out = out[n_fft // 2 : n_fft // 2 + n] / np.maximum(norm[n_fft // 2 : n_fft // 2 + n], 1e-8)
    rms_in, rms_out = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))), float(np.sqrt(np.mean(out**2)))
    if rms_out > 0:
        out *= rms_in / rms_out
    peak = float(np.abs(out).max())
    if peak > 0.99:  # as `equalized`: a model must not learn clipping
        out *= 0.99 / peak
    return out.astype(np.float32)
