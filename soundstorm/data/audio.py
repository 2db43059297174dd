"""Reading, checking and writing audio files: the one place the project touches soundfile.

Every loader of the project (codecs, semantic tokenizers, the corpus scanner) reads audio with
`load_audio`, so a file that is wrong in any way fails here, once, with a message that names
the file, says what was expected and how to fix it.

    wav, sr = load_audio("a.flac", sample_rate=16000, resample=True, downmix=True)  # [N] float32
    reason = validate_audio(wav, sr, min_seconds=0.5, max_seconds=30.0)           # None if fine
    save_audio("b.wav", wav, sr)                                                    # 16-bit PCM

Waveforms are float32 numpy arrays of shape [N] (mono) with samples in [-1, 1]; sample rates
are ints in Hz.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from soundstorm.atomic import atomic_path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")

# Defaults of validate_audio, shared with `soundstorm corpus scan`.
MIN_SECONDS = 0.5
MAX_SECONDS = 30.0
SILENCE_DB = -60.0  # RMS in dB relative to full scale (a full-scale sine is -3 dB)
MAX_CLIPPED_FRACTION = 0.01
# A sample "at the rail": 16-bit PCM tops out at 32767/32768 = 0.99997, float files at 1.0.
# High enough that a full-scale sine (0.9% of its samples within 1e-4 of its peak) passes.
CLIP_LEVEL = 1.0 - 1e-4


class AudioError(ValueError):
    """An audio file or waveform that cannot be used as it is.

    `reason` is a short category for grouping many failures ("undecodable", "empty",
    "truncated", "wrong sample rate", "multi-channel", "non-finite"); the message says the rest.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def load_audio(
    path: str | Path,
    *,
    sample_rate: int | None = None,
    resample: bool = False,
    downmix: bool = False,
) -> tuple[np.ndarray, int]:
    """Read an audio file (wav, flac, ogg/vorbis/opus, mp3 — whatever libsndfile decodes).

    Args:
        sample_rate: the rate the caller needs, in Hz; None accepts the file's own rate.
        resample: convert a file at another rate to `sample_rate` (with soxr) instead of
            raising.
        downmix: average the channels of a multi-channel file instead of raising.

    Returns:
        (wav, sample_rate): wav float32 [N] in [-1, 1] (N >= 1), sample_rate the rate of wav.

    Raises:
        AudioError: the file is missing, empty, truncated, undecodable, holds NaN/inf, has more
            than one channel without `downmix`, or a rate other than `sample_rate` without
            `resample`.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"cannot read {path}: no such file", reason="missing")
    if path.stat().st_size == 0:
        raise AudioError(f"cannot read {path}: the file is empty (0 bytes)", reason="empty")
    truncation = _wav_truncation(path)
    if truncation is not None:
        raise AudioError(f"cannot read {path}: {truncation}", reason="truncated")
    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True)  # [N, C]
    except (sf.LibsndfileError, RuntimeError) as error:
        # libsndfile's mp3 decoder reports any undecodable file as "File does not exist or is not
        # a regular file"; the file does exist, so say what is actually known.
        raise AudioError(
            f"cannot decode {path} ({_libsndfile_message(error)}): expected a wav, flac, ogg or mp3 "
            f"file that libsndfile {sf.__libsndfile_version__} can read",
            reason="undecodable",
        ) from error
    num_frames, channels = data.shape
    if num_frames == 0:
        raise AudioError(f"{path} holds no audio samples (a header without data)", reason="empty")
    if not np.isfinite(data).all():
        raise AudioError(f"{path} holds NaN or infinite samples: the file is corrupt", reason="non-finite")
    if channels == 1:
        wav = data[:, 0]
    elif downmix:
        wav = data.mean(axis=1, dtype=np.float32)
    else:
        raise AudioError(
            f"expected mono audio, got {channels} channels in {path}: "
            "downmix with downmix=True (--downmix on the command line)",
            reason="multi-channel",
        )
    if sample_rate is not None and file_rate != sample_rate:
        if not resample:
            raise AudioError(
                f"expected {sample_rate} Hz audio, got {file_rate} Hz in {path}: "
                "resample with resample=True (--resample on the command line)",
                reason="wrong sample rate",
            )
        wav = resample_audio(wav, file_rate, sample_rate)
        file_rate = sample_rate
    return np.ascontiguousarray(wav, dtype=np.float32), int(file_rate)


def resample_audio(wav: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample float32 [N] from `from_rate` to `to_rate` Hz (soxr, high quality): float32 [M],
    M = round(N * to_rate / from_rate)."""
    if wav.ndim != 1:
        raise ValueError(f"resample_audio expects a mono waveform [N], got shape {wav.shape}")
    if from_rate == to_rate:
        return wav.astype(np.float32, copy=False)
    return soxr.resample(wav.astype(np.float32, copy=False), from_rate, to_rate, quality="HQ")


