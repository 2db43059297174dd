"""`soundstorm corpus join`: a speaker's short clips packed into utterances long enough to train on.

    soundstorm corpus join data/asterisk-raw/manifest.jsonl data/asterisk --seconds 10

SoundStorm learns to continue a prompt in its voice from utterances whose start it keeps as the
prompt and whose rest it masks; a corpus of one- or two-second clips (voice prompts, commands,
keywords, single words) gives it almost no continuation to learn from. This packs each speaker's
clips, in manifest order, into utterances of about `seconds` (never more than `max_seconds`
unless one clip is), each clip's leading and trailing silence trimmed and `gap` seconds of
silence between clips. Clips are joined only within one speaker and one split, so held-out
utterances stay held out.

The joined utterance keeps what its clips had: the texts joined by spaces (null unless every clip
has one), phone timings moved to their place (null unless every clip has them), the split, and
the rate of the speaker's first clip (others resampled with soxr; multi-channel clips averaged).
`extra.joined_from` lists the clip ids.

Deterministic: the packing depends only on the manifest and the settings, so an interrupted run
resumes (WAVs already written are kept) and a rerun writes the same audio; a rerun into the same
folder with another source or other settings is refused (out/join.json records them). Each WAV
and the manifest are written atomically; the source corpus is only read.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from soundstorm.data.audio import load_audio, resample_audio, save_audio
from soundstorm.data.made_with import check_made_with
from soundstorm.data.manifest import ManifestEntry, Phone, read_manifest, write_manifest

TRIM_FRAME_SECONDS = 0.01  # the envelope's frame for trimming
TRIM_MARGIN_SECONDS = 0.05  # kept on each side of the first and last frame above the threshold


@dataclass(frozen=True)
class JoinSettings:
    seconds: float = 10.0  # an utterance is closed once it reaches this long
    max_seconds: float = 15.0  # a clip that would take an utterance past this starts the next one
    gap: float = 0.25  # silence between clips, seconds
    trim_db: float = 40.0  # trim each clip's edges quieter than its loudest frame by this much; 0: no trim

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds}")
        if not self.max_seconds >= self.seconds:
            raise ValueError(f"max_seconds ({self.max_seconds}) must be at least seconds ({self.seconds})")
        if not self.gap >= 0:
            raise ValueError(f"gap must be >= 0 s, got {self.gap}")
        if not self.trim_db >= 0:
            raise ValueError(f"trim_db must be >= 0 dB (0: no trimming), got {self.trim_db}")


def pack(durations: list[float], settings: JoinSettings) -> list[list[int]]:
    """Indices of consecutive clips per utterance: each closed once it reaches settings.seconds;
    a clip that would take it past settings.max_seconds opens the next. Uses the clips'
    durations before trimming, so utterances come out no longer than planned."""
    groups: list[list[int]] = []
    current: list[int] = []
    length = 0.0
    for i, duration in enumerate(durations):
        added = duration + (settings.gap if current else 0.0)
        if current and length + added > settings.max_seconds:
            groups.append(current)
            current, length, added = [], 0.0, duration
        current.append(i)
        length += added
        if length >= settings.seconds:
            groups.append(current)
            current, length = [], 0.0
    if current:
        groups.append(current)
    return groups


def trim_bounds(wav: np.ndarray, sample_rate: int, trim_db: float) -> tuple[int, int]:
    """[start, end) samples of wav without its leading and trailing frames quieter than its
    loudest frame by more than trim_db (a margin kept); the whole clip when trim_db is 0 or
    nothing would be left."""
    if trim_db == 0:
        return 0, len(wav)
    frame = max(1, round(TRIM_FRAME_SECONDS * sample_rate))
    count = len(wav) // frame
    if count == 0:
        return 0, len(wav)
    energy = np.square(wav[: count * frame].astype(np.float64)).reshape(count, frame).mean(axis=1)  # [frames]
    loud = np.flatnonzero(energy >= energy.max() * 10.0 ** (-trim_db / 10.0))
    if loud.size == 0 or energy.max() == 0:
        return 0, len(wav)
    margin = round(TRIM_MARGIN_SECONDS * sample_rate)
    start = max(0, int(loud[0]) * frame - margin)
    end = min(len(wav), (int(loud[-1]) + 1) * frame + margin)
    return start, end


def _folder(speaker: str) -> str:
    """A speaker's folder name: the name itself where it is one safe path component, else a
    cleaned form with a digest of the name, so that "a b" and "a_b" never share a folder."""
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", speaker).strip("._")
    return safe if safe == speaker else f"{safe or 'speaker'}-{hashlib.sha256(speaker.encode()).hexdigest()[:8]}"


def join_corpus(manifest: str | Path, out_dir: str | Path, settings: JoinSettings = JoinSettings(), *,
                progress: bool = False) -> list[ManifestEntry]:
    """Write the joined utterances of `manifest` under out_dir/audio/ and their manifest
    out_dir/manifest.jsonl (returned)."""
    manifest, out_dir = Path(manifest), Path(out_dir)
    out_manifest = out_dir / "manifest.jsonl"
    if out_manifest.absolute() == manifest.absolute():
        raise ValueError(f"{out_dir} holds the source manifest: write the joined corpus to another folder")
    entries = read_manifest(manifest)
    if not entries:
        raise ValueError(f"{manifest} has no utterances to join")
    check_made_with(out_dir / "join.json", {"source": str(manifest.resolve()), "seconds": settings.seconds,
                                            "max_seconds": settings.max_seconds, "gap": settings.gap,
                                            "trim_db": settings.trim_db}, "utterances")
    groups: dict[tuple[str, str | None], list[ManifestEntry]] = {}
    for entry in entries:  # dicts keep first-appearance order: the output follows the manifest
        groups.setdefault((entry.speaker, entry.split), []).append(entry)
    root = manifest.parent
    joined: list[ManifestEntry] = []
    bar = tqdm(total=len(entries), disable=not progress, desc="join", unit="clip")
    for (speaker, split), clips in groups.items():
        rate = clips[0].sample_rate
        for number, indices in enumerate(pack([c.duration for c in clips], settings)):
            parts = [clips[i] for i in indices]
            name = f"{split or 'all'}-{number:05d}"
            path = Path("audio") / _folder(speaker) / f"{name}.wav"
            joined.append(_join(parts, root, out_dir / path, path, f"{speaker}/{name}", rate, settings))
            bar.update(len(parts))
    bar.close()
    write_manifest(joined, out_manifest)
    return joined


def _join(parts: list[ManifestEntry], root: Path, target: Path, path: Path, utterance_id: str, rate: int,
          settings: JoinSettings) -> ManifestEntry:
    """One joined utterance: its audio written to target unless already there, and its entry."""
    gap = np.zeros(round(settings.gap * rate), dtype=np.float32)
    pieces: list[np.ndarray] = []
    phones: list[Phone] | None = [] if all(p.phones is not None for p in parts) else None
    offset = 0  # samples written so far
    for part in parts:
        wav, part_rate = load_audio(part.audio_path(root), downmix=True)
        if part_rate != rate:
            wav = resample_audio(wav, part_rate, rate)
        start, end = trim_bounds(wav, rate, settings.trim_db)
        if pieces:
            pieces.append(gap)
            offset += len(gap)
        pieces.append(wav[start:end])
        if phones is not None and part.phones is not None:
            # Times in the trimmed clip, clipped to what was kept, then moved to where it starts.
            cut, kept, at = start / rate, (end - start) / rate, offset / rate
            phones.extend(Phone(p.phone, round(min(max(p.start - cut, 0.0), kept) + at, 4),
                                round(min(max(p.end - cut, 0.0), kept) + at, 4)) for p in part.phones)
        offset += end - start
    if target.is_file():
        frames = sf.info(str(target)).frames
    else:
        audio = np.concatenate(pieces)  # [N]
        save_audio(target, audio, rate)
        frames = len(audio)
    texts = [p.text for p in parts]
    return ManifestEntry(
        id=utterance_id, path=path.as_posix(), duration=frames / rate, sample_rate=rate, speaker=parts[0].speaker,
        text=" ".join(t.strip() for t in texts if t) if all(texts) else None,  # type: ignore[union-attr]
        phones=None if phones is None else tuple(phones), split=parts[0].split,
        extra={"joined_from": [p.id for p in parts]},
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = JoinSettings()
    parser.add_argument("manifest", type=Path, help="the short clips' JSONL manifest")
    parser.add_argument("out", type=Path, help="folder for the joined audio and manifest.jsonl (new, or a run to resume)")
    parser.add_argument("--seconds", type=float, default=defaults.seconds,
                        help=f"close an utterance once it is this long (default {defaults.seconds:g})")
    parser.add_argument("--max-seconds", type=float, default=defaults.max_seconds,
                        help=f"start the next utterance rather than pass this (default {defaults.max_seconds:g})")
    parser.add_argument("--gap", type=float, default=defaults.gap,
                        help=f"silence between clips, seconds (default {defaults.gap:g})")
    parser.add_argument("--trim-db", type=float, default=defaults.trim_db,
                        help=f"trim clip edges this many dB below the clip's loudest 10 ms (default "
                             f"{defaults.trim_db:g}; 0: keep them)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    settings = JoinSettings(seconds=args.seconds, max_seconds=args.max_seconds, gap=args.gap, trim_db=args.trim_db)
    entries = join_corpus(args.manifest, args.out, settings, progress=not args.quiet and sys.stderr.isatty())
    clips = sum(len(e.extra["joined_from"]) for e in entries)
    hours = sum(e.duration for e in entries) / 3600
    print(f"{args.out / 'manifest.jsonl'}: {len(entries)} utterances of {clips} clips, {hours:.2f} h")
    return 0
