"""`soundstorm eval-tts`: text to speech from a models folder, measured against its goals.

    soundstorm eval-tts --models models/demo --manifest data/synth/manifest.jsonl --out docs/tts-eval

For held-out sentences of the flite and festival voices (pocketsphinx is meaningful on those),
split `test` (voices seen in training) and `test-unseen-speaker` (voices never seen): the voice
prompt is the first 3 s of another utterance of the same speaker, and the models folder's
pipeline (text-to-semantic, SoundStorm, codec) speaks the sentence in that voice. Measured:

- WER and CER (pocketsphinx) of the output, next to those of the synthesizer's own audio of
  the same sentences; the goal is a ratio of at most 1.3;
- speaker similarity (resemblyzer) of the output to the prompt, next to that of the
  synthesizer's audio to the same prompt (the ceiling); goals 0.80 for training voices, 0.70
  for held-out ones;
- the time for a dialogue of about --dialogue-seconds (30 s) between two voices, on this
  machine: the real-time factor, goal at most 0.2; and its words, pocketsphinx over the whole
  dialogue against its script, beside the synthesizers' own recordings of the same sentences;
- where the semantic tokens are a phone classifier's (the bundled models'), phone error rates
  against the text's phones (soundstorm/text/phone_score.py): of the synthesizer's audio's
  tokens, of the tokens we spoke, and of the tokens the tokenizer hears in our audio. No
  recognizer noise: they say which stage lost the words (docs/intelligibility.md).

`--semantic-from audio` takes the text-to-semantic model out: SoundStorm speaks the semantic
tokens of the synthesizer's own audio of each sentence (what a perfect text-to-semantic model
would give), with the same prompts and seeds, so that a paired comparison with a run from text
says what the text-to-semantic stage costs.

Writes tts_eval.md and tts_eval.json, with the command, to --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from soundstorm.atomic import atomic_write_text
from soundstorm.data.audio import load_audio
from soundstorm.data.manifest import ManifestEntry, read_manifest
from soundstorm.eval.codec_eval import speaker_audio
from soundstorm.eval.speaker import MIN_SECONDS
from soundstorm.eval.tts_eval import family
from soundstorm.precision import add_precision_argument
from soundstorm.text.commands import (add_adaptation_argument, add_decoding_arguments, add_turn_context_argument,
                                      decoding_options, models_folder)
from soundstorm.text.enroll import (BLEND, add_soundstorm_adaptation_arguments, adapt_to_voice, default_steps,
                                    soundstorm_adaptation)
from soundstorm.text.pipeline import TURN_PAUSE_SECONDS, DecodingOptions, Plan, SpeechPipeline

GROUPS = {"test": "training voices", "test-unseen-speaker": "held-out voices"}
GROUP_NAMES = {"training": "training voices", "held-out": "held-out voices"}  # --groups
PROMPT_CHOICES = ("first", "random")  # --prompt-choice
GOALS = {"wer_ratio": 1.3, "similarity": {"training voices": 0.80, "held-out voices": 0.70}, "rtf": 0.2}


@dataclass
class Spoken:
    id: str
    speaker: str
    group: str
    text: str
    prompt_id: str
    reference_hypothesis: str  # ASR of the synthesizer's audio
    generated_hypothesis: str  # ASR of ours
    reference_similarity: float  # synthesizer's audio vs the prompt
    generated_similarity: float  # ours vs the prompt
    seconds: float  # generation wall time
    audio_seconds: float
    # Phone errors against the text (soundstorm/text/phone_score.py) of the semantic tokens of the
    # synthesizer's audio, of the tokens ours was generated from, and of the tokens the semantic
    # tokenizer hears in our audio; and the text's phones. None without phone classes.
    reference_phone_errors: int | None = None
    phone_errors: int | None = None
    audio_phone_errors: int | None = None
    phones: int | None = None
    prompt_seconds: float = 0.0  # the voice prompt SoundStorm was given, in codec frames' time


def choose(entries: list[ManifestEntry], families: tuple[str, ...], per_group: int,
           prompt_seconds: float, prompt_choice: str = "first") -> list[tuple[ManifestEntry, ManifestEntry]]:
    """(sentence, prompt) pairs: a seeded sample of per_group sentences per group, each with an
    other utterance of its speaker that lasts at least prompt_seconds: the first (prompt_choice
    "first": one prompt for all of a speaker's sentences, as eval-tts has always measured) or one
    drawn for each sentence ("random", seeded apart: the same sentences, so runs of either pair up)."""
    if prompt_choice not in PROMPT_CHOICES:
        raise ValueError(f"prompt_choice must be one of {', '.join(PROMPT_CHOICES)}, got {prompt_choice!r}")
    prompts: dict[str, list[ManifestEntry]] = {}
    for entry in entries:
        if entry.duration >= prompt_seconds:
            prompts.setdefault(entry.speaker, []).append(entry)
    pairs = []
    rng, prompt_rng = np.random.default_rng(0), np.random.default_rng(1)
    for split in GROUPS:
        candidates = [e for e in entries if e.split == split and e.text and family(e.speaker) in families
                      and any(p.id != e.id for p in prompts.get(e.speaker, []))]
        for i in sorted(rng.permutation(len(candidates))[:per_group]):
            entry = candidates[i]
            others = [p for p in prompts[entry.speaker] if p.id != entry.id]
            pairs.append((entry, others[int(prompt_rng.integers(len(others)))] if prompt_choice == "random" else others[0]))
    return pairs


def phone_error_rates(members: list[Spoken]) -> dict[str, float | None]:
    """Phone error rates over a group (None without phone classes): of the synthesizer's audio's
    tokens, of the tokens we spoke, and of the tokens heard in our audio."""
    scored = [s for s in members if s.phones is not None]
    phones = sum(s.phones or 0 for s in scored)
    names = {"reference_phone_error_rate": "reference_phone_errors", "phone_error_rate": "phone_errors",
             "audio_phone_error_rate": "audio_phone_errors"}
    return {name: sum(getattr(s, field) or 0 for s in scored) / phones if phones else None
            for name, field in names.items()}


def dialogue_entries(entries: list[ManifestEntry], seconds: float, families: tuple[str, ...]) -> list[ManifestEntry]:
    """The dialogue's turns, in order: held-out sentences of the families' voices (whose
    recordings pocketsphinx hears: the reference for the dialogue's words) until their
    synthesizer audio reaches `seconds`."""
    texts = [e for e in entries if e.split == "test" and e.text and family(e.speaker) in families]
    chosen, total = [], 0.0
    for entry in texts:
        if total >= seconds:
            break
        chosen.append(entry)
        total += entry.duration
    return chosen


def run(args: argparse.Namespace) -> int:
    from soundstorm.eval.asr import Recognizer, error_rates
    from soundstorm.eval.speaker import SpeakerSimilarity

    if args.threads:
        torch.set_num_threads(args.threads)
    pipeline = SpeechPipeline.from_folder(models_folder(args.models), precision=args.precision)
    options = decoding_options(args)
    if pipeline.t2s is None and args.semantic_from == "text":
        raise SystemExit("the models folder has no text-to-semantic model (t2s/): give --semantic-from audio to "
                         "measure SoundStorm and the codec alone")
    entries = read_manifest(args.manifest)
    root = args.manifest.parent
    pairs = choose(entries, tuple(args.families), args.per_group, args.prompt_seconds, args.prompt_choice)
    if not pairs:
        raise SystemExit(f"{args.manifest}: no held-out sentences of {', '.join(args.families)} voices with a prompt")
    # A sentence's seed is its index among all the pairs, so a run of one group draws what the
    # same sentence draws in a run of both: the two pair up sentence by sentence.
    wanted = {GROUP_NAMES[g] for g in args.groups}
    indexed = [(index, pair) for index, pair in enumerate(pairs) if GROUPS[pair[0].split or ""] in wanted]
    enrolment = soundstorm_adaptation(args, "enroll-soundstorm")
    asr, similarity = Recognizer(), SpeakerSimilarity()
    sr = pipeline.sample_rate
    if args.enroll_seconds and args.adapt_decoder:
        raise SystemExit("--enroll-seconds and --adapt-decoder both adapt the decoder: give one")
    enrolled: dict[str, Any] = {}  # speaker -> its Enrolment (soundstorm/text/enroll.py), made on first use
    evaluated = {e.id for e, _ in pairs}
    spoken: list[Spoken] = []
    for index, (entry, prompt_entry) in tqdm(indexed, disable=args.quiet or not sys.stderr.isatty(), unit="utt"):
        reference, _ = load_audio(entry.audio_path(root), sample_rate=sr, resample=True, downmix=True)
        prompt, _ = load_audio(prompt_entry.audio_path(root), sample_rate=sr, resample=True, downmix=True)
        prompt = prompt[: round(args.prompt_seconds * sr)]
        # max_seconds: the pipeline's voices keep 3 s by default; a longer --prompt-seconds must not be cut to it.
        voice = pipeline.voice(prompt, name=prompt_entry.speaker, sample_rate=sr, adapt_steps=args.adapt_decoder,
                               max_seconds=args.prompt_seconds)
        if args.enroll_seconds:
            if entry.speaker not in enrolled:
                # As `soundstorm enroll` does, on the speaker's utterances that are not evaluated.
                clips = speaker_audio(entries, entry.speaker, evaluated, args.enroll_seconds, root, sr)
                enrolled[entry.speaker] = adapt_to_voice(pipeline, clips, default_steps(args.enroll_seconds), enrolment,
                                                         args.enroll_decoder_blend)
            voice.codec, voice.soundstorm = enrolled[entry.speaker].codec, enrolled[entry.speaker].soundstorm
        # Each sentence its own seed (--seed shifts them all), so a sweep of one knob keeps the draws.
        sentence_options = replace(options, seed=options.seed * len(pairs) + index)
        plans: list[Plan] = []
        real: Plan | None = None  # the synthesizer's tokens: spoken with --semantic-from audio, else scored

        def speak() -> np.ndarray:
            plans.append(real if real is not None and args.semantic_from == "audio" else
                         pipeline.plan_tts(entry.text or "", voice, sentence_options))
            return pipeline.render(plans)[0]

        try:
            if args.semantic_from == "audio" or pipeline.phone_scorer is not None:
                real = pipeline.plan_resynth(reference, voice, sentence_options, sample_rate=sr)
            wav = pipeline.timed(speak)
        except ValueError as error:  # a sentence the phonemizer cannot say: report, do not count
            print(f"skipped {entry.id}: {error}", file=sys.stderr)
            continue
        # Audio too short to measure (a model that stopped at once) is scored as what it is: no
        # voice (similarity 0) and no phones heard; it counts, it is not skipped.
        measurable = len(wav) >= int(MIN_SECONDS * sr)  # the semantic tokenizer takes less
        said = Spoken(
            entry.id, entry.speaker, GROUPS[entry.split or ""], entry.text or "", prompt_entry.id,
            asr.transcribe(reference, sr), asr.transcribe(wav, sr), similarity(prompt, reference, sr),
            similarity(prompt, wav, sr) if measurable else 0.0, pipeline.timing.seconds, pipeline.timing.audio_seconds,
            prompt_seconds=len(voice.codes) / pipeline.codec.frame_rate,
        )
        if pipeline.phone_scorer is not None and real is not None:
            heard = (pipeline.plan_resynth(wav, voice, sentence_options, sample_rate=sr)  # the tokens of our audio
                     if measurable else Plan([], [], sentence_options))
            tokens = [torch.cat([segment.semantic for segment in plan.segments] or [torch.zeros(0, dtype=torch.long)])
                      for plan in (real, plans[0], heard)]
            (said.reference_phone_errors, said.phones), (said.phone_errors, _), (said.audio_phone_errors, _) = (
                pipeline.phone_scorer.phone_errors(t, entry.text or "") for t in tokens)
        spoken.append(said)

    rows: list[dict[str, Any]] = []
    for group in GROUPS.values():
        members = [s for s in spoken if s.group == group]
        if not members:
            continue
        ours = error_rates([s.text for s in members], [s.generated_hypothesis for s in members])
        theirs = error_rates([s.text for s in members], [s.reference_hypothesis for s in members])
        rows.append({
            "group": group, "utterances": len(members), "speakers": sorted({s.speaker for s in members}),
            "reference_wer": theirs.wer, "wer": ours.wer, "wer_ratio": ours.wer / max(theirs.wer, 1e-9),
            "reference_cer": theirs.cer, "cer": ours.cer,
            "reference_similarity": float(np.mean([s.reference_similarity for s in members])),
            "similarity": float(np.mean([s.generated_similarity for s in members])),
            "similarity_goal": GOALS["similarity"][group],
            "rtf": sum(s.seconds for s in members) / sum(s.audio_seconds for s in members),
            **phone_error_rates(members),
        })

    # The dialogue: two training voices, turns of held-out sentences.
    voices = [pipeline.voice(load_audio(p.audio_path(root), sample_rate=sr, resample=True, downmix=True)[0], name=p.speaker,
                             sample_rate=sr)
              for p in {pair[1].speaker: pair[1] for pair in pairs if pair[0].split == "test"}.values()][:2]
    dialogue: dict[str, Any] | None = None
    if len(voices) == 2 and pipeline.t2s is not None and args.dialogue_seconds > 0:
        chosen = dialogue_entries(entries, args.dialogue_seconds, tuple(args.families))
        turns = [("AB"[i % 2], entry.text or "") for i, entry in enumerate(chosen)]  # alternating speakers
        pipeline.dialogue(turns[:1], {"A": voices[0]}, options)  # warm-up: first-call allocations are not the speed
        start = time.perf_counter()
        wav = pipeline.dialogue(turns, {"A": voices[0], "B": voices[1]}, options)
        seconds = time.perf_counter() - start
        dialogue = {"turns": len(turns), "voices": [v.name for v in voices], "audio_seconds": len(wav) / sr,
                    "seconds": seconds, "rtf": seconds / (len(wav) / sr), "stages": dict(pipeline.timing.stages),
                    "threads": torch.get_num_threads(), "precision": pipeline.precision,
                    "t2s_precision": pipeline.t2s_description, "turn_context": options.turn_context}
        # Its words: pocketsphinx over the whole dialogue against the script, and over the
        # synthesizer's own recordings of the same sentences joined the same way.
        script = " ".join(text for _, text in turns)
        pause = np.zeros(round(TURN_PAUSE_SECONDS * sr), dtype=np.float32)
        recordings = [load_audio(e.audio_path(root), sample_rate=sr, resample=True, downmix=True)[0] for e in chosen]
        reference = np.concatenate([part for wav_i in recordings for part in (wav_i, pause)][:-1])
        ours, theirs = (error_rates([script], [asr.transcribe(audio, sr)]) for audio in (wav, reference))
        dialogue.update({"wer": ours.wer, "cer": ours.cer, "reference_wer": theirs.wer, "reference_cer": theirs.cer})

    command = "soundstorm eval-tts " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["eval-tts"] else sys.argv[1:])
    markdown = to_markdown(rows, dialogue, command, args.prompt_seconds, options, pipeline.default_steps,
                           pipeline.default_guidance_scale, args.semantic_from, pipeline.default_prompt_guidance,
                           pipeline.default_spectrum_match, pipeline.default_prompt_refresh)
    print(markdown)
    if args.out:
        atomic_write_text(args.out / "tts_eval.md", markdown)
        atomic_write_text(args.out / "tts_eval.json", json.dumps(
            {"command": command, "options": asdict(options), "semantic_from": args.semantic_from,
             "spectrum_match": pipeline.spectrum_strength(options),
             "adapt_decoder": args.adapt_decoder,
             "enroll_seconds": args.enroll_seconds,
             "enroll_soundstorm": asdict(enrolment) if args.enroll_seconds else None,
             "enroll_decoder_blend": args.enroll_decoder_blend if args.enroll_seconds else None, "goals": GOALS,
             "rows": rows, "dialogue": dialogue,
             "utterances": [asdict(s) for s in spoken]}, indent=2) + "\n")
    return 0


def to_markdown(rows: list[dict[str, Any]], dialogue: dict[str, Any] | None, command: str, prompt_seconds: float,
                options: DecodingOptions, default_steps: list[int] | None = None,
                default_guidance: float | list[float] = 1.0, semantic_from: str = "text",
                default_prompt_guidance: float = 0.0, default_spectrum_match: float = 0.0,
                default_prompt_refresh: str = "pass") -> str:
    def mark(ok: bool) -> str:
        return "met" if ok else "not met"

    def rates(row: dict[str, Any]) -> str:
        if row.get("phone_error_rate") is None:
            return "-"
        return (f"{row['reference_phone_error_rate']:.3f} / {row['phone_error_rate']:.3f} / "
                f"{row['audio_phone_error_rate']:.3f}")

    source = ("its text" if semantic_from == "text" else
              "the semantic tokens of the synthesizer's audio (no text-to-semantic model: its ceiling)")
    lines = ["# Text to speech: intelligibility, voice, speed", "", f"    {command}", "",
             f"Each held-out sentence spoken from {source} in the voice of a {prompt_seconds:g} s prompt (another "
             "utterance of the same speaker). WER/CER: pocketsphinx against the transcript, for our audio and the "
             "synthesizer's own. Similarity: resemblyzer, to the prompt.", "",
             f"Decoding: SoundStorm steps {options.steps or ('default ' + str(default_steps) if default_steps else 'default (16, 1, ...)')}, temperature {options.temperature:g}, "
             f"guidance {options.guidance_scale if options.guidance_scale is not None else f'default {default_guidance}'}, "
             f"prompt guidance {options.prompt_guidance if options.prompt_guidance is not None else f'default {default_prompt_guidance:g}'}, "
             f"spectrum match {options.spectrum_match if options.spectrum_match is not None else f'default {default_spectrum_match:g}'}, "
             f"prompt refresh {options.prompt_refresh or f'default {default_prompt_refresh}'}; text-to-semantic temperature {options.t2s_temperature:g}, "
             f"top-k {options.t2s_top_k}, EOS threshold {options.t2s_eos_threshold or 'none'}, "
             f"{options.t2s_candidates} candidate{'s' if options.t2s_candidates > 1 else ''}. Phone error rate: of "
             "semantic tokens against the text's phones (soundstorm/text/phone_score.py): the tokens of the "
             "synthesizer's audio, the tokens ours was spoken from, and the tokens the semantic tokenizer hears in "
             "our audio (its phone classifier as the recognizer).", "",
             "| voices | n | WER (synthesizer) | WER (ours) | ratio (goal <= 1.3) | CER (synth / ours) | "
             "similarity (synthesizer) | similarity (ours) | goal | RTF | phone error rate (synth audio / our tokens / our audio) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['group']} ({', '.join(r['speakers'])}) | {r['utterances']} | {r['reference_wer']:.3f} | {r['wer']:.3f} | "
            f"{r['wer_ratio']:.2f} ({mark(r['wer_ratio'] <= GOALS['wer_ratio'])}) | {r['reference_cer']:.3f} / {r['cer']:.3f} | "
            f"{r['reference_similarity']:.3f} | {r['similarity']:.3f} | >= {r['similarity_goal']:.2f} "
            f"({mark(r['similarity'] >= r['similarity_goal'])}) | {r['rtf']:.3f} | {rates(r)} |")
    if dialogue is not None:
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in dialogue["stages"].items())
        lines += ["", f"Dialogue: {dialogue['turns']} turns, voices {' and '.join(dialogue['voices'])}: "
                      f"{dialogue['audio_seconds']:.1f} s of audio in {dialogue['seconds']:.2f} s, real-time factor "
                      f"{dialogue['rtf']:.3f} (goal <= {GOALS['rtf']}: {mark(dialogue['rtf'] <= GOALS['rtf'])}; "
                      f"{dialogue['threads']} torch threads, SoundStorm {dialogue['precision']}, text-to-semantic "
                      f"{dialogue.get('t2s_precision', dialogue['precision'])}; {stages})."]
        if "cer" in dialogue:
            lines.append(f"Its words (pocketsphinx over the whole dialogue against the script; turn context "
                         f"{dialogue['turn_context']}): WER {dialogue['wer']:.3f}, CER {dialogue['cer']:.3f}; the "
                         f"synthesizers' own recordings of the same sentences, joined alike: WER "
                         f"{dialogue['reference_wer']:.3f}, CER {dialogue['reference_cer']:.3f}.")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, help="models folder (default: the bundled models/demo)")
    parser.add_argument("--manifest", type=Path, required=True, help="manifest with transcripts and test splits")
    parser.add_argument("--families", nargs="+", default=["flite", "festival"],
                        help="voice families to test (default flite festival: pocketsphinx is meaningful on them)")
    parser.add_argument("--per-group", type=int, default=30, help="sentences per group (default 30)")
    add_turn_context_argument(parser)
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--prompt-choice", choices=PROMPT_CHOICES, default="first",
                        help="each sentence's prompt: the first other utterance of its speaker (one prompt for all "
                             "of a speaker's sentences; the figures of docs/tts-eval) or a random one for each "
                             "sentence (the same sentences and seeds, so the two pair up)")
    add_adaptation_argument(parser)
    parser.add_argument("--enroll-seconds", type=float, default=0.0,
                        help="speak each speaker's sentences with a decoder and a SoundStorm enrolled (`soundstorm enroll`) on this "
                             "many seconds of its utterances that are not evaluated (default 0: off)")
    add_soundstorm_adaptation_arguments(parser, "enroll-soundstorm")  # as `soundstorm enroll`; steps 0: the decoder only
    parser.add_argument("--enroll-decoder-blend", type=float, default=BLEND,
                        help="with --enroll-seconds, the share of the decoder's fine-tune kept (as `soundstorm enroll "
                             f"--blend`; default {BLEND:g})")
    parser.add_argument("--groups", nargs="+", choices=sorted(GROUP_NAMES), default=sorted(GROUP_NAMES),
                        help="which voices to speak (default both); a sentence draws the same in a run of one group "
                             "as in a run of both")
    parser.add_argument("--semantic-from", choices=("text", "audio"), default="text",
                        help="speak each sentence from its text (the whole pipeline; default) or from the semantic "
                             "tokens of the synthesizer's audio of it (SoundStorm and the codec alone: what the "
                             "text-to-semantic model costs, paired with a run from text)")
    parser.add_argument("--dialogue-seconds", type=float, default=30.0,
                        help="time a dialogue of about this long (default 30 s; 0: none)")
    parser.add_argument("--threads", type=int, default=0)
    add_decoding_arguments(parser)
    add_precision_argument(parser)
    parser.add_argument("--out", type=Path, help="write tts_eval.md and tts_eval.json into this folder")
    parser.add_argument("--quiet", action="store_true")
