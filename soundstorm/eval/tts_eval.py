"""`soundstorm eval`: the paper's Table 1 on a test manifest: intelligibility and voice.

    soundstorm eval --manifest data/synth/manifest.jsonl --soundstorm runs/small/model --ar runs/ar-small/model \
        --codec soundstream:models/demo/codec --semantic content:models/demo/semantic --out docs/eval

For each utterance of the test splits (held-out sentences, and held-out voices): the first
--prompt-seconds (3 s, the paper's) of its codec tokens are the voice prompt, the rest is
generated from the ground-truth semantic tokens of the whole utterance, and decoded. Measured,
next to the original audio and its codec resynthesis (the ceiling a generator can reach):

- WER and CER (pocketsphinx, jiwer) of the whole output against the transcript;
- speaker similarity (resemblyzer) between the prompt's audio and the generated continuation;
- acoustic consistency: the mean similarity between the prompt and each later 3 s crop;
- the same without a prompt ("unprompted": only WER, there is no voice to keep);

by voice family (flite, festival, espeak: pocketsphinx is meaningful on the first two only)
and by duration bucket (short < 5 s, mid 5-8 s, long > 8 s). Writes eval.md and eval.json,
with the command, to --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from soundstorm.atomic import atomic_write_text
from soundstorm.data.audio import load_audio
from soundstorm.data.manifest import ManifestEntry, read_manifest
from soundstorm.model.adapt import SoundStormAdaptation
from soundstorm.semantic.rate import match_rate
from soundstorm.text.enroll import BLEND, add_soundstorm_adaptation_arguments, soundstorm_adaptation
from soundstorm.text.pipeline import check_soft_temperature

BUCKETS = (("short", 0.0, 5.0), ("mid", 5.0, 8.0), ("long", 8.0, float("inf")))
CROP_SECONDS = 3.0


def bucket(duration: float) -> str:
    return next(name for name, low, high in BUCKETS if low <= duration < high)


def family(speaker: str) -> str:
    """`flite-slt` -> `flite`; a speaker without an engine prefix is its own family."""
    return speaker.split("-", 1)[0] if "-" in speaker else "other"


@dataclass
class Utterance:
    id: str
    speaker: str
    split: str | None
    duration: float
    text: str
    hypotheses: dict[str, str] = field(default_factory=dict)  # system -> ASR transcript
    similarity: dict[str, float] = field(default_factory=dict)  # system -> prompt vs continuation
    consistency: dict[str, float] = field(default_factory=dict)  # system -> prompt vs later crops


class Generator:
    """One system under test: SoundStorm or the AR baseline, prompted or not."""

    def __init__(self, name: str, model: Any, prompted: bool, steps: list[int] | None, temperature: float,
                 soft_temperature: float = 0.0) -> None:
        self.name, self.model, self.prompted, self.steps, self.temperature = name, model, prompted, steps, temperature
        # SoundStorm only: levels 2.. handed to the codec as expected codebook vectors (Codec.decode_expected).
        self.soft_temperature = soft_temperature

    def __call__(self, codes: torch.Tensor, semantic: torch.Tensor, prompt_frames: int, seed: int,
                 model: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Codes [T, L] and, for a soft SoundStorm, the probabilities [T, L - 1, K] of levels 2..L
        (else None). model: another of the same kind to generate with (one adapted to the voice);
        default self.model."""
        model = model if model is not None else self.model
        generator = torch.Generator().manual_seed(seed)
        prompt = codes[None, :prompt_frames] if self.prompted else None
        T = codes.shape[0]
        from soundstorm import SoundStorm

        with torch.inference_mode():
            if isinstance(model, SoundStorm):
                soft = self.soft_temperature > 0 and (self.steps is None or len(self.steps) > 1)
                out = model.generate(semantic[None], num_frames=T, prompt_codes=prompt, steps=self.steps,
                                     temperature=self.temperature, generator=generator,
                                     return_logits_from=1 if soft else None)
                if soft:
                    return out[0][0], (out[1][0] / self.soft_temperature).softmax(dim=-1)
                return out[0], None
            return model.generate(semantic[None], num_frames=T, prompt_codes=prompt, temperature=self.temperature,
                                  generator=generator).codes[0], None


