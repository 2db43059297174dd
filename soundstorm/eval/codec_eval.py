"""`soundstorm codec eval`: a codec's quality at each bitrate against Opus, on held-out speech.

Each held-out utterance of a manifest (splits test and test-unseen-speaker by default) is
encoded once with all the codec's levels; every prefix of Q levels is decoded (Q * log2(K) *
frame_rate / 1000 kbit/s) and scored against the original with wideband PESQ, STOI and log-mel
distance. The same clip goes through Opus (opus-tools) at the same bitrate, where Opus can
reach it (6 kbit/s and up). Encode and decode speed are reported as real-time factors on this
machine: seconds of computing per second of audio (below 1 is faster than real time).

With --asr, pocketsphinx also hears every clip: the original, each level's resynthesis and each
Opus coding, and the report adds their WER and CER against the manifest's transcripts. PESQ and
STOI can rank two codecs the opposite way from the words a recognizer hears in them (seen here:
docs/codec.md, stop 49); a codec for speech is chosen by the words.

    soundstorm codec eval --codec encodec:facebook/encodec_24khz --manifest corpus/manifest.jsonl \\
        --levels 2,4,8 --out results/codec-eval

writes results/codec-eval/codec_eval.md (the table, also printed) and codec_eval.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from soundstorm.atomic import atomic_write_text
from soundstorm.codecs import Codec, bitrate_kbps, load_codec
from soundstorm.codecs.soundstream.adapt import DecoderAdaptation
from soundstorm.codecs.opus import OPUS_MAX_KBPS, OPUS_MIN_KBPS, opus_available, opus_roundtrip
from soundstorm.data.audio import load_audio
from soundstorm.data.manifest import ManifestEntry, read_manifest
from soundstorm.eval.asr import ErrorRates, Recognizer, error_rates
from soundstorm.eval.codec_metrics import mel_distance, pesq_wb, stoi

DEFAULT_SPLITS = ("test", "test-unseen-speaker")
METRICS = ("pesq", "stoi", "mel_distance")


@dataclass(frozen=True)
class Scores:
    """Means over the utterances of a split; NaN where a metric failed on every one."""

    pesq: float  # wideband MOS-LQO, 1.04 .. 4.64, higher is better
    stoi: float  # 0 .. 1, higher is better
    mel_distance: float  # >= 0, lower is better
    failures: int = 0  # utterances a metric could not score (PESQ: no speech found)
    wer: float | None = None  # pocketsphinx, pooled over the split's clips (--asr); None: not asked for
    cer: float | None = None


@dataclass(frozen=True)
class LevelResult:
    levels: int  # Q, the first Q levels decoded
    kbps: float  # Q * log2(K) * frame_rate / 1000
    codec: Scores
    decode_rtf: float  # wall-clock seconds decoding per second of audio
    opus: Scores | None  # None where Opus cannot code this bitrate, or was not asked for


@dataclass(frozen=True)
class OpusReference:
    kbps: float
    opus: Scores


@dataclass(frozen=True)
class ItemScores:
    """One utterance's scores, for paired comparisons of two codecs on the same clips
    (benchmarks/paired_codec_eval.py) and breakdowns by speaker."""

    id: str
    speaker: str | None
    seconds: float
    codec: dict[str, dict[str, float]]  # str(Q) -> metric -> value (NaN: could not score)
    opus: dict[str, dict[str, float]]  # str(kbit/s) -> metric -> value, every Opus bitrate scored
    text: str | None = None  # the manifest's transcript
    heard: dict[str, str] = field(default_factory=dict)  # --asr: "original", "codec:Q", "opus:KBPS" -> the words heard


@dataclass(frozen=True)
class SplitResult:
    split: str
    num_items: int
    seconds: float  # of audio
    rows: list[LevelResult]
    opus_reference: list[OpusReference]  # Opus alone at bitrates no level of the codec has
    items: list[ItemScores] = field(default_factory=list)
    original_wer: float | None = None  # --asr: pocketsphinx on the original clips, the ceiling of every row
    original_cer: float | None = None


@dataclass(frozen=True)
class CodecEvalReport:
    codec: dict[str, Any]  # Codec.describe()
    manifest: str
    encode_rtf: float  # wall-clock seconds encoding (all levels) per second of audio, over all splits
    splits: list[SplitResult]

    def to_json(self) -> str:
        # NaN is not JSON: scores that could not be computed become null.
        return json.dumps(_nan_to_none(asdict(self)), indent=2) + "\n"

    def to_markdown(self) -> str:
        codec = self.codec
        lines = [
            f"Codec `{codec['name']}`: {codec['sample_rate']} Hz, {codec['frame_rate']:g} frames/s, "
            f"{codec['num_quantizers']} levels of {codec['codebook_size']} codes. "
            f"Encode real-time factor {self.encode_rtf:.3f} (wall-clock seconds per second of audio). "
            f"Manifest `{self.manifest}`.",
        ]
        if codec.get("adapt_decoder"):
            seconds = codec.get("adapt_seconds", 3.0)
            source = ("another utterance" if seconds <= 3.0 else "other utterances") + " of that speaker"
            lines.append(f"Each speaker's clips decoded by a copy of the decoder adapted {codec['adapt_decoder']} steps "
                         f"on {seconds:g} s of {source} (--adapt-decoder, --adapt-seconds); the tokens are the codec's own.")
        if codec.get("voice_reference"):
            seconds = codec.get("adapt_seconds", 3.0)
            lines.append(f"Each speaker's clips decoded with {seconds:g} s of its other utterances as the decoder's voice "
                         "reference (--voice-reference: their long-term spectrum, nothing trained); the tokens are the "
                         "codec's own.")
        heard = any(split.original_wer is not None for split in self.splits)
        for split in self.splits:
            lines += [
                "",
                f"**{split.split}**: {split.num_items} utterance{'s' if split.num_items != 1 else ''}, {split.seconds:.1f} s"
                + (f"; the original audio's WER {_fmt(split.original_wer, 3)}, CER {_fmt(split.original_cer, 3)}"
                   if heard else ""),
                "",
                "| levels | kbit/s | PESQ codec | PESQ Opus | STOI codec | STOI Opus | mel dist. codec | mel dist. Opus "
                + ("| WER codec | WER Opus | CER codec | CER Opus " if heard else "") + "| decode RTF |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|---:|" if heard else "") + "---:|",
            ]
            for row in split.rows:
                opus = row.opus
                words = (f"| {_fmt(row.codec.wer, 3)} | {_fmt(opus.wer if opus else None, 3)} "
                         f"| {_fmt(row.codec.cer, 3)} | {_fmt(opus.cer if opus else None, 3)} " if heard else "")
                lines.append(
                    f"| {row.levels} | {row.kbps:.2f} "
                    f"| {_fmt(row.codec.pesq, 2)} | {_fmt(opus.pesq if opus else None, 2)} "
                    f"| {_fmt(row.codec.stoi, 3)} | {_fmt(opus.stoi if opus else None, 3)} "
                    f"| {_fmt(row.codec.mel_distance, 3)} | {_fmt(opus.mel_distance if opus else None, 3)} "
                    f"{words}| {row.decode_rtf:.3f} |"
                )
            for reference in split.opus_reference:
                opus = reference.opus
                words = f"| - | {_fmt(opus.wer, 3)} | - | {_fmt(opus.cer, 3)} " if heard else ""
                lines.append(f"| Opus only | {reference.kbps:.2f} | - | {_fmt(opus.pesq, 2)} | - | {_fmt(opus.stoi, 3)} "
                             f"| - | {_fmt(opus.mel_distance, 3)} {words}| - |")
            if heard:
                lines += ["", *_words_by_speaker(split)]
        lines += [
            "",
            f"Opus: opus-tools, constrained VBR at the same bitrate; '-' below its {OPUS_MIN_KBPS:g} kbit/s minimum. "
            "PESQ: wideband (P.862.2, 16 kHz). mel dist.: L1 of log10 mel magnitudes, lower is better."
            + (" WER and CER: pocketsphinx against the manifest's transcripts, pooled over the split's clips "
               "(meaningful on flite's and festival's voices, not on espeak-ng's formant ones)." if heard else ""),
        ]
        return "\n".join(lines) + "\n"


def _words_by_speaker(split: SplitResult) -> list[str]:
    """WER by speaker (--asr): a split pools voices the recognizer hears well with formant voices
    it does not (espeak-ng), so each voice's own row says where a codec loses words."""
    keys = [key for key in split.items[0].heard if key != "original"]
    names = [f"{key.split(':')[1]} levels" if key.startswith("codec:") else f"Opus {key.split(':')[1]} kbit/s"
             for key in keys]
    lines = [f"WER by speaker ({split.split}):", "",
             "| speaker | clips | original | " + " | ".join(names) + " |",
             "|---|---:|---:|" + "---:|" * len(keys)]
    for speaker in sorted({str(item.speaker) for item in split.items}):
        items = [item for item in split.items if str(item.speaker) == speaker]
        cells = [f"{_words(items, key).wer:.3f}" for key in ("original", *keys)]
        lines.append(f"| {speaker} | {len(items)} | " + " | ".join(cells) + " |")
    return lines


