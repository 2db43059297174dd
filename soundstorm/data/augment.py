"""`soundstorm corpus augment`: new voices made from a corpus's own, for models that must take
the voice from a prompt.

    soundstorm corpus augment data/synth/manifest.jsonl data/synth-voices --copies 1
    soundstorm corpus merge data/synth/manifest.jsonl data/synth-voices/manifest.jsonl \
        --out data/synth-plus/manifest.jsonl
    soundstorm corpus tokenize data/synth-plus/manifest.jsonl data/synth-plus-tokens --codec ... --semantic ...

SoundStorm learns to continue a prompt's voice from what its training set shows it; a corpus of
ten voices lets it memorize ten and answer an unseen prompt with the nearest (docs/voices.md).
Each copy of an utterance here is the whole utterance played at its own random speed
(log-uniform in `speed_range`: pitch and formants move together, a shorter or longer vocal tract)
and filtered by its own random smooth gain curve (uniform in +-`eq_db` dB at EQ_POINTS: the
spectral envelopes and brightness the corpus's voices do not have); with a `formant_range`, its
formants are first moved alone by a factor of their own (log-uniform; formant.py: the pitch
stays), so that a copy's vocal tract is no longer tied to its pitch as its source's was. The whole utterance gets one
transform, so a prompt cut from its start has the voice of its continuation. No two copies share
a transform, so each copy is a speaker of its own: its `speaker` is its id.

Deterministic: a copy's transform depends only on the seed, the copy number and the source id, so
an interrupted run resumes (files already written are kept) and a rerun writes the same audio; a
rerun into the same folder with another source, seed, speed range or equalization is refused
(out/augment.json records them), since the files kept would not be what its manifest says. More
copies or another split may be added to a folder. Each WAV and the manifest are written
atomically; the source corpus is only read.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from soundstorm.atomic import atomic_path
from soundstorm.data.audio import load_audio
from soundstorm.data.audio_dataset import EQ_POINTS, equalized, played
from soundstorm.data.formant import formant_shifted
from soundstorm.data.made_with import check_made_with
from soundstorm.data.manifest import ManifestEntry, Phone, read_manifest, write_manifest


@dataclass(frozen=True)
class VoiceTransform:
    """What one copy is made with: formant_shifted(by formant), then played(at speed), then
    equalized(by eq_gains_db). Its pitch is speed times the source's, its formants speed * formant."""

    speed: float
    eq_gains_db: tuple[float, ...]  # at EQ_POINTS; empty: no equalization
    formant: float = 1.0


@dataclass(frozen=True)
class VoiceAugmentation:
    copies: int = 1  # transformed copies of each utterance
    speed_range: tuple[float, float] = (0.87, 1.15)  # speed factors, drawn log-uniformly (1: none)
    eq_db: float = 10.0  # gains drawn uniformly from [-eq_db, eq_db] dB at EQ_POINTS (0: none)
    seed: int = 0
    formant_range: tuple[float, float] = (1.0, 1.0)  # formant factors at a constant pitch, log-uniform (1: none)

    def __post_init__(self) -> None:
        if self.copies < 1:
            raise ValueError(f"copies must be at least 1, got {self.copies}")
        low, high = self.speed_range
        if not 0.5 <= low <= high <= 2.0:
            raise ValueError(f"speed_range must be (low, high) with 0.5 <= low <= high <= 2.0, got {self.speed_range!r}")
        if not 0.0 <= self.eq_db <= 24.0:
            raise ValueError(f"eq_db must be in [0, 24] dB, got {self.eq_db!r}")
        low, high = self.formant_range
        if not 0.7 <= low <= high <= 1.4:
            raise ValueError(f"formant_range must be (low, high) with 0.7 <= low <= high <= 1.4, got {self.formant_range!r}")

    def transform(self, source_id: str, copy: int) -> VoiceTransform:
        """The transform of copy `copy` (1-based) of utterance `source_id`."""
        # A digest, not hash(): Python salts str hashes per process, and reruns must agree.
        key = int.from_bytes(hashlib.sha256(source_id.encode()).digest()[:8], "little")
        generator = np.random.default_rng([self.seed, copy, key])
        low, high = self.speed_range
        speed = float(np.exp(generator.uniform(np.log(low), np.log(high))))
        gains = generator.uniform(-self.eq_db, self.eq_db, len(EQ_POINTS)) if self.eq_db > 0 else ()
        # Drawn last, so that the speeds and gains of a seed are those of copies made without it.
        low, high = self.formant_range
        formant = float(np.exp(generator.uniform(np.log(low), np.log(high)))) if low != high else low
        return VoiceTransform(speed, tuple(float(g) for g in gains), formant)


def copy_id(source_id: str, copy: int) -> str:
    return f"{source_id}~v{copy}"


# Settings added after folders were made without them, with the value those folders had.
_SETTING_DEFAULTS: dict[str, object] = {"formant_range": [1.0, 1.0]}


