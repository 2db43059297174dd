"""Scan a folder of speech (wav, flac, ogg, mp3 + optional transcripts) into a manifest.

Layouts, detected in this order unless --layout names one:
  ljspeech   metadata.csv with `id|text|normalized text` lines, audio in wavs/<id>.wav;
             speaker: --speaker or the folder's name.
  libritts   <speaker>/<chapter>/<utt>.wav beside <utt>.normalized.txt (else <utt>.original.txt);
             speaker: the top folder.
  plain      any <name>.wav, with <name>.txt beside it as the transcript where there is one;
             speaker: --speaker or the file's folder name.

Every file is decoded and checked (duration bounds, channels, sample rate if --sample-rate is
given, silence, clipping). Files that fail are left out of the manifest and listed with the
reason in <manifest stem>.rejects.jsonl beside it; the scan goes on. No audio file is modified.

    soundstorm corpus scan ~/LJSpeech-1.1 --out data/lj/manifest.jsonl --sample-rate 22050
    soundstorm corpus scan corpus/ --out m.jsonl --align --valid-fraction 0.02 --test-fraction 0.02
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import soundfile as sf
from tqdm import tqdm

from soundstorm.atomic import atomic_path
from soundstorm.data.audio import (
    AUDIO_EXTENSIONS,
    MAX_CLIPPED_FRACTION,
    MAX_SECONDS,
    MIN_SECONDS,
    SILENCE_DB,
    AudioError,
    load_audio,
    validate_audio,
)
from soundstorm.data.manifest import ManifestEntry, write_manifest

LAYOUTS = ("ljspeech", "libritts", "plain")
_LIBRITTS_TEXT_SUFFIXES = (".normalized.txt", ".original.txt")  # in order of preference


@dataclass(frozen=True)
class Candidate:
    """An audio file the layout names, before it is checked."""

    id: str
    path: Path  # absolute
    speaker: str
    text: str | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    """A file left out of the manifest, and why."""

    path: str  # relative to the manifest's folder, like the manifest's paths
    reason: str  # short category: "too short", "undecodable", "alignment failed", ...
    detail: str  # the full message
    id: str | None = None


@dataclass(frozen=True)
class Checks:
    """What every file must pass (see scan_corpus for the meaning of each)."""

    sample_rate: int | None = None
    resample: bool = False
    downmix: bool = False
    min_seconds: float = MIN_SECONDS
    max_seconds: float = MAX_SECONDS
    silence_db: float = SILENCE_DB
    max_clipped_fraction: float = MAX_CLIPPED_FRACTION
    align: bool = False


@dataclass(frozen=True)
class ScanReport:
    layout: str  # the layout used (detected or forced)
    manifest: Path
    rejects_path: Path
    entries: tuple[ManifestEntry, ...]  # as written to the manifest, in id order
    rejects: tuple[Reject, ...]

    @property
    def total_seconds(self) -> float:
        return sum(entry.duration for entry in self.entries)

    def reject_counts(self) -> dict[str, int]:
        """Rejected files per reason, most common first."""
        return dict(Counter(reject.reason for reject in self.rejects).most_common())

    def summary(self) -> str:
        found = len(self.entries) + len(self.rejects)
        text = (
            f"kept {len(self.entries)} of {found} files ({_hours(self.total_seconds)}) of a "
            f"{self.layout} corpus in {self.manifest}"
        )
        if self.rejects:
            reasons = ", ".join(f"{count} {reason}" for reason, count in self.reject_counts().items())
            text += f"; rejected {len(self.rejects)} ({reasons}): see {self.rejects_path}"
        return text


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def scan_corpus(
    root: str | Path,
    out_manifest: str | Path,
    *,
    layout: str = "auto",
    speaker: str | None = None,
    checks: Checks = Checks(),
    valid_fraction: float = 0.0,
    test_fraction: float = 0.0,
    test_speakers: Sequence[str] = (),
    split_seed: int = 0,
    workers: int = 1,
    progress: bool = False,
) -> ScanReport:
    """Find, check and list every utterance under `root`; write the manifest and its rejects.

    Args:
        root: the corpus folder.
        out_manifest: the JSONL manifest to write (atomically); rejects go to
            `<stem>.rejects.jsonl` beside it.
        layout: "auto" (detect), or one of LAYOUTS.
        speaker: the speaker of every file, overriding what the layout says.
        checks: duration bounds, required sample rate, etc. With `checks.resample`, files at
            another rate are kept (their own rate is recorded; loaders resample). With
            `checks.downmix`, multi-channel files are kept (extra["channels"] records it).
            With `checks.align`, utterances with a transcript get phone timings; those that
            cannot be aligned are rejected.
        valid_fraction, test_fraction: the share of utterances put in each split, by a hash of
            (split_seed, id): a file keeps its split when others are added. Both 0 (and no
            test_speakers): no splits (split = null).
        test_speakers: speakers held out entirely, as "test-unseen-speaker".
        workers: processes that decode files in parallel (1: in this process).
        progress: show a progress bar.

    Raises:
        FileNotFoundError: `root` is not a folder.
        ValueError: an unknown layout, bad fractions, no audio at all, or an unknown test speaker.
    """
    root = Path(root).resolve()
    out_manifest = Path(out_manifest).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no corpus folder at {root}")
    if not (0.0 <= valid_fraction and 0.0 <= test_fraction and valid_fraction + test_fraction < 1.0):
        raise ValueError(
            f"--valid-fraction and --test-fraction must be >= 0 and sum to less than 1, "
            f"got {valid_fraction} and {test_fraction}"
        )
    if layout == "auto":
        layout = detect_layout(root)
    elif layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: expected auto or one of {', '.join(LAYOUTS)}")

    candidates, rejects = find_utterances(root, layout, speaker=speaker)
    rejects = [_relocate(reject, root, out_manifest.parent) for reject in rejects]
    if not candidates and not rejects:
        raise ValueError(
            f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found under {root} as a {layout} corpus"
        )
    unknown = sorted(set(test_speakers) - {c.speaker for c in candidates})
    if unknown:
        known = sorted({c.speaker for c in candidates})
        raise ValueError(f"test speakers {unknown} have no files; the corpus has speakers {known[:20]}")

    results = _check_all(candidates, checks, out_manifest.parent, workers, progress)
    entries: list[ManifestEntry] = []
    for result in results:
        if isinstance(result, Reject):
            rejects.append(result)
            continue
        split = _split(result, valid_fraction, test_fraction, set(test_speakers), split_seed)
        entries.append(replace(result, split=split))
    entries.sort(key=lambda entry: entry.id)
    rejects.sort(key=lambda reject: reject.path)

    write_manifest(entries, out_manifest)
    rejects_path = out_manifest.with_name(out_manifest.stem + ".rejects.jsonl")
    with atomic_path(rejects_path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for reject in rejects:
            handle.write(json.dumps(asdict(reject), ensure_ascii=False) + "\n")
    return ScanReport(layout, out_manifest, rejects_path, tuple(entries), tuple(rejects))


def detect_layout(root: Path) -> str:
    """ljspeech if root/metadata.csv exists; libritts if any *.normalized.txt or *.original.txt
    is found; otherwise plain."""
    if (root / "metadata.csv").is_file():
        return "ljspeech"
    for _, names in _walk(root):
        if any(name.endswith(_LIBRITTS_TEXT_SUFFIXES) for name in names):
            return "libritts"
    return "plain"


def find_utterances(
    root: Path, layout: str, *, speaker: str | None = None
) -> tuple[list[Candidate], list[Reject]]:
    """The audio files of a corpus with their ids, speakers and transcripts, without decoding
    them; problems found on the way (missing audio, unreadable transcripts, duplicate ids) come
    back as rejects with paths relative to `root`."""
    if layout == "ljspeech":
        candidates, rejects = _ljspeech(root, speaker)
    else:
        candidates, rejects = [], []
        for folder, names in _walk(root):
            for name in names:
                if not name.lower().endswith(AUDIO_EXTENSIONS):
                    continue
                path = folder / name
                relative = path.relative_to(root)
                if layout == "libritts":
                    who = speaker or (relative.parts[0] if len(relative.parts) > 1 else root.name)
                    text_files = [path.with_name(path.stem + suffix) for suffix in _LIBRITTS_TEXT_SUFFIXES]
                else:
                    who = speaker or (relative.parent.name if len(relative.parts) > 1 else root.name)
                    text_files = [path.with_suffix(".txt")]
                try:
                    text = next((_read_text(f) for f in text_files if f.is_file()), None)
                except (OSError, UnicodeDecodeError) as error:
                    detail = f"cannot read the transcript of {relative}: {error}"
                    rejects.append(Reject(str(relative), "bad transcript", detail))
                    continue
                candidates.append(Candidate(relative.with_suffix("").as_posix(), path, who, text))
    # One id per utterance: a.wav beside a.flac, or a repeated metadata line, keeps the first.
    unique: dict[str, Candidate] = {}
    for candidate in candidates:
        if candidate.id in unique:
            rejects.append(Reject(
                str(candidate.path.relative_to(root)), "duplicate id",
                f"id {candidate.id!r} is already used by {unique[candidate.id].path.relative_to(root)}",
                candidate.id,
            ))
        else:
            unique[candidate.id] = candidate
    return list(unique.values()), rejects


def _ljspeech(root: Path, speaker: str | None) -> tuple[list[Candidate], list[Reject]]:
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    metadata = root / "metadata.csv"
    if not metadata.is_file():
        raise FileNotFoundError(
            f"an ljspeech corpus needs {metadata} (id|text|normalized text lines): "
            "leave out --layout to detect the layout"
        )
    # Split on "|" by hand: LJSpeech's texts hold unbalanced quotes that trip the csv module.
    for number, line in enumerate(metadata.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        where = f"metadata.csv:{number}"
        if len(fields) < 2 or not fields[0].strip():
            detail = f"{where}: expected id|text|normalized text, got {line[:80]!r}"
            rejects.append(Reject(where, "bad metadata line", detail))
            continue
        utterance_id = fields[0].strip()
        original = _collapse(fields[1])
        normalized = _collapse(fields[2]) if len(fields) > 2 else ""
        audio = next((root / "wavs" / (utterance_id + ext) for ext in AUDIO_EXTENSIONS
                      if (root / "wavs" / (utterance_id + ext)).is_file()), None)
        if audio is None:
            rejects.append(Reject(f"wavs/{utterance_id}.wav", "missing audio",
                                  f"{where} names {utterance_id} but there is no wavs/{utterance_id}.wav",
                                  utterance_id))
            continue
        extra = {"original_text": original} if normalized and normalized != original else {}
        text = normalized or original or None
        candidates.append(Candidate(utterance_id, audio, speaker or root.name, text, extra))
    return candidates, rejects


def _walk(root: Path) -> Iterator[tuple[Path, list[str]]]:
    """(folder, file names) for every folder under root, sorted, hidden ones skipped (atomic
    writes leave `.name.tmp-*` files behind only while they run)."""
    for folder, folders, names in os.walk(root):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        yield Path(folder), sorted(n for n in names if not n.startswith("."))


def _read_text(path: Path) -> str | None:
    return _collapse(path.read_text(encoding="utf-8")) or None


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _relocate(reject: Reject, root: Path, manifest_dir: Path) -> Reject:
    path = os.path.relpath(root / reject.path, manifest_dir)
    return Reject(Path(path).as_posix(), reject.reason, reject.detail, reject.id)


def _check_all(
    candidates: list[Candidate], checks: Checks, manifest_dir: Path, workers: int, progress: bool
) -> list[ManifestEntry | Reject]:
    bar = tqdm(total=len(candidates), desc="scanning", unit="file", disable=not progress)
    results: list[ManifestEntry | Reject] = []
    jobs = [(candidate, checks, manifest_dir) for candidate in candidates]
    with bar:
        if workers <= 1 or len(candidates) < 2:
            for job in jobs:
                results.append(_check(job))
                bar.update()
        else:
            # spawn, not fork: the parent may hold torch's and soxr's thread pools, which a
            # forked child inherits in an undefined state.
            context = multiprocessing.get_context("spawn")
            chunk = max(1, min(64, len(jobs) // (workers * 8)))
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                for result in pool.map(_check, jobs, chunksize=chunk):
                    results.append(result)
                    bar.update()
    return results


def _check(job: tuple[Candidate, Checks, Path]) -> ManifestEntry | Reject:
    """Decode and check one file: its manifest entry (split unset), or why it is rejected."""
    candidate, checks, manifest_dir = job
    path = Path(os.path.relpath(candidate.path, manifest_dir)).as_posix()
    try:
        return _check_file(candidate, checks, path)
    except Exception as error:  # noqa: BLE001 - one odd file must not end a scan of thousands
        return Reject(path, "error", f"{path}: unexpected {type(error).__name__}: {error}", candidate.id)


def _check_file(candidate: Candidate, checks: Checks, path: str) -> ManifestEntry | Reject:
    try:
        wav, sample_rate = load_audio(
            candidate.path,
            sample_rate=None if checks.resample else checks.sample_rate,
            downmix=checks.downmix,
        )
    except AudioError as error:
        return Reject(path, error.reason, str(error), candidate.id)
    problem = validate_audio(
        wav, sample_rate, min_seconds=checks.min_seconds, max_seconds=checks.max_seconds,
        silence_db=checks.silence_db, max_clipped_fraction=checks.max_clipped_fraction,
    )
    if problem is not None:
        reason, _, detail = problem.partition(": ")
        return Reject(path, reason, f"{path}: {detail}", candidate.id)
    phones = None
    if checks.align and candidate.text:
        from soundstorm.data.align import AlignmentError, align_phones  # pocketsphinx only if asked

        try:
            phones = align_phones(wav, sample_rate, candidate.text)
        except AlignmentError as error:
            return Reject(path, "alignment failed", f"{path}: {error}", candidate.id)
    extra = dict(candidate.extra)
    if checks.downmix:
        channels = sf.info(str(candidate.path)).channels
        if channels != 1:
            extra["channels"] = channels  # loaders must downmix too
    return ManifestEntry(
        id=candidate.id, path=path, duration=wav.shape[0] / sample_rate, sample_rate=sample_rate,
        speaker=candidate.speaker, text=candidate.text, phones=phones, extra=extra,
    )


def _split(entry: ManifestEntry, valid: float, test: float, test_speakers: set[str], seed: int) -> str | None:
    if entry.speaker in test_speakers:
        return "test-unseen-speaker"
    if valid == 0.0 and test == 0.0:
        return "train" if test_speakers else None
    digest = hashlib.sha256(f"{seed}:{entry.id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1), fixed per id
    if u < test:
        return "test"
    if u < test + valid:
        return "valid"
    return "train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("root", type=Path, help="the corpus folder")
    add("--out", "-o", type=Path, required=True, metavar="MANIFEST", help="the JSONL manifest to write")
    add("--layout", choices=("auto", *LAYOUTS), default="auto", help="default: detect")
    add("--speaker", metavar="NAME", help="the speaker of every file (default: from the layout)")
    add("--sample-rate", type=int, metavar="HZ", help="require this rate in Hz (default: any)")
    add("--resample", action="store_true",
        help="keep files at another rate than --sample-rate (loaders resample them)")
    add("--downmix", action="store_true", help="keep multi-channel files (loaders average them)")
    add("--min-seconds", type=float, default=MIN_SECONDS, metavar="S", help=f"default {MIN_SECONDS:g}")
    add("--max-seconds", type=float, default=MAX_SECONDS, metavar="S", help=f"default {MAX_SECONDS:g}")
    add("--silence-db", type=float, default=SILENCE_DB, metavar="DB",
        help=f"reject files whose RMS level is below this many dB full scale (default {SILENCE_DB:g})")
    add("--max-clipped", type=float, default=MAX_CLIPPED_FRACTION, metavar="FRACTION",
        help=f"reject files with more than this fraction of samples at full scale "
             f"(default {MAX_CLIPPED_FRACTION:g})")
    add("--align", action="store_true",
        help="add phone timings by forced alignment (pocketsphinx) where there is a transcript; "
             "files that fail to align are rejected")
    add("--valid-fraction", type=float, default=0.0, metavar="FRACTION",
        help="share of utterances for validation")
    add("--test-fraction", type=float, default=0.0, metavar="FRACTION", help="share of utterances for test")
    add("--test-speakers", default="", metavar="A,B,...",
        help="comma-separated speakers held out as test-unseen-speaker")
    add("--split-seed", type=int, default=0, metavar="N", help="seed of the split hash (default 0)")
    add("--workers", type=int, default=min(8, os.cpu_count() or 1), metavar="N",
        help="decoding processes (default: CPU cores, at most 8)")
    add("--json", action="store_true", help="print the report as JSON on stdout")
    add("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """`soundstorm corpus scan`: 0 when the manifest holds at least one utterance, 1 when every
    file was rejected, 2 when the corpus could not be scanned at all."""
    checks = Checks(
        sample_rate=args.sample_rate, resample=args.resample, downmix=args.downmix,
        min_seconds=args.min_seconds, max_seconds=args.max_seconds, silence_db=args.silence_db,
        max_clipped_fraction=args.max_clipped, align=args.align,
    )
    try:
        report = scan_corpus(
            args.root, args.out, layout=args.layout, speaker=args.speaker, checks=checks,
            valid_fraction=args.valid_fraction, test_fraction=args.test_fraction,
            test_speakers=[s.strip() for s in args.test_speakers.split(",") if s.strip()],
            split_seed=args.split_seed, workers=args.workers,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"soundstorm corpus scan: {error}", file=sys.stderr)
        return 2
    print(report.summary(), file=sys.stderr)
    if args.json:
        print(json.dumps({
            "layout": report.layout, "manifest": str(report.manifest), "rejects": str(report.rejects_path),
            "kept": len(report.entries), "rejected": len(report.rejects),
            "hours": report.total_seconds / 3600,
            "reject_counts": report.reject_counts(),
        }, indent=2))
    return 0 if report.entries else 1