def default_levels(num_quantizers: int) -> list[int]:
    """1, 2, 4, ... below Q, and Q itself."""
    levels = [2**i for i in range(int(math.log2(num_quantizers)) + 1) if 2**i < num_quantizers]
    return levels + [num_quantizers]


def evaluate_codec(
    codec: Codec,
    entries: Sequence[ManifestEntry],
    root: Path,
    levels: Sequence[int] | None = None,
    splits: Sequence[str] = DEFAULT_SPLITS,
    opus: bool = True,
    progress: bool = False,
    manifest_name: str = "",
    opus_reference_kbps: Sequence[float] | None = None,
    decoder_for: Callable[[str], Codec] | None = None,
    recognizer: Recognizer | None = None,
) -> CodecEvalReport:
    """Score `codec` (and Opus) on the entries of `splits`.

    Args:
        entries: manifest entries; those of other splits are skipped.
        root: the manifest's folder, against which entry paths resolve.
        levels: numbers of levels to decode, each in [1, Q] (default: default_levels(Q)).
        opus: also code each clip with Opus at each bitrate (needs opus-tools).
        opus_reference_kbps: Opus alone at these bitrates too; default: its 6 kbit/s minimum
            when every level of the codec is below it (a codec that beats Opus at 6 kbit/s
            with fewer bits beats it at equal bitrate).
        decoder_for: speaker -> the codec that decodes that speaker's clips (e.g. one with its
            decoder adapted to the speaker: adapted_decoders); `codec` encodes every clip.
        recognizer: hears every clip (the original, each level, each Opus coding) for WER and
            CER against the entries' transcripts, which every scored entry must then have.
    """
    levels = sorted(set(levels or default_levels(codec.num_quantizers)))
    if not all(1 <= q <= codec.num_quantizers for q in levels):
        raise ValueError(f"levels must be in [1, {codec.num_quantizers}] for {codec.name}, got {levels}")
    if opus and not opus_available():
        raise RuntimeError("opusenc/opusdec not found: install opus-tools (make system-deps), or pass --no-opus")
    by_split = {split: [e for e in entries if e.split == split] for split in splits}
    if not any(by_split.values()):
        raise ValueError(
            f"the manifest has no utterances in the splits {list(splits)}: build it with "
            "`soundstorm corpus synth` (which holds out test speakers and sentences) or choose --splits"
        )
    if recognizer is not None:
        untranscribed = [e.id for items in by_split.values() for e in items if not (e.text or "").strip()]
        if untranscribed:
            raise ValueError(f"--asr scores the words against the manifest's transcripts, and {len(untranscribed)} of "
                             f"the clips to score have none (e.g. {untranscribed[0]}): use a manifest with a "
                             "text for every held-out utterance, or leave out --asr")
    _warm_up(codec)
    if opus_reference_kbps is None:
        top = bitrate_kbps(max(levels), codec.codebook_size, codec.frame_rate)
        opus_reference_kbps = [OPUS_MIN_KBPS] if opus and top < OPUS_MIN_KBPS else []

    encode_seconds, audio_seconds = 0.0, 0.0
    results = []
    bar = tqdm(total=sum(len(v) for v in by_split.values()), disable=not progress, desc="codec eval", unit="utt")
    for split, items in by_split.items():
        if not items:
            continue
        scores: dict[tuple[str, int], list[dict[str, float]]] = {}  # (system, Q) -> per-utterance
        decode_seconds = dict.fromkeys(levels, 0.0)
        split_seconds = 0.0
        per_item: list[ItemScores] = []
        for entry in items:
            wav, _ = load_audio(entry.audio_path(root), sample_rate=codec.sample_rate, resample=True, downmix=True)
            seconds = len(wav) / codec.sample_rate
            split_seconds += seconds
            item = ItemScores(id=entry.id, speaker=entry.speaker, seconds=seconds, codec={}, opus={}, text=entry.text)

            def hear(key: str, audio: np.ndarray) -> None:
                if recognizer is not None:
                    item.heard[key] = recognizer.transcribe(audio, codec.sample_rate)

            hear("original", wav)
            batch = torch.from_numpy(wav)[None, None]  # [1, 1, N]
            with torch.inference_mode():
                start = time.perf_counter()
                codes = codec.encode_long(batch)  # [1, T, Q]
                encode_seconds += time.perf_counter() - start
                decoder = decoder_for(entry.speaker) if decoder_for is not None else codec
                for q in levels:
                    start = time.perf_counter()
                    decoded = decoder.decode_long(codes[..., :q])  # [1, 1, N']
                    decode_seconds[q] += time.perf_counter() - start
                    out = decoded[0, 0].float().cpu().numpy()
                    item.codec[str(q)] = _score(wav, out, codec.sample_rate)
                    hear(f"codec:{q}", out)
                    scores.setdefault(("codec", q), []).append(item.codec[str(q)])
                    kbps = bitrate_kbps(q, codec.codebook_size, codec.frame_rate)
                    if opus and OPUS_MIN_KBPS <= kbps <= OPUS_MAX_KBPS:
                        coded = opus_roundtrip(wav, codec.sample_rate, kbps)
                        opus_scores = item.opus[f"{kbps:g}"] = _score(wav, coded, codec.sample_rate)
                        scores.setdefault(("opus", q), []).append(opus_scores)
                        hear(f"opus:{kbps:g}", coded)
            for i, kbps in enumerate(opus_reference_kbps):
                coded = opus_roundtrip(wav, codec.sample_rate, kbps)
                opus_scores = item.opus[f"{kbps:g}"] = _score(wav, coded, codec.sample_rate)
                scores.setdefault(("opus-reference", i), []).append(opus_scores)
                hear(f"opus:{kbps:g}", coded)
            per_item.append(item)
            audio_seconds += seconds
            bar.update(1)
        heard = recognizer is not None

        def opus_at(kbps: float, key: tuple[str, int]) -> Scores:
            return _mean(scores[key], per_item, f"opus:{kbps:g}" if heard else None)

        rows = []
        for q in levels:
            kbps = bitrate_kbps(q, codec.codebook_size, codec.frame_rate)
            rows.append(LevelResult(
                levels=q,
                kbps=kbps,
                codec=_mean(scores[("codec", q)], per_item, f"codec:{q}" if heard else None),
                decode_rtf=decode_seconds[q] / split_seconds,
                opus=opus_at(kbps, ("opus", q)) if ("opus", q) in scores else None,
            ))
        references = [OpusReference(kbps, opus_at(kbps, ("opus-reference", i))) for i, kbps in enumerate(opus_reference_kbps)]
        original = _words(per_item, "original") if heard else None
        results.append(SplitResult(split=split, num_items=len(items), seconds=split_seconds, rows=rows,
                                   opus_reference=references, items=per_item,
                                   original_wer=original.wer if original else None,
                                   original_cer=original.cer if original else None))
    bar.close()
    return CodecEvalReport(
        codec=codec.describe(), manifest=manifest_name, encode_rtf=encode_seconds / audio_seconds, splits=results
    )