def _tokens(codec: Any, tokenizer: Any, wav: torch.Tensor, semantic_wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codec tokens [T, Q] of wav [1, 1, N] and the semantic tokens [ceil(T / r)] that condition
    them, from the same audio at the tokenizer's rate (semantic_wav)."""
    with torch.inference_mode():
        codes = codec.encode(wav)[0]  # [T, Q]
        tokens, lengths = tokenizer.tokenize(semantic_wav)
    semantic = match_rate(tokens[0, : int(lengths[0])].numpy(), tokenizer.rate, codec.frame_rate, codes.shape[0])
    return codes, torch.from_numpy(semantic).long()


def _crops(wav: np.ndarray, sample_rate: int) -> list[np.ndarray]:
    n = round(CROP_SECONDS * sample_rate)
    return [wav[i : i + n] for i in range(0, len(wav) - n + 1, n)]


def evaluate(entries: list[ManifestEntry], root: Path, codec: Any, tokenizer: Any, generators: list[Generator],
             prompt_seconds: float, progress: bool = False,
             decoder_for: Callable[[str], Any] | None = None,
             soundstorm_for: Callable[[str], Any] | None = None) -> list[Utterance]:
    """decoder_for: speaker -> the codec that decodes that speaker's tokens (e.g. one enrolled on
    the voice: codec_eval.adapted_decoders); `codec` encodes every utterance. soundstorm_for:
    speaker -> the SoundStorm that the SoundStorm generators use for that speaker (enrolled)."""
    from soundstorm import SoundStorm

    from soundstorm.eval.asr import Recognizer
    from soundstorm.eval.speaker import SpeakerSimilarity

    asr, similarity = Recognizer(), SpeakerSimilarity()
    ratio = generators[0].model.config.semantic_rate_ratio if generators else 1
    sr = codec.sample_rate
    results = []
    for index, entry in enumerate(tqdm(entries, disable=not progress, unit="utt")):
        wav, _ = load_audio(entry.audio_path(root), sample_rate=sr, resample=True, downmix=True)
        tensor = torch.from_numpy(wav)[None, None]
        semantic_wav = tensor if tokenizer.sample_rate == sr else torch.from_numpy(
            load_audio(entry.audio_path(root), sample_rate=tokenizer.sample_rate, resample=True, downmix=True)[0])[None, None]
        codes, semantic = _tokens(codec, tokenizer, tensor, semantic_wav)
        P = int(prompt_seconds * codec.frame_rate) // ratio * ratio
        prompt_samples = P * codec.samples_per_frame
        utterance = Utterance(entry.id, entry.speaker, entry.split, entry.duration, entry.text or "")
        outputs = {"original": wav}
        decoder = decoder_for(entry.speaker) if decoder_for is not None else codec
        if decoder.reads_reference and prompt_samples:
            decoder = decoder.with_reference(tensor[..., :prompt_samples])  # the voice's envelope, from its prompt
        with torch.inference_mode():
            outputs["codec resynthesis"] = decoder.decode(codes[None])[0, 0].numpy()
        for system in generators:
            own = (soundstorm_for(entry.speaker) if soundstorm_for is not None and isinstance(system.model, SoundStorm)
                   else None)
            generated, probs = system(codes, semantic, P, seed=index, model=own)
            with torch.inference_mode():
                # A decoder that reads semantic tokens gets the ones the codes were generated from.
                wav_out = decoder.decode_generated(generated[None].cpu(), None if probs is None else probs[None].cpu(),
                                                   semantic[None])
            outputs[system.name] = wav_out[0, 0].numpy()
        prompt_audio = wav[:prompt_samples]
        for name, audio in outputs.items():
            utterance.hypotheses[name] = asr.transcribe(audio, sr)
            prompted = name in ("original", "codec resynthesis") or any(g.prompted for g in generators if g.name == name)
            continuation = audio[prompt_samples:]
            if prompted and len(continuation) >= sr // 2:
                utterance.similarity[name] = similarity(prompt_audio, continuation, sr)
                crops = _crops(continuation, sr)
                if crops:
                    utterance.consistency[name] = float(np.mean([similarity(prompt_audio, c, sr) for c in crops]))
        results.append(utterance)
    return results


def summarize(utterances: list[Utterance]) -> list[dict[str, Any]]:
    """Rows (system, family, bucket) with WER, CER, mean similarity and consistency, and the
    'all' aggregates of each system."""
    from soundstorm.eval.asr import error_rates

    systems = list(dict.fromkeys(name for u in utterances for name in u.hypotheses))
    groups: dict[tuple[str, str], list[Utterance]] = defaultdict(list)
    for u in utterances:
        for key in (("all", "all"), (family(u.speaker), "all"), ("all", bucket(u.duration))):
            groups[key].append(u)
    rows = []
    for system in systems:
        for (fam, buck), members in sorted(groups.items(), key=lambda kv: (kv[0][0] != "all", kv[0])):
            rates = error_rates([u.text for u in members], [u.hypotheses[system] for u in members])
            sims = [u.similarity[system] for u in members if system in u.similarity]
            cons = [u.consistency[system] for u in members if system in u.consistency]
            rows.append({"system": system, "family": fam, "bucket": buck, "utterances": len(members),
                         "wer": rates.wer, "cer": rates.cer,
                         "speaker_similarity": float(np.mean(sims)) if sims else None,
                         "consistency": float(np.mean(cons)) if cons else None})
    return rows


def to_markdown(rows: list[dict[str, Any]], command: str, prompt_seconds: float) -> str:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = ["# Evaluation: intelligibility and voice", "", f"    {command}", "",
             f"Voice prompt: the first {prompt_seconds:g} s of each utterance's codec tokens; the rest generated "
             "from its ground-truth semantic tokens. WER/CER: pocketsphinx against the transcript (meaningful "
             "on flite and festival voices, not on espeak-ng's). Speaker similarity: resemblyzer, prompt vs "
             "continuation; consistency: prompt vs each later 3 s crop.", "",
             "| system | voices | duration | n | WER | CER | speaker similarity | consistency |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['system']} | {r['family']} | {r['bucket']} | {r['utterances']} | {r['wer']:.3f} | "
                     f"{r['cer']:.3f} | {number(r['speaker_similarity'])} | {number(r['consistency'])} |")
    return "\n".join(lines) + "\n"


def _adapted_soundstorms(model: Any, codec: Any, tokenizer: Any, entries: list[ManifestEntry],
                         evaluated: list[ManifestEntry], root: Path, seconds: float,
                         options: SoundStormAdaptation) -> Callable[[str], Any]:
    """speaker -> `model` fine-tuned (soundstorm/model/adapt.py) on `seconds` of that speaker's
    utterances that are not evaluated, as `soundstorm enroll` does; made on first use."""
    from soundstorm.data.audio import resample_audio
    from soundstorm.eval.codec_eval import speaker_audio
    from soundstorm.model.adapt import adapt_soundstorm

    skip, cache = {e.id for e in evaluated}, {}

    def examples(clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        audio = clip if tokenizer.sample_rate == codec.sample_rate else torch.from_numpy(
            resample_audio(clip[0, 0].numpy(), codec.sample_rate, tokenizer.sample_rate))[None, None]
        return _tokens(codec, tokenizer, clip, audio)

    def soundstorm_for(speaker: str) -> Any:
        if speaker not in cache:
            clips = speaker_audio(entries, speaker, skip, seconds, root, codec.sample_rate)
            with torch.inference_mode(False), torch.enable_grad():
                cache[speaker] = adapt_soundstorm(model, [examples(clip) for clip in clips], options)
        return cache[speaker]

    return soundstorm_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, required=True, help="manifest with transcripts and splits")
    parser.add_argument("--soundstorm", type=Path, help="a SoundStorm checkpoint folder")
    parser.add_argument("--ar", type=Path, help="an AR baseline checkpoint folder")
    parser.add_argument("--codec", required=True, help="codec spec, e.g. soundstream:models/demo/codec")
    parser.add_argument("--semantic", required=True, help="semantic tokenizer spec, e.g. content:models/demo/semantic")
    parser.add_argument("--splits", nargs="+", default=["test", "test-unseen-speaker"])
    parser.add_argument("--max-utterances", type=int, default=60, help="a seeded sample of at most this many (default 60)")
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--min-seconds", type=float, default=4.0, help="skip utterances shorter than this (default 4)")
    parser.add_argument("--steps", type=int, nargs="+", help="SoundStorm iterations per level (default 16, 1, ...)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--soft-temperature", type=float, default=0.0,
                        help="SoundStorm only: decode levels 2.. as the expected codebook vector of its distribution "
                             "at this temperature (Codec.decode_expected); default 0: the tokens, as the paper")
    parser.add_argument("--no-unprompted", action="store_true", help="skip the unprompted generations")
    parser.add_argument("--enroll-seconds", type=float, default=0.0,
                        help="decode each speaker's audio (resynthesis and generated) with a decoder enrolled "
                             "(`soundstorm enroll`) on this many seconds of its utterances that are not evaluated "
                             "(our SoundStream only; default 0: off), and SoundStorm's tokens by a SoundStorm "
                             "enrolled on the same audio (not the AR baseline's)")
    add_soundstorm_adaptation_arguments(parser, "enroll-soundstorm")  # as `soundstorm enroll`; steps 0: the decoder only
    parser.add_argument("--enroll-decoder-blend", type=float, default=BLEND,
                        help="with --enroll-seconds, the share of the decoder's fine-tune kept (as `soundstorm enroll "
                             f"--blend`; default {BLEND:g})")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write eval.md and eval.json into this folder")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from soundstorm.codecs import check_codec_matches, load_codec
    from soundstorm.semantic import load_semantic_tokenizer
    from soundstorm.semantic.rate import check_semantic_matches

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.soundstorm and not args.ar:
        raise SystemExit("give --soundstorm and/or --ar checkpoints to evaluate")
    codec, tokenizer = load_codec(args.codec), load_semantic_tokenizer(args.semantic)
    check_soft_temperature(args.soft_temperature, codec, "--soft-temperature")
    generators: list[Generator] = []
    for label, path in (("SoundStorm", args.soundstorm), ("AR baseline", args.ar)):
        if path is None:
            continue
        if label == "SoundStorm":
            from soundstorm import SoundStorm

            model = SoundStorm.from_pretrained(path).eval()
        else:
            from soundstorm.baselines import ARAcousticModel

            model = ARAcousticModel.from_pretrained(path).eval()
        check_codec_matches(codec, model.config)
        check_semantic_matches(tokenizer.vocab_size, tokenizer.rate, codec.frame_rate, model.config)
        soft = args.soft_temperature if label == "SoundStorm" else 0.0
        generators.append(Generator(label, model, True, args.steps, args.temperature, soft))
        if not args.no_unprompted:
            generators.append(Generator(f"{label} unprompted", model, False, args.steps, args.temperature, soft))
    entries = [e for e in read_manifest(args.manifest)
               if e.split in args.splits and e.text and e.duration >= max(args.min_seconds, args.prompt_seconds + 0.5)]
    if not entries:
        raise SystemExit(f"{args.manifest}: no utterances of splits {args.splits} with transcripts and at least "
                         f"{args.min_seconds:g} s")
    order = np.random.default_rng(0).permutation(len(entries))[: args.max_utterances]
    entries = [entries[i] for i in sorted(order)]
    decoder_for = soundstorm_for = None
    enrolment = soundstorm_adaptation(args, "enroll-soundstorm")
    if args.enroll_seconds:
        from soundstorm.codecs.soundstream.adapt import DecoderAdaptation
        from soundstorm.eval.codec_eval import adapted_decoders
        from soundstorm.text.enroll import default_steps

        everything = read_manifest(args.manifest)
        options = DecoderAdaptation(steps=default_steps(args.enroll_seconds), blend=args.enroll_decoder_blend)
        decoder_for = adapted_decoders(codec, everything, entries, args.manifest.parent, options, args.enroll_seconds)
        soundstorm = next((g.model for g in generators if g.name == "SoundStorm"), None)
        if soundstorm is not None and enrolment.steps:
            enrolment = replace(enrolment, train_levels=len(args.steps) if args.steps else None)
            soundstorm_for = _adapted_soundstorms(soundstorm, codec, tokenizer, everything, entries, args.manifest.parent,
                                                  args.enroll_seconds, enrolment)
    utterances = evaluate(entries, args.manifest.parent, codec, tokenizer, generators, args.prompt_seconds,
                          progress=not args.quiet and sys.stderr.isatty(), decoder_for=decoder_for,
                          soundstorm_for=soundstorm_for)
    rows = summarize(utterances)
    command = "soundstorm eval " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["eval"] else sys.argv[1:])
    markdown = to_markdown(rows, command, args.prompt_seconds)
    print(markdown)
    if args.out:
        atomic_write_text(args.out / "eval.md", markdown)
        atomic_write_text(args.out / "eval.json", json.dumps(
            {"command": command, "soft_temperature": args.soft_temperature, "enroll_seconds": args.enroll_seconds,
             "enroll_soundstorm": asdict(enrolment) if args.enroll_seconds else None,
             "enroll_decoder_blend": args.enroll_decoder_blend if args.enroll_seconds else None,
             "rows": rows, "utterances": [u.__dict__ for u in utterances]}, indent=2) + "\n")
    return 0
