"""Opus, the classical codec that neural codecs are measured against, through Debian's opus-tools.

Not a Codec: Opus makes a bitstream, not tokens. `opus_roundtrip` encodes a waveform at a
bitrate and decodes it back at the input's sample rate, for the same metrics as a neural codec.

    degraded = opus_roundtrip(wav, 16000, bitrate_kbps=6.0)   # float32 [N] -> float32 [N]

Constrained VBR (`--cvbr`): the stream keeps to the bitrate over short spans, as a fixed-rate
token stream does, while Opus may still spend more bits on harder frames within it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from soundstorm.data.audio import save_audio

OPUS_MIN_KBPS = 6.0  # opusenc's range per channel (opusenc(1))
OPUS_MAX_KBPS = 256.0
TOOLS = ("opusenc", "opusdec")


def opus_available() -> bool:
    """Whether opusenc and opusdec are on PATH."""
    return all(shutil.which(tool) for tool in TOOLS)


def opus_roundtrip(wav: np.ndarray, sample_rate: int, bitrate_kbps: float) -> np.ndarray:
    """Encode mono float [N] in [-1, 1] with Opus at `bitrate_kbps` and decode it again.

    Returns:
        float32 [N] at `sample_rate`: opusdec resamples to the input's rate, and the result is
        cut or zero-padded to exactly N samples (opusdec's resampler may differ by a few).

    Raises:
        ValueError: a bitrate outside Opus's 6-256 kbit/s, or a waveform that is not mono audio.
        RuntimeError: opus-tools missing (install with `make system-deps`), or a tool failed.
    """
    if not OPUS_MIN_KBPS <= bitrate_kbps <= OPUS_MAX_KBPS:
        raise ValueError(
            f"Opus codes mono audio at {OPUS_MIN_KBPS:g} to {OPUS_MAX_KBPS:g} kbit/s, got {bitrate_kbps:g}"
        )
    wav = np.asarray(wav)
    if wav.ndim != 1 or wav.shape[0] == 0:
        raise ValueError(f"opus_roundtrip expects a non-empty mono waveform [N], got shape {wav.shape}")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not found: install Debian's opus-tools (make system-deps)")
    with tempfile.TemporaryDirectory(prefix="soundstorm-opus-") as folder:
        source, stream, decoded = Path(folder, "in.wav"), Path(folder, "coded.opus"), Path(folder, "out.wav")
        save_audio(source, wav, sample_rate)
        _run(["opusenc", "--quiet", "--cvbr", "--bitrate", f"{bitrate_kbps:.3f}", str(source), str(stream)])
        # --float: no dither noise added on the way back to 16-bit.
        _run(["opusdec", "--quiet", "--float", "--rate", str(sample_rate), str(stream), str(decoded)])
        out, rate = sf.read(decoded, dtype="float32", always_2d=True)  # [N', 1]
    if rate != sample_rate:
        raise RuntimeError(f"opusdec returned {rate} Hz audio, expected {sample_rate} Hz")
    out = out[:, 0]
    n = wav.shape[0]
    return out[:n] if len(out) >= n else np.pad(out, (0, n - len(out)))


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
