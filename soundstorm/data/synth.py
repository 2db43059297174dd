"""`soundstorm corpus synth`: a multi-speaker speech corpus built offline from Debian packages.

Sentences from fortunes, the King James Bible and WordNet (soundstorm.data.sentences) are spoken
by flite, festival and espeak-ng voices (soundstorm.data.voices). The output folder holds

    audio/<speaker>/<source>-<hash>.wav    16-bit mono wav at --sample-rate (16 kHz by default)
    audio/<speaker>/<source>-<hash>.json   what the manifest says of that file (for resuming)
    manifest.jsonl                         soundstorm.data.manifest entries, phones included
    corpus.json                            the build settings and what came out of them

How sentences are chosen. The deduplicated sentence list is shuffled with the seed and dealt
round-robin to the voices (sorted by speaker id), so no two voices speak the same sentence.
Every voice gets an equal share of the target hours: its sentences are taken in order until
their audio reaches the share. How many that takes is estimated from a speaking rate (the
engine's typical rate at first, then the voice's measured one), synthesized in parallel, and
topped up until the share is reached; the manifest keeps exactly the shortest prefix of each
voice's list that reaches it. So the corpus is a function of the settings and the installed
packages alone, not of the number of workers or of interruptions.

Splits. Held-out voices (--held-out) go entirely to `test-unseen-speaker`; every other
utterance goes to train / valid / test by a seeded hash of its sentence.

Resuming. Every file is written atomically, the wav before its .json; an utterance whose .json
and wav agree (sample rate, length, text) is never synthesized again, so an interrupted or
repeated run only does what is missing. Temporary files left by a killed run are removed.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from soundstorm.atomic import atomic_path, atomic_write_text
from soundstorm.data.manifest import ManifestEntry, Phone, write_manifest
from soundstorm.data.sentences import SOURCES, Sentence, SourceUnavailable, load_sentences
from soundstorm.data.voices import CHARS_PER_SECOND, Synthesized, Voice, VoiceUnavailable, check_voice, parse_voice
from soundstorm.data.voices import synthesize as engine_synthesize

DEFAULT_VOICES = (
    "flite-kal16", "flite-awb", "flite-rms", "flite-slt",
    "festival-kal_diphone", "festival-ked_diphone", "festival-cmu_us_slt_arctic_hts",
    "espeak-en-us", "espeak-en-us+f3", "espeak-en+m7", "espeak-en+klatt", "espeak-en+f4",
)
# One flite and one espeak-ng voice never seen in training, for speaker-generalisation tests.
DEFAULT_HELD_OUT = ("flite-rms", "espeak-en+f4")
DEFAULT_HOURS = 5.0
DEFAULT_SAMPLE_RATE = 16000
DEFAULT_VALID_FRACTION = 0.03
DEFAULT_TEST_FRACTION = 0.03

MANIFEST_NAME = "manifest.jsonl"
CORPUS_NAME = "corpus.json"
AUDIO_DIR = "audio"
FORMAT_VERSION = 1
_MAX_CHUNK = 32  # sentences per task: festival's start-up (~0.15 s) is paid once a chunk
_LOCK_NAME = ".synth.lock"


@dataclass
class _VoiceState:
    """One voice's sentence queue and what is known about each queued sentence on disk."""

    voice: Voice
    queue: list[Sentence]
    target: float  # seconds of audio this voice should reach
    records: dict[int, dict[str, Any]] = field(default_factory=dict)  # queue index -> record
    failed: set[int] = field(default_factory=set)  # the engine produced nothing usable (mostly_silent)
    checked: set[int] = field(default_factory=set)  # indices whose files were looked at

    def rate(self) -> float:
        """Characters per second of audio: measured once this voice has audio, else the prior."""
        chars = sum(len(self.queue[i].text) for i in self.records)
        seconds = sum(r["entry"]["duration"] for r in self.records.values())
        return chars / seconds if seconds > 0 else CHARS_PER_SECOND[self.voice.engine]

    def plan(self, out_dir: Path, sample_rate: int, align: bool) -> list[int]:
        """Queue indices to synthesize next: walking the queue in order, counting the audio
        that exists and estimating the rest, until the target is (expected to be) reached."""
        rate = self.rate()
        total, planned = 0.0, []
        for i, sentence in enumerate(self.queue):
            if total >= self.target:
                break
            if i in self.failed:
                continue
            if i not in self.records and i not in self.checked:
                self.checked.add(i)
                record = _load_record(out_dir, self.voice, sentence, sample_rate, align)
                if record is not None:
                    self.records[i] = record
            if i in self.records:
                total += self.records[i]["entry"]["duration"]
            else:
                planned.append(i)
                total += len(sentence.text) / rate
        return planned

    def selected(self) -> list[int]:
        """The shortest prefix of the queue (failures skipped) whose audio reaches the target."""
        total, chosen = 0.0, []
        for i in range(len(self.queue)):
            if total >= self.target:
                break
            if i in self.records:
                chosen.append(i)
                total += self.records[i]["entry"]["duration"]
        return chosen

    def seconds(self) -> float:
        return sum(self.records[i]["entry"]["duration"] for i in self.selected())