def validate_audio(
    wav: np.ndarray,
    sample_rate: int,
    *,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float = MAX_SECONDS,
    silence_db: float = SILENCE_DB,
    max_clipped_fraction: float = MAX_CLIPPED_FRACTION,
) -> str | None:
    """Why a waveform is unfit for training, or None when it is fine.

    Args:
        wav: float32 [N], samples in [-1, 1].
        sample_rate: Hz.
        min_seconds, max_seconds: duration bounds, inclusive.
        silence_db: reject when the RMS level (dB relative to full scale) is below this.
        max_clipped_fraction: reject when more than this fraction of samples sit at +-1.

    Returns:
        "<kind>: <detail>" with kind one of "non-finite", "too short", "too long", "silent",
        "clipped"; or None.
    """
    if wav.ndim != 1:
        raise ValueError(f"validate_audio expects a mono waveform [N], got shape {wav.shape}")
    if not np.isfinite(wav).all():
        return "non-finite: the waveform holds NaN or infinite samples"
    seconds = wav.shape[0] / sample_rate
    if seconds < min_seconds:
        return f"too short: {seconds:.2f} s, below the minimum of {min_seconds:g} s"
    if seconds > max_seconds:
        return f"too long: {seconds:.2f} s, above the maximum of {max_seconds:g} s"
    level = rms_db(wav)
    if level < silence_db:
        shown = "digital silence" if level == -math.inf else f"RMS {level:.1f} dB"
        return f"silent: {shown}, below the threshold of {silence_db:g} dB"
    clipped = float(np.mean(np.abs(wav) >= CLIP_LEVEL))
    if clipped > max_clipped_fraction:
        return (
            f"clipped: {clipped:.1%} of samples at full scale, above the limit of "
            f"{max_clipped_fraction:.1%}"
        )
    return None


def rms_db(wav: np.ndarray) -> float:
    """RMS level of float [N] in dB relative to full scale (1.0); -inf for digital silence."""
    rms = math.sqrt(float(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def save_audio(path: str | Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write float [N] (or [N, C]) in [-1, 1] as a 16-bit PCM wav file, atomically.

    Samples outside [-1, 1] are clipped (libsndfile would otherwise wrap them around).
    """
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise ValueError(f"save_audio writes 16-bit PCM wav files; got the name {path}: use a .wav suffix")
    wav = np.asarray(wav)
    if wav.ndim not in (1, 2) or wav.shape[0] == 0:
        raise ValueError(f"save_audio expects a non-empty waveform [N] or [N, C], got shape {wav.shape}")
    if not np.isfinite(wav).all():
        raise AudioError(
            f"refusing to write {path}: the waveform holds NaN or infinite samples", reason="non-finite"
        )
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(wav, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")


def _wav_truncation(path: Path) -> str | None:
    """For a RIFF/WAVE file whose header promises more audio bytes than the file holds, say so.

    libsndfile silently reads what is there, so an interrupted copy would otherwise pass as a
    shorter utterance whose transcript no longer matches. Streaming writers that could not
    seek back leave the size as 0 or 0xFFFFFFFF; those are not truncation.
    """
    file_size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        offset = 12
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None  # no data chunk: libsndfile will report the malformed file
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            offset += 8
            if chunk_id == b"data":
                if size in (0, 0xFFFFFFFF) or offset + size <= file_size:
                    return None
                return (
                    f"the header promises {size} bytes of audio but the file holds "
                    f"{file_size - offset}: it is truncated (an interrupted copy or download?)"
                )
            offset += size + (size & 1)  # chunks are padded to an even length
            handle.seek(offset)


def _libsndfile_message(error: Exception) -> str:
    message = str(error)
    if "File does not exist or is not a regular file" in message:
        return "the decoder found no valid audio frames"
    # soundfile prefixes "Error opening '<path>': ", and the path is already in our message.
    return message.split("': ", 1)[-1].strip().rstrip(".")
