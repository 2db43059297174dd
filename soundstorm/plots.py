"""PNG figures (matplotlib, headless): spectrograms of generated audio, and benchmark plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path, dpi: int = 110) -> None:
    """Write figure as a PNG atomically (a reader never sees half a file) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=dpi)
    pyplot().close(figure)
    tmp.replace(path)


def spectrogram_png(wav: np.ndarray, sample_rate: int) -> bytes:
    """A log-magnitude spectrogram of wav float32 [N] as PNG bytes. Uses a bare Figure (not
    pyplot's global state), so server threads may draw at the same time."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    with np.errstate(divide="ignore"):  # digital silence (a dialogue's pauses) has log 0 = -inf: drawn black
        axes.specgram(wav, Fs=sample_rate, NFFT=512, noverlap=384, cmap="magma")
    axes.set_xlabel("time (s)")
    axes.set_ylabel("frequency (Hz)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_spectrogram(wav: np.ndarray, sample_rate: int, path: Path) -> None:
    """A log-magnitude spectrogram of wav float32 [N] as a PNG file, written atomically."""
    from soundstorm.atomic import atomic_write_bytes

    atomic_write_bytes(Path(path), spectrogram_png(wav, sample_rate))
