"""Uploaded audio: read within a size limit, decode with libsndfile, check, downmix."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


class UploadTooLarge(ValueError):
    """An upload over the size limit (answered with 413)."""


def decode_audio(data: bytes, what: str) -> tuple[np.ndarray, int]:
    """float32 [N] mono and its sample rate from the bytes of an audio file (wav, flac, ogg, mp3)."""
    if not data:
        raise ValueError(f"the {what} is empty (0 bytes): upload a wav, flac, ogg or mp3 file")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # [N, C]
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        reason = str(error).rsplit(": ", 1)[-1].rstrip(".")  # without libsndfile's name for the buffer
        raise ValueError(f"the {what} is not audio that libsndfile can decode ({reason}): "
                         "upload a wav, flac, ogg or mp3 file") from error
    if samples.shape[0] == 0:
        raise ValueError(f"the {what} holds no samples")
    if not np.isfinite(samples).all():
        raise ValueError(f"the {what} holds NaN or infinite samples")
    return np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32)), int(rate)


def wav_bytes(wav: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV of float32 [N]."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wav, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