def augment_corpus(
    manifest: str | Path,
    out_dir: str | Path,
    augmentation: VoiceAugmentation,
    *,
    split: str | None = "train",
    progress: bool = False,
) -> list[ManifestEntry]:
    """Write `augmentation.copies` transformed copies of every utterance of `split` (all when
    None) under out_dir/audio/, and their manifest out_dir/manifest.jsonl (returned). The
    copies keep their source's text, split and sample rate; their phone timings are rescaled."""
    manifest, out_dir = Path(manifest), Path(out_dir)
    out_manifest = out_dir / "manifest.jsonl"
    if out_manifest.absolute() == manifest.absolute():
        raise ValueError(f"{out_dir} holds the source manifest: write the copies to another folder")
    sources = [e for e in read_manifest(manifest) if split is None or e.split == split]
    if not sources:
        raise ValueError(f"{manifest} has no utterances of split {split!r} to augment")
    settings = {"source": str(manifest.resolve()), "seed": augmentation.seed,
                "formant_range": list(augmentation.formant_range), "speed_range": list(augmentation.speed_range),
                "eq_db": augmentation.eq_db}
    check_made_with(out_dir / "augment.json", settings, "copies", _SETTING_DEFAULTS)
    root = manifest.parent
    copies: list[ManifestEntry] = []
    bar = tqdm(total=len(sources) * augmentation.copies, disable=not progress, desc="augment", unit="utt")
    for entry in sources:
        wav: np.ndarray | None = None  # read once per source, only when a copy is missing
        source_rate = entry.sample_rate
        # Beside where the source lies relative to its manifest; a source given by an absolute
        # path or one outside its corpus goes under audio/, named by its id's digest.
        source = Path(entry.path)
        stem = (source.with_suffix("") if not source.is_absolute() and ".." not in source.parts
                else Path("audio") / hashlib.sha256(entry.id.encode()).hexdigest()[:16])
        for copy in range(1, augmentation.copies + 1):
            transform = augmentation.transform(entry.id, copy)
            speed = transform.speed
            path = stem.with_name(f"{stem.name}~v{copy}.wav")
            target = out_dir / path
            if target.is_file():
                info = sf.info(str(target))
                frames, rate = info.frames, info.samplerate
            else:
                if wav is None:
                    wav, source_rate = load_audio(entry.audio_path(root), downmix=True)
                rate = source_rate
                shifted = formant_shifted(wav, rate, transform.formant)
                audio = equalized(played(shifted, rate, speed), rate, transform.eq_gains_db)
                frames = len(audio)
                with atomic_path(target) as tmp:
                    sf.write(tmp, audio, rate, format="WAV", subtype="PCM_16")
            phones = None if entry.phones is None else tuple(
                Phone(p.phone, round(p.start / speed, 4), round(p.end / speed, 4)) for p in entry.phones  # as the manifest keeps them
            )
            new_id = copy_id(entry.id, copy)
            copies.append(replace(
                entry, id=new_id, path=path.as_posix(), duration=frames / rate, sample_rate=rate, speaker=new_id, phones=phones,
                extra={**entry.extra, "augmented_from": entry.id, "speed": round(speed, 5),
                       "eq_gains_db": [round(g, 3) for g in transform.eq_gains_db]}
                      | ({"formant": round(transform.formant, 5)} if transform.formant != 1.0 else {}),
            ))
            bar.update(1)
    bar.close()
    write_manifest(copies, out_manifest)
    return copies


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="the source corpus's JSONL manifest")
    parser.add_argument("out", type=Path, help="folder for the copies' audio and manifest.jsonl (new, or a run to resume)")
    parser.add_argument("--copies", type=int, default=1, help="transformed copies of each utterance (default 1)")
    parser.add_argument("--speed", type=float, nargs=2, default=(0.87, 1.15), metavar=("LOW", "HIGH"),
                        help="speed factors, drawn log-uniformly per copy (default 0.87 1.15; 1 1: none)")
    parser.add_argument("--eq-db", type=float, default=10.0,
                        help="random equalization, +-dB at 7 points from 100 Hz to 7.5 kHz (default 10; 0: none)")
    parser.add_argument("--formant", type=float, nargs=2, default=(1.0, 1.0), metavar=("LOW", "HIGH"),
                        help="formant factors at a constant pitch, drawn log-uniformly per copy (default 1 1: none; "
                             "e.g. 0.87 1.15)")
    parser.add_argument("--split", default="train", help="augment only this split (default train; 'all': every split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    augmentation = VoiceAugmentation(copies=args.copies, speed_range=tuple(args.speed), eq_db=args.eq_db, seed=args.seed,
                                     formant_range=tuple(args.formant))
    entries = augment_corpus(args.manifest, args.out, augmentation, split=None if args.split == "all" else args.split,
                             progress=not args.quiet and sys.stderr.isatty())
    hours = sum(e.duration for e in entries) / 3600
    print(f"{args.out / 'manifest.jsonl'}: {len(entries)} copies, {hours:.2f} h; merge it with the source "
          "(soundstorm corpus merge) to train on both")
    return 0