def _score(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Every metric; NaN for one that cannot score the pair (reported as a failure)."""
    values = {}
    for name, metric in (("pesq", pesq_wb), ("stoi", stoi), ("mel_distance", mel_distance)):
        try:
            values[name] = metric(reference, degraded, sample_rate)
        except ValueError:
            values[name] = math.nan
    return values


def _mean(per_item: list[dict[str, float]], items: Sequence[ItemScores] = (), heard: str | None = None) -> Scores:
    """The means of per-item metric values; with `heard` (a key of ItemScores.heard), the pooled
    WER and CER of what was heard under that key in `items` too."""
    table = np.array([[item[m] for m in METRICS] for item in per_item], dtype=np.float64)  # [n, 3]
    failures = int(np.isnan(table).any(axis=1).sum())
    means = [float(np.mean(column[~np.isnan(column)])) if (~np.isnan(column)).any() else math.nan for column in table.T]
    words = _words(items, heard) if heard is not None else None
    return Scores(pesq=means[0], stoi=means[1], mel_distance=means[2], failures=failures,
                  wer=words.wer if words else None, cer=words.cer if words else None)


def _words(items: Sequence[ItemScores], key: str) -> ErrorRates:
    """Pooled WER and CER of what the recognizer heard under `key` against the transcripts."""
    return error_rates([item.text or "" for item in items], [item.heard[key] for item in items])


def _warm_up(codec: Codec) -> None:
    """One untimed pass over a second of quiet noise, so that first-call costs (allocator,
    kernel selection) do not count against the first utterance's real-time factor."""
    noise = torch.randn(1, 1, codec.sample_rate, generator=torch.Generator().manual_seed(0)) * 0.01
    with torch.inference_mode():
        codec.decode(codec.encode(noise))


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def spread_over_speakers(entries: Sequence[ManifestEntry], limit: int) -> list[ManifestEntry]:
    """At most `limit` entries taken round-robin over their speakers (each speaker's in manifest
    order), so that a few clips of a split stand for all its voices. A manifest lists a
    speaker's utterances together: its first 40 held-out clips were one voice of two."""
    by_speaker: dict[str | None, list[ManifestEntry]] = {}
    for entry in entries:
        by_speaker.setdefault(entry.speaker, []).append(entry)
    chosen: list[ManifestEntry] = []
    for rank in range(max((len(v) for v in by_speaker.values()), default=0)):
        for queue in by_speaker.values():
            if rank < len(queue) and len(chosen) < limit:
                chosen.append(queue[rank])
    return chosen


def adapted_decoders(codec: Codec, entries: Sequence[ManifestEntry], evaluated: Sequence[ManifestEntry], root: Path,
                     options: DecoderAdaptation, seconds: float = 3.0, reference: bool = False) -> Callable[[str], Codec]:
    """speaker -> `codec` with its decoder adapted (soundstorm/codecs/soundstream/adapt.py) on
    `seconds` of that speaker's utterances that are not evaluated, in manifest order: 3 s of one
    utterance is what a voice prompt gives text to speech; tens of seconds enrol the voice
    (`soundstorm enroll`). With `reference`, a decoder that reads a voice reference is given
    the same audio as its reference (before any adaptation, which then learns beside it; 0 steps:
    the reference alone, nothing trained). Made on first use, then kept."""
    from soundstorm.codecs.soundstream.codec import SoundStreamCodec

    if options.steps and not isinstance(codec, SoundStreamCodec):
        raise ValueError(f"decoder adaptation needs our SoundStream codec, not {codec.name}")
    if reference and not codec.reads_reference:
        raise ValueError(f"{codec.name}'s decoder reads no voice reference (a SoundStream with reference_mels > 0 does)")
    skip = {e.id for e in evaluated}
    cache: dict[str, Codec] = {}

    def decoder_for(speaker: str) -> Codec:
        if speaker not in cache:
            clips = speaker_audio(entries, speaker, skip, seconds, root, codec.sample_rate)
            base = codec.with_reference(torch.cat(clips, dim=-1)) if reference else codec
            cache[speaker] = base.adapted_to(clips, options) if options.steps else base  # type: ignore[attr-defined]
        return cache[speaker]

    return decoder_for


def _parse_levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated level counts like 1,2,4,8, got {text!r}") from error
    if not levels:
        raise argparse.ArgumentTypeError("expected at least one level count")
    return levels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--codec", required=True, help="codec spec, e.g. encodec:facebook/encodec_24khz or soundstream:PATH")
    parser.add_argument("--manifest", required=True, type=Path, help="JSONL manifest with splits (from `corpus synth`)")
    parser.add_argument(
        "--splits", default=",".join(DEFAULT_SPLITS),
        help=f"comma-separated held-out splits to score (default {','.join(DEFAULT_SPLITS)})",
    )
    parser.add_argument("--levels", type=_parse_levels, help="numbers of levels to decode, e.g. 1,2,4,8 (default: powers of two and all)")
    parser.add_argument("--max-items", type=int, default=100, help="utterances per split, taken in turn from each of its speakers (default 100)")
    parser.add_argument("--no-opus", action="store_true", help="skip the Opus baseline")
    parser.add_argument("--opus-kbps", type=float, nargs="*", help="Opus alone at these bitrates too (default: 6 when "
                        "every codec level is below Opus' range)")
    parser.add_argument("--adapt-decoder", type=int, default=0, metavar="STEPS",
                        help="decode each speaker's clips with a copy of the decoder fine-tuned STEPS steps on 3 s of "
                             "another utterance of that speaker (--adapt-seconds), as text to speech's --adapt-decoder does with a voice "
                             "prompt (our SoundStream only; default 0: off)")
    parser.add_argument("--adapt-seconds", type=float, default=3.0,
                        help="seconds of each speaker's other utterances to adapt on (default 3: a voice prompt; "
                             "30-60 s enrol the voice, with 100-200 steps)")
    parser.add_argument("--voice-reference", action="store_true",
                        help="a decoder that reads a voice reference (SoundStream reference_mels) decodes each speaker's "
                             "clips with --adapt-seconds of another of its utterances as the reference (no training)")
    parser.add_argument("--asr", action="store_true",
                        help="also hear every clip with pocketsphinx (the original, each level, each Opus coding): WER "
                             "and CER against the manifest's transcripts, per clip in the JSON for paired comparisons")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, help="folder for codec_eval.md and codec_eval.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    codec = load_codec(args.codec)
    entries = read_manifest(args.manifest)
    if args.max_items < 1:
        raise ValueError(f"--max-items must be at least 1, got {args.max_items}")
    chosen = [entry for split in splits for entry in spread_over_speakers(
        [e for e in entries if e.split == split], args.max_items)]
    adaptation = DecoderAdaptation(steps=args.adapt_decoder)
    decoder_for = (adapted_decoders(codec, entries, chosen, args.manifest.parent, adaptation, args.adapt_seconds,
                                    reference=args.voice_reference)
                   if args.adapt_decoder or args.voice_reference else None)
    report = evaluate_codec(
        codec, chosen, args.manifest.parent, levels=args.levels, splits=splits, opus=not args.no_opus,
        progress=not args.quiet and sys.stderr.isatty(), manifest_name=str(args.manifest),
        opus_reference_kbps=args.opus_kbps, decoder_for=decoder_for, recognizer=Recognizer() if args.asr else None,
    )
    if args.adapt_decoder or args.voice_reference:
        report.codec["adapt_decoder"] = args.adapt_decoder
        report.codec["adapt_seconds"] = args.adapt_seconds
        report.codec["voice_reference"] = args.voice_reference
    table = report.to_markdown()
    print(table, end="")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / "codec_eval.md", table)
        atomic_write_text(args.out / "codec_eval.json", report.to_json())
        print(f"wrote {args.out / 'codec_eval.md'} and {args.out / 'codec_eval.json'}")
    return 0


def speaker_audio(entries: Sequence[ManifestEntry], speaker: str, skip: set[str], seconds: float, root: Path,
                  sample_rate: int) -> list[torch.Tensor]:
    """`seconds` of `speaker`'s utterances whose ids are not in `skip`, as clips [1, 1, N]: the
    first that lasts that long, as a voice prompt is, else several in manifest order."""
    if not seconds > 0:
        raise ValueError(f"adaptation needs seconds > 0 of each voice, got {seconds}")
    pool = [e for e in entries if e.id not in skip and e.speaker == speaker]
    whole = [e for e in pool if e.duration >= seconds]
    clips, total = [], 0.0
    for entry in whole[:1] or pool:
        wav, _ = load_audio(entry.audio_path(root), sample_rate=sample_rate, resample=True, downmix=True)
        wav = wav[: round((seconds - total) * sample_rate)]
        clips.append(torch.from_numpy(wav)[None, None])
        total += len(wav) / sample_rate
        if total >= seconds - 1e-6:
            return clips
    raise ValueError(f"the utterances of {speaker} outside the evaluated ones last {total:.1f} s, not "
                     f"{seconds:g} s: not enough to adapt the decoder on")
