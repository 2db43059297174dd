"""Fixed-length random crops of the waveforms of a manifest: the codec's training examples.

    dataset = AudioCropDataset("corpus/manifest.jsonl", sample_rate=16000, crop_seconds=1.0, split="train")
    loader = DataLoader(dataset, batch_size=8, shuffle=True, collate_fn=collate_crops)
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for batch in loader:                 # AudioBatch: wav [B, 1, N], lengths [B]
            ...

Files are read with `load_audio` (resampled to `sample_rate`, downmixed to mono), so a
corpus at any rate works. With `speed_range` each example is first played faster or slower by a
factor drawn per epoch (Kaldi's speed perturbation: resampled with soxr, so pitch and formants
move together, as in a shorter or longer vocal tract): a corpus of a few voices then shows a
codec many more, which is what it needs to keep voices it never heard. With `eq_db` each crop
is also filtered by a random smooth gain curve (up to +-eq_db dB at EQ_POINTS log-spaced
frequencies): spectral envelopes, tilts and brightness the corpus's voices do not have. With
`reference_seconds` each example also carries the crop as it was before that equalization
(`clean`) and a voice reference: a window of another utterance of the same speaker, sped and
equalized as the crop was (a decoder that reads a voice reference learns to take the envelope
from it: vocos.py). A file shorter than a
crop is zero-padded at the end and its `length` says how many samples are real. Crops are deterministic: example i of epoch e always
gets the same window for a given seed, whatever the worker or process that loads it.

Notation: B batch, N samples per crop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch
from torch import Tensor
from torch.utils.data import Dataset

from soundstorm.data.audio import load_audio
from soundstorm.data.formant import formant_shifted
from soundstorm.data.manifest import ManifestEntry, read_manifest

# Random equalization: gains at these frequencies (Hz; log-spaced across speech's band), linear
# in dB between them on a log-frequency axis, flat beyond. Seven points give broad formant-region
# and tilt changes, never narrow notches.
EQ_POINTS = (100.0, 250.0, 600.0, 1400.0, 3000.0, 5000.0, 7500.0)


def equalize(wav: np.ndarray, sample_rate: int, gains_db: Sequence[float]) -> np.ndarray:
    """wav float32 [N] through the zero-phase filter whose gain is gains_db at EQ_POINTS
    (interpolated in dB over log frequency), by FFT over 2N samples so nothing wraps around."""
    if len(gains_db) != len(EQ_POINTS):
        raise ValueError(f"need {len(EQ_POINTS)} gains (one per EQ_POINTS), got {len(gains_db)}")
    n = 2 * len(wav)
    frequencies = np.fft.rfftfreq(n, 1.0 / sample_rate)  # [n // 2 + 1]
    curve_db = np.interp(np.log(np.maximum(frequencies, 1.0)), np.log(EQ_POINTS), gains_db)
    spectrum = np.fft.rfft(wav, n) * 10.0 ** (curve_db / 20.0)
    return np.fft.irfft(spectrum, n)[: len(wav)].astype(np.float32)


def played(wav: np.ndarray, sample_rate: int, speed: float) -> np.ndarray:
    """wav float32 [N] at `speed` (1: as recorded): read as sample_rate * speed Hz and brought
    back to sample_rate, `speed` times shorter, pitch and formants `speed` times higher."""
    if speed == 1.0:
        return wav
    return soxr.resample(wav, sample_rate * speed, sample_rate).astype(np.float32, copy=False)


def equalized(wav: np.ndarray, sample_rate: int, gains_db: Sequence[float]) -> np.ndarray:
    """`equalize`, then scaled down if a sample would pass 0.99 (no gains: wav unchanged)."""
    if not len(gains_db) or not len(wav):
        return wav
    wav = equalize(wav, sample_rate, gains_db)
    peak = float(np.abs(wav).max())
    if peak > 0.99:  # a boost must not clip: a model would learn the clipping
        wav = wav * (0.99 / peak)
    return wav


@dataclass
class AudioCrop:
    wav: Tensor  # float32 [1, N]; zeros after `length`
    length: int  # real samples in wav: N unless the file is shorter than a crop
    index: int  # the example's position in the dataset
    start: int = 0  # first sample of the window in the file (after speed perturbation)
    speed: float = 1.0  # the speed perturbation factor applied (1: none)
    eq_gains_db: tuple[float, ...] = ()  # the random equalization's gains at EQ_POINTS (none: empty)
    formant: float = 1.0  # the formant shift's factor (1: none)
    clean: Tensor | None = None  # float32 [1, N]: the crop before its equalization (reference_seconds)
    reference: Tensor | None = None  # float32 [1, R]: the voice reference, zeros after its end (reference_seconds)


@dataclass
class AudioBatch:
    wav: Tensor  # float32 [B, 1, N]
    lengths: Tensor  # int64 [B], real samples of each example
    indices: Tensor  # int64 [B], positions in the dataset
    clean: Tensor | None = None  # float32 [B, 1, N]: the crops before their equalization
    reference: Tensor | None = None  # float32 [B, 1, R]: each crop's voice reference

    def to(self, device: torch.device | str) -> AudioBatch:
        return AudioBatch(self.wav.to(device), self.lengths.to(device), self.indices.to(device),
                          None if self.clean is None else self.clean.to(device),
                          None if self.reference is None else self.reference.to(device))

    def __len__(self) -> int:
        return self.wav.shape[0]


def collate_crops(crops: Sequence[AudioCrop]) -> AudioBatch:
    """Stack equally long crops into a batch."""
    if not crops:
        raise ValueError("collate_crops got an empty list of crops")
    return AudioBatch(
        wav=torch.stack([crop.wav for crop in crops]),  # [B, 1, N]
        lengths=torch.tensor([crop.length for crop in crops], dtype=torch.int64),
        indices=torch.tensor([crop.index for crop in crops], dtype=torch.int64),
        clean=None if crops[0].clean is None else torch.stack([crop.clean for crop in crops]),  # type: ignore[misc]
        reference=None if crops[0].reference is None else torch.stack([crop.reference for crop in crops]),  # type: ignore[misc]
    )


class AudioCropDataset(Dataset[AudioCrop]):
    def __init__(
        self,
        manifest_path: str | Path,
        *,
        sample_rate: int,
        crop_seconds: float,
        split: str | None = None,
        seed: int = 0,
        random_crop: bool = True,
        where: Callable[[ManifestEntry], bool] | None = None,
        speed_range: tuple[float, float] | None = None,
        eq_db: float | None = None,
        reference_seconds: float | None = None,
        formant_range: tuple[float, float] | None = None,
    ) -> None:
        """
        Args:
            manifest_path: a JSONL manifest (soundstorm corpus synth / scan).
            sample_rate: Hz of the crops; files at other rates are resampled.
            crop_seconds: length of every crop (N = round(crop_seconds * sample_rate)).
            split: only the entries of this split (all when None).
            seed: with the epoch and the position, fixes each crop's window.
            random_crop: a random window per epoch; False takes the start of each file.
            where: keep only the entries it accepts (e.g. those with phone timings).
            speed_range: (low, high) speed factors; each example, each epoch, is sped up by a
                factor drawn log-uniformly from it (>1: faster and higher). None: as recorded.
            eq_db: each crop, each epoch, is equalized by gains drawn uniformly from
                [-eq_db, eq_db] dB at EQ_POINTS, then scaled down if a sample would pass 0.99.
                None: as recorded.
            reference_seconds: also give each crop its clean (unequalized) copy and a voice
                reference of this length: a random window of another utterance of the same
                speaker (the same one when it has no other), sped and equalized as the crop.
            formant_range: (low, high) formant factors; each crop, each epoch, has its formants
                moved by a factor drawn log-uniformly from it at a constant pitch (formant.py),
                after its speed and before its equalization; its clean copy and its voice
                reference too, by the same factor (a voice, as the speed is). None: as recorded.
        """
        if not isinstance(sample_rate, int) or sample_rate < 1:
            raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
        self.crop_samples = round(crop_seconds * sample_rate)
        if not crop_seconds > 0 or self.crop_samples < 1:
            raise ValueError(f"crop_seconds must be > 0 (at least one sample at {sample_rate} Hz), got {crop_seconds}")
        self.manifest_path = Path(manifest_path)
        self.root = self.manifest_path.parent
        entries = read_manifest(self.manifest_path)
        self.entries: list[ManifestEntry] = [
            e for e in entries if (split is None or e.split == split) and (where is None or where(e))
        ]
        if not self.entries:
            splits = sorted({str(e.split) for e in entries})
            accepted = " that the filter accepts" if where is not None else ""
            raise ValueError(f"{self.manifest_path} has no entries of split {split!r}{accepted}; its splits: {splits}")
        self.speed_range = _factor_range("speed_range", speed_range)
        if eq_db is not None and not 0.0 < float(eq_db) <= 24.0:
            raise ValueError(f"eq_db must be in (0, 24] dB, got {eq_db!r}")
        self.eq_db = None if eq_db is None else float(eq_db)
        self.formant_range = _factor_range("formant_range", formant_range)
        self.reference_samples = 0
        if reference_seconds is not None:
            self.reference_samples = round(float(reference_seconds) * sample_rate)
            if not float(reference_seconds) > 0 or self.reference_samples < 1:
                raise ValueError(f"reference_seconds must be > 0, got {reference_seconds!r}")
        # Each speaker's positions: where a crop's voice reference comes from (reference_seconds only).
        self.by_speaker: dict[str, list[int]] = {}
        for position, entry in enumerate(self.entries if self.reference_samples else ()):
            self.by_speaker.setdefault(entry.speaker, []).append(position)
        self.sample_rate = sample_rate
        self.seed = seed
        self.random_crop = random_crop
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the windows of `epoch` (call before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def speed(self, position: int) -> float:
        """Speed factor of example `position` this epoch (1.0 without `speed_range`)."""
        if self.speed_range is None:
            return 1.0
        low, high = self.speed_range
        # A stream apart from the crop's, so switching perturbation on leaves the windows' draws alone.
        generator = np.random.default_rng([self.seed, self.epoch, position, 1])
        return float(np.exp(generator.uniform(np.log(low), np.log(high))))

    def eq_gains_db(self, position: int) -> tuple[float, ...]:
        """Gains (dB) at EQ_POINTS for example `position` this epoch (empty without `eq_db`)."""
        if self.eq_db is None:
            return ()
        generator = np.random.default_rng([self.seed, self.epoch, position, 2])  # a stream of its own
        return tuple(float(g) for g in generator.uniform(-self.eq_db, self.eq_db, len(EQ_POINTS)))

    def formant(self, position: int) -> float:
        """Formant factor of example `position` this epoch (1.0 without `formant_range`)."""
        if self.formant_range is None:
            return 1.0
        low, high = self.formant_range
        generator = np.random.default_rng([self.seed, self.epoch, position, 5])  # a stream of its own
        return float(np.exp(generator.uniform(np.log(low), np.log(high))))

    def reference_position(self, position: int) -> int:
        """The example whose audio is example `position`'s voice reference this epoch: another
        utterance of its speaker, itself when the speaker has no other."""
        others = [p for p in self.by_speaker[self.entries[position].speaker] if p != position]
        if not others:
            return position
        generator = np.random.default_rng([self.seed, self.epoch, position, 3])  # a stream of its own
        return others[int(generator.integers(0, len(others)))]

    def crop_start(self, position: int, num_samples: int) -> int:
        """First sample of example `position`'s window this epoch, for a file of num_samples."""
        if not self.random_crop or num_samples <= self.crop_samples:
            return 0
        generator = np.random.default_rng([self.seed, self.epoch, position])
        return int(generator.integers(0, num_samples - self.crop_samples + 1))

    def __getitem__(self, position: int) -> AudioCrop:
        if not 0 <= position < len(self.entries):
            raise IndexError(f"position {position} out of range for {len(self.entries)} examples")
        entry = self.entries[position]
        wav, _ = load_audio(entry.audio_path(self.root), sample_rate=self.sample_rate, resample=True, downmix=True)
        speed = self.speed(position)
        wav = played(wav, self.sample_rate, speed)
        start = self.crop_start(position, len(wav))
        formant = self.formant(position)
        window = formant_shifted(wav[start : start + self.crop_samples], self.sample_rate, formant)  # [<= N]
        gains = self.eq_gains_db(position)
        crop = AudioCrop(wav=_padded(equalized(window, self.sample_rate, gains), self.crop_samples), length=len(window),
                         index=position, start=start, speed=speed, eq_gains_db=gains, formant=formant)
        if self.reference_samples:
            crop.clean = _padded(window, self.crop_samples)
            other = self.entries[self.reference_position(position)]
            audio, _ = load_audio(other.audio_path(self.root), sample_rate=self.sample_rate, resample=True, downmix=True)
            audio = played(audio, self.sample_rate, speed)
            generator = np.random.default_rng([self.seed, self.epoch, position, 4])
            begin = int(generator.integers(0, max(1, len(audio) - self.reference_samples + 1)))
            reference = formant_shifted(audio[begin : begin + self.reference_samples], self.sample_rate, formant)
            crop.reference = _padded(equalized(reference, self.sample_rate, gains), self.reference_samples)
        return crop


def _factor_range(name: str, value: Sequence[float] | None) -> tuple[float, float] | None:
    """(low, high) as floats, checked to lie within [0.5, 2]; None stays None."""
    if value is None:
        return None
    low, high = (float(v) for v in value)
    if not 0.5 <= low <= high <= 2.0:
        raise ValueError(f"{name} must be (low, high) with 0.5 <= low <= high <= 2.0, got {value!r}")
    return low, high


def _padded(window: np.ndarray, samples: int) -> Tensor:
    """float32 [1, samples]: window, then zeros."""
    out = torch.zeros(1, samples)
    out[0, : len(window)] = torch.from_numpy(np.ascontiguousarray(window[:samples], dtype=np.float32))
    return out