def utterance_name(sentence: Sentence) -> str:
    """File stem of a sentence's audio: "<source>-<10 hex digits of the text's SHA-1>".

    Named by content, so a resumed run finds a sentence's audio whatever its position."""
    return f"{sentence.source}-{hashlib.sha1(sentence.text.encode()).hexdigest()[:10]}"


def sentence_split(text: str, seed: int, valid_fraction: float, test_fraction: float) -> str:
    """train / valid / test for a sentence, by a seeded hash: stable across corpus sizes."""
    digest = hashlib.sha256(f"{seed}\0{text}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if u < valid_fraction:
        return "valid"
    if u < valid_fraction + test_fraction:
        return "test"
    return "train"


def _paths(out_dir: Path, voice: Voice, sentence: Sentence) -> tuple[Path, Path]:
    stem = out_dir / AUDIO_DIR / voice.speaker / utterance_name(sentence)
    return stem.with_suffix(".wav"), stem.with_suffix(".json")


def _load_record(out_dir: Path, voice: Voice, sentence: Sentence, sample_rate: int,
                 align: bool) -> dict[str, Any] | None:
    """The record of an utterance already on disk, or None unless it is complete and matches
    the settings (sample rate; alignment, for utterances whose engine gave no phones)."""
    wav, meta = _paths(out_dir, voice, sentence)
    try:
        record = json.loads(meta.read_text())
        entry = record["entry"]
        if entry["text"] != sentence.text or entry["sample_rate"] != sample_rate:
            return None
        engine_phones = entry.get("extra", {}).get("phones_from") == voice.engine
        if not engine_phones and record["aligned"] != align:
            return None  # its phones (or their absence) came from the other alignment setting
        info = sf.info(str(wav))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None
    if info.samplerate != sample_rate or info.channels != 1 or info.frames != record.get("frames"):
        return None
    return record


def _phones_within(phones: Sequence[Phone] | None, duration: float) -> tuple[Phone, ...] | None:
    """Clip phone times to `duration` (resampling rounds the length by up to a sample)."""
    if not phones:
        return None
    return tuple(Phone(p.phone, min(p.start, duration), min(p.end, duration)) for p in phones)


def _align(audio: np.ndarray, sample_rate: int, text: str) -> tuple[Phone, ...] | None:
    """Phone timings by forced alignment (pocketsphinx), for engines that print none; None when
    the aligner is not installed or cannot align this utterance (robotic voices sometimes)."""
    try:
        from soundstorm.data import align as aligner
    except ImportError:
        return None
    try:
        # align_phones resets pocketsphinx's adaptive front end per utterance, so timings do not
        # depend on what a worker aligned before: the corpus is the same for any worker count.
        return aligner.align_phones(audio, sample_rate, text)
    except Exception:  # an alignment failure (or no pocketsphinx) only costs this utterance its phones
        return None


def _synthesize_chunk(voice: Voice, sentences: list[Sentence], out_dir: Path, sample_rate: int,
                      align: bool) -> list[dict[str, Any] | None]:
    """Worker: speak `sentences` with `voice`, write each wav and its record; return the
    records (None where the engine failed). Runs in a worker process."""
    with tempfile.TemporaryDirectory(prefix="soundstorm-synth-") as tmp:
        results = engine_synthesize(voice, [s.text for s in sentences], Path(tmp))
    if len(sentences) > 1:
        # A batch engine (festival) can fail mid-script; retry those sentences one by one.
        for i, result in enumerate(results):
            if result is None:
                with tempfile.TemporaryDirectory(prefix="soundstorm-synth-") as tmp:
                    results[i] = engine_synthesize(voice, [sentences[i].text], Path(tmp))[0]
    return [None if result is None else _write_utterance(voice, sentence, result, out_dir, sample_rate, align)
            for sentence, result in zip(sentences, results)]


# An engine that cannot speak a text may still write a file: MBROLA voices reading English through
# another language's diphones replace every diphone they lack by silence. Such audio is a failure.
# The loudest 20 ms below -50 dBFS is nothing audible; more than 60% of frames 40 dB under the
# loudest is mostly gaps (the Debian voices of data/synth peak at 45%, their 99th percentile 38%).
_QUIET_DBFS = -50.0
_MAX_GAP_FRACTION = 0.6


def mostly_silent(audio: np.ndarray, sample_rate: int) -> bool:
    """True when `audio` [N] holds no audible speech or is mostly gaps (see _MAX_GAP_FRACTION)."""
    hop = max(1, sample_rate // 50)  # 20 ms frames
    frames = audio[: audio.shape[0] // hop * hop].reshape(-1, hop)
    if frames.shape[0] == 0:
        return True
    level = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loudest = float(level.max())
    return loudest < _QUIET_DBFS or float(np.mean(level < loudest - 40.0)) > _MAX_GAP_FRACTION


def _write_utterance(voice: Voice, sentence: Sentence, result: Synthesized, out_dir: Path, sample_rate: int,
                     align: bool) -> dict[str, Any] | None:
    audio = result.audio.astype(np.float32, copy=False)
    if result.sample_rate != sample_rate:
        audio = soxr.resample(audio, result.sample_rate, sample_rate, quality="HQ")
    if audio.shape[0] == 0 or not np.isfinite(audio).all() or mostly_silent(audio, sample_rate):
        return None
    peak = float(np.abs(audio).max())
    if peak > 0.999:  # resampling can overshoot a full-scale engine output; 16-bit would clip
        audio = audio * (0.999 / peak)
    frames = int(audio.shape[0])
    duration = frames / sample_rate
    phones, phones_from = _phones_within(result.phones, duration), voice.engine
    if phones is None and align:
        phones, phones_from = _phones_within(_align(audio, sample_rate, sentence.text), duration), "pocketsphinx"
    extra: dict[str, Any] = {"source": sentence.source}
    if phones is not None:
        extra["phones_from"] = phones_from
    name = utterance_name(sentence)
    entry = ManifestEntry(
        id=f"{voice.speaker}/{name}", path=f"{AUDIO_DIR}/{voice.speaker}/{name}.wav", duration=duration,
        sample_rate=sample_rate, speaker=voice.speaker, text=sentence.text, phones=phones, extra=extra,
    )
    wav, meta = _paths(out_dir, voice, sentence)
    with atomic_path(wav) as tmp:
        sf.write(tmp, audio, sample_rate, format="WAV", subtype="PCM_16")
    # Written after the wav: its presence is what marks the utterance as done.
    record = {"format_version": FORMAT_VERSION, "entry": json.loads(entry.to_json()), "frames": frames,
              "aligned": align}  # alignment was tried (it may still have failed)
    atomic_write_text(meta, json.dumps(record) + "\n")
    return record


def _remove_stray_temp_files(out_dir: Path) -> int:
    """Delete temporary files a killed run left behind (atomic_path names them `.<name>.tmp-*`)."""
    removed = 0
    candidates = list(out_dir.glob(".*.tmp-*"))
    if (out_dir / AUDIO_DIR).is_dir():
        candidates += list((out_dir / AUDIO_DIR).glob("*/.*.tmp-*"))
    for path in candidates:
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class CorpusBusy(RuntimeError):
    """Another build holds the output folder."""


@contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """Hold a lock on `out_dir`, so two builds never write (or clean up) the same folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / _LOCK_NAME, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CorpusBusy(f"another `soundstorm corpus synth` is writing to {out_dir}; wait for it "
                               "or choose another folder") from None
        yield


class _InlineExecutor(Executor):
    """Runs each task at submission: one worker needs no process pool."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(error)
        return future


def _chunks(plans: dict[str, list[int]], workers: int) -> list[tuple[str, list[int]]]:
    """Tasks of at most _MAX_CHUNK sentences, small enough to give every worker several, and
    interleaved across voices so that all voices progress together."""
    total = sum(len(p) for p in plans.values())
    size = max(1, min(_MAX_CHUNK, math.ceil(total / (4 * workers))))
    per_voice = [[(speaker, plan[i:i + size]) for i in range(0, len(plan), size)]
                 for speaker, plan in plans.items()]
    tasks = []
    for round_ in range(max((len(c) for c in per_voice), default=0)):
        tasks += [chunks[round_] for chunks in per_voice if round_ < len(chunks)]
    return tasks


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def synthesize_corpus(
    out_dir: str | Path,
    *,
    hours: float = DEFAULT_HOURS,
    voices: Sequence[str] = DEFAULT_VOICES,
    held_out: Sequence[str] | None = None,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    seed: int = 0,
    workers: int | None = None,
    sources: Sequence[str] = SOURCES,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    align: bool = True,
    progress: bool = True,
) -> Path:
    """Build (or finish, or extend) a synthetic corpus in `out_dir`; return the manifest's path.

    Args:
        hours: total audio to reach, shared equally among the voices (each voice overshoots its
            share by less than one sentence).
        voices: speaker ids such as "flite-slt", "festival-kal_diphone", "espeak-en-us+f3".
        held_out: voices (among `voices`) whose every utterance goes to test-unseen-speaker;
            default: those of DEFAULT_HELD_OUT that are among `voices`.
        sample_rate: Hz of the written wav files (16-bit mono).
        seed: chooses the sentences of each voice and the sentence splits.
        workers: processes in parallel (default: the usable cores); does not change the output.
        sources: sentence sources, from soundstorm.data.sentences.SOURCES.
        valid_fraction, test_fraction: the share of sentences hashed to valid and test.
        align: give espeak-ng utterances phone timings by forced alignment (pocketsphinx),
            where soundstorm.data.align is installed; flite and festival print their own.
        progress: show a progress bar (only on a terminal).

    Raises:
        VoiceUnavailable / SourceUnavailable: a program, voice or text is missing; the message
            names the Debian package to install.
        ValueError: bad settings.
    """
    out_dir = Path(out_dir)
    speakers = sorted(dict.fromkeys(voices))
    if held_out is None:
        held_out = [s for s in DEFAULT_HELD_OUT if s in speakers]
    held_out = sorted(dict.fromkeys(held_out))
    if not hours > 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    if not speakers:
        raise ValueError("no voices given: expected speaker ids such as flite-slt, espeak-en-us")
    if unknown := [s for s in held_out if s not in speakers]:
        raise ValueError(f"held-out voice(s) {', '.join(unknown)} are not among the voices {', '.join(speakers)}")
    if not 4000 <= sample_rate <= 192000:
        raise ValueError(f"sample_rate must be in [4000, 192000] Hz, got {sample_rate}")
    if not (0 <= valid_fraction and 0 <= test_fraction and valid_fraction + test_fraction < 1):
        raise ValueError(f"valid and test fractions must be >= 0 and sum below 1, "
                         f"got {valid_fraction} and {test_fraction}")
    workers = workers or _default_workers()
    parsed = [parse_voice(s) for s in speakers]
    for voice in parsed:
        check_voice(voice)
    sentences = load_sentences(sources, seed=seed)
    if len(sentences) < len(parsed):
        raise SourceUnavailable(f"only {len(sentences)} sentences in {', '.join(sources)} for {len(parsed)} voices")
    per_voice = hours * 3600.0 / len(parsed)
    states = {v.speaker: _VoiceState(v, sentences[i::len(parsed)], per_voice) for i, v in enumerate(parsed)}

    with _exclusive(out_dir):
        _remove_stray_temp_files(out_dir)
        _synthesize_all(states, out_dir, sample_rate, workers, align, progress)

        entries = []
        for speaker, state in states.items():
            for i in state.selected():
                split = ("test-unseen-speaker" if speaker in held_out else
                         sentence_split(state.queue[i].text, seed, valid_fraction, test_fraction))
                entries.append(ManifestEntry.from_dict({**state.records[i]["entry"], "split": split}))
        manifest = out_dir / MANIFEST_NAME
        write_manifest(entries, manifest)
        summary = _summary(entries, states, sentences)
        settings = dict(hours=hours, voices=speakers, held_out=held_out, sample_rate=sample_rate, seed=seed,
                        sources=list(sources), valid_fraction=valid_fraction, test_fraction=test_fraction,
                        align=align)
        document = {"format_version": FORMAT_VERSION, "settings": settings, **summary}
        atomic_write_text(out_dir / CORPUS_NAME, json.dumps(document, indent=2) + "\n")
    return manifest


def _synthesize_all(states: dict[str, _VoiceState], out_dir: Path, sample_rate: int, workers: int, align: bool,
                    progress: bool) -> None:
    """Synthesize in waves until every voice reaches its target or runs out of sentences."""
    target = sum(s.target for s in states.values())
    bar = tqdm(total=round(target / 3600, 3), unit="h", desc="synthesizing",
               disable=not (progress and sys.stderr.isatty()),
               bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} h audio [{elapsed}<{remaining}]")

    def show() -> None:
        bar.n = round(sum(min(sum(r["entry"]["duration"] for r in s.records.values()), s.target)
                          for s in states.values()) / 3600, 3)
        bar.refresh()

    if workers > 1:
        # fork: workers start at once and need nothing from the parent but pickled arguments.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        executor: Executor = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    else:
        executor = _InlineExecutor()
    try:
        while True:
            plans = {speaker: plan for speaker, state in states.items()
                     if (plan := state.plan(out_dir, sample_rate, align))}
            show()
            if not plans:
                break
            futures = {
                executor.submit(_synthesize_chunk, states[speaker].voice, [states[speaker].queue[i] for i in chunk],
                                out_dir, sample_rate, align): (speaker, chunk)
                for speaker, chunk in _chunks(plans, workers)
            }
            for future in as_completed(futures):
                speaker, chunk = futures[future]
                for i, record in zip(chunk, future.result()):
                    if record is None:
                        states[speaker].failed.add(i)
                    else:
                        states[speaker].records[i] = record
                show()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        bar.close()
    for state in states.values():
        if state.seconds() < state.target:
            print(f"warning: {state.voice.speaker} ran out of sentences at {state.seconds() / 3600:.2f} h of "
                  f"{state.target / 3600:.2f} h; add --sources or lower --hours", file=sys.stderr)
        if state.failed:
            print(f"warning: {state.voice.speaker} failed on {len(state.failed)} sentence(s) (no audio, or "
                  f"mostly silence); they were skipped", file=sys.stderr)


def _summary(entries: list[ManifestEntry], states: dict[str, _VoiceState],
             sentences: list[Sentence]) -> dict[str, Any]:
    """What corpus.json records besides the settings: totals per speaker, split and source."""
    def tally(key: Any) -> dict[str, dict[str, float]]:
        table: dict[str, dict[str, float]] = {}
        for entry in entries:
            row = table.setdefault(key(entry), {"utterances": 0, "hours": 0.0})
            row["utterances"] += 1
            row["hours"] += entry.duration / 3600
        return {k: {"utterances": v["utterances"], "hours": round(v["hours"], 4)} for k, v in sorted(table.items())}

    available: dict[str, int] = {}
    for sentence in sentences:
        available[sentence.source] = available.get(sentence.source, 0) + 1
    return {
        "utterances": len(entries),
        "hours": round(sum(e.duration for e in entries) / 3600, 4),
        "with_phones": sum(e.phones is not None for e in entries),
        "failed": sum(len(s.failed) for s in states.values()),
        "sentences_available": dict(sorted(available.items())),
        "speakers": tally(lambda e: e.speaker),
        "splits": tally(lambda e: e.split),
        "sources": tally(lambda e: e.extra["source"]),
    }


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `soundstorm corpus synth`."""
    parser.add_argument("out_dir", type=Path,
                        help="folder to write (audio/<speaker>/*.wav, manifest.jsonl, corpus.json); "
                             "an existing one is resumed")
    parser.add_argument("--hours", type=float, default=DEFAULT_HOURS,
                        help=f"total audio, shared equally among the voices (default {DEFAULT_HOURS:g})")
    parser.add_argument("--voices", type=_csv, default=list(DEFAULT_VOICES),
                        help=f"comma-separated speaker ids <engine>-<voice> (default: {','.join(DEFAULT_VOICES)})")
    parser.add_argument("--held-out", type=_csv, default=None,
                        help="comma-separated voices kept out of training: split test-unseen-speaker "
                             f"(default: those of {','.join(DEFAULT_HELD_OUT)} among --voices; '' for none)")
    parser.add_argument("--sample-rate", type=int, default=DEFAULT_SAMPLE_RATE,
                        help=f"Hz of the written wav files (default {DEFAULT_SAMPLE_RATE})")
    parser.add_argument("--seed", type=int, default=0, help="chooses sentences and splits (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: usable cores)")
    parser.add_argument("--sources", type=_csv, default=list(SOURCES),
                        help=f"comma-separated sentence sources (default: {','.join(SOURCES)})")
    parser.add_argument("--valid-fraction", type=float, default=DEFAULT_VALID_FRACTION,
                        help=f"share of sentences in valid (default {DEFAULT_VALID_FRACTION:g})")
    parser.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION,
                        help=f"share of sentences in test (default {DEFAULT_TEST_FRACTION:g})")
    parser.add_argument("--no-align", dest="align", action="store_false",
                        help="leave espeak-ng utterances without phone timings (no pocketsphinx alignment)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def run(args: argparse.Namespace) -> int:
    """`soundstorm corpus synth`: build the corpus, print a summary; 2 on a setup error."""
    start = time.monotonic()
    try:
        manifest = synthesize_corpus(
            args.out_dir, hours=args.hours, voices=args.voices, held_out=args.held_out,
            sample_rate=args.sample_rate, seed=args.seed, workers=args.workers, sources=args.sources,
            valid_fraction=args.valid_fraction, test_fraction=args.test_fraction, align=args.align,
            progress=not args.quiet,
        )
    except (VoiceUnavailable, SourceUnavailable, CorpusBusy, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        corpus = json.loads((manifest.parent / CORPUS_NAME).read_text())
        splits = ", ".join(f"{k} {v['utterances']}" for k, v in corpus["splits"].items())
        print(f"{corpus['utterances']} utterances, {corpus['hours']:.2f} h, {len(corpus['speakers'])} speakers "
              f"({splits}); {corpus['with_phones']} with phone timings; {time.monotonic() - start:.0f} s",
              file=sys.stderr)
        print(manifest)
    return 0
