"""`soundstorm tts | dialogue | resynth | generate`: speech from text, a script, speech, or tokens.

    soundstorm tts "Some text." --voice prompt.wav -o out.wav [--spectrogram out.png]
    soundstorm dialogue script.txt --voice A=a.wav --voice B=b.wav -o dialogue.wav
    soundstorm resynth in.wav --voice target.wav -o out.wav
    soundstorm generate tokens.npy --voice prompt.wav -o out.wav

Models come from --models (default: the bundled models/demo, or $SOUNDSTORM_MODELS): a folder
with codec/, semantic/, soundstorm/, t2s/ and voices/. Without --voice, the bundled default
voice (voices/default.wav) speaks. The first 3 s of a voice prompt are used. A voice folder
(`soundstorm enroll`) stands wherever a prompt file does: its prompt, and a codec decoder and a
SoundStorm that learned the voice from all of its enrolment audio.

A dialogue script has one turn a line, `NAME: text`; blank lines and `#` comments are skipped,
and a line without `NAME:` continues the turn before it. Every NAME needs a --voice NAME=FILE
(a bare --voice FILE, or none, gives every speaker that voice). Each turn is read alone in its
speaker's voice; `--turn-context previous` has it continue the turn before (docs/dialogue_context.md).

`generate` reads semantic tokens from .npy (int, [S]) or a text file of integers, at the rate
the model was trained on (25 Hz for the bundled one), for users with their own text-to-semantic
model. Each command prints the time taken and the real-time factor.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from soundstorm.decoding import PROMPT_REFRESH
from soundstorm.plots import write_spectrogram
from soundstorm.precision import add_precision_argument
from soundstorm.text.pipeline import (
    TURN_CONTEXTS,
    DecodingOptions,
    SpeechPipeline,
    Voice,
    parse_dialogue,
)

DEFAULT_MODELS = Path(__file__).resolve().parents[2] / "models" / "demo"


def models_folder(argument: Path | None) -> Path:
    if argument is not None:
        return argument
    return Path(os.environ.get("SOUNDSTORM_MODELS", DEFAULT_MODELS))


def probability(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value:g}")
    return value


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """The DecodingOptions knobs, shared by the speech commands and `soundstorm eval-tts`."""
    defaults = DecodingOptions()
    parser.add_argument("--steps", type=int, nargs="+", help="SoundStorm iterations per level; fewer numbers than "
                        "levels decode only the first levels (default: the models folder's decoding.json, else the "
                        "paper's 16, 1, ...)")
    parser.add_argument("--temperature", type=float, default=defaults.temperature,
                        help=f"SoundStorm sampling temperature (default {defaults.temperature:g})")
    parser.add_argument("--t2s-temperature", type=float, default=defaults.t2s_temperature,
                        help=f"text-to-semantic temperature (default {defaults.t2s_temperature:g})")
    parser.add_argument("--t2s-top-k", type=int, default=defaults.t2s_top_k,
                        help=f"text-to-semantic top-k (default {defaults.t2s_top_k})")
    parser.add_argument("--t2s-candidates", type=int, default=defaults.t2s_candidates,
                        help="draw this many text-to-semantic samples and keep the one whose tokens spell the text's "
                             f"phones best (soundstorm/text/phone_score.py; default {defaults.t2s_candidates}; needs "
                             "semantic tokens of phone classes, as the bundled models' are)")
    eos_threshold = defaults.t2s_eos_threshold or 0.0  # the option's 0 is DecodingOptions' None
    parser.add_argument("--t2s-eos-threshold", type=probability, default=eos_threshold,
                        help="stop the text-to-semantic model once p(EOS) reaches this; 0: only when EOS is drawn "
                             f"(default {eos_threshold:g})")
    parser.add_argument("--guidance-scale", type=float, nargs="+",
                        help="classifier-free guidance: one scale, or one per level (e.g. 2 1 1 1 1 1 1 1: the "
                             "first level only); 1 = off (default: the models folder's decoding.json, else 1)")
    parser.add_argument("--prompt-guidance", type=float,
                        help="voice guidance: push SoundStorm's logits further by what the voice prompt changes in "
                             "them, at this weight (one more batch copy a pass); 0 = off (default: the models "
                             "folder's decoding.json, else 0)")
    parser.add_argument("--soft-temperature", type=float,
                        help="decode levels 2..L as the expected codebook vector of SoundStorm's distribution at "
                             "this temperature; 0: the tokens themselves (default: the models folder's "
                             "decoding.json, else 0)")
    parser.add_argument("--window-seconds", type=float,
                        help="long-form decoding: SoundStorm decodes a segment of more new audio than this window "
                             "after window, each continuing the one before; 0: one pass, however long (default: "
                             "the models folder's decoding.json, else 6)")
    parser.add_argument("--window-context-seconds", type=float,
                        help="what each window after the first sees of the one before, after the voice prompt "
                             "(default: the models folder's decoding.json, else 1)")
    parser.add_argument("--no-voice-reference", action="store_true",
                        help="a decoder that reads a voice reference (the bundled decoder/) decodes without the "
                             "prompt's spectrum (as for a resynth whose source voice the tokenizer hears poorly)")
    parser.add_argument("--spectrum-match", type=float,
                        help="filter the speech towards its voice prompt's long-term spectrum by this share of their "
                             "difference, in [0, 1]; 0 = off (default: the models folder's decoding.json, else 0)")
    parser.add_argument("--prompt-refresh", choices=PROMPT_REFRESH,
                        help="how often SoundStorm runs the voice prompt's frames: every pass (exact), each level's "
                             "first, or once; between refreshes a pass runs over the new frames alone, over the "
                             "prompt's recorded states (docs/prompt_reuse.md; default: the models folder's "
                             "decoding.json, else pass)")
    parser.add_argument("--seed", type=int, default=defaults.seed)


def add_turn_context_argument(parser: argparse.ArgumentParser) -> None:
    """--turn-context for the commands that speak a dialogue (DecodingOptions.turn_context)."""
    parser.add_argument("--turn-context", choices=TURN_CONTEXTS, default=DecodingOptions.turn_context,
                        help="what the text-to-semantic model reads before a dialogue turn: none (the turn alone, as "
                             "text to speech reads a sentence) or previous (the turn before and a <turn> marker; its "
                             "tokens spelled their text's phones 4x worse on the bundled models: "
                             "docs/dialogue_context.md); default none")


def decoding_options(args: argparse.Namespace) -> DecodingOptions:
    """DecodingOptions from the arguments of add_decoding_arguments."""
    return DecodingOptions(steps=args.steps, temperature=args.temperature, t2s_temperature=args.t2s_temperature,
                           t2s_top_k=args.t2s_top_k, t2s_eos_threshold=args.t2s_eos_threshold or None,
                           t2s_candidates=args.t2s_candidates,
                           guidance_scale=None if args.guidance_scale is None else
                           args.guidance_scale[0] if len(args.guidance_scale) == 1 else args.guidance_scale,
                           prompt_guidance=args.prompt_guidance,
                           soft_temperature=args.soft_temperature, window_seconds=args.window_seconds,
                           window_context_seconds=args.window_context_seconds,
                           voice_reference=not args.no_voice_reference, spectrum_match=args.spectrum_match,
                           prompt_refresh=args.prompt_refresh, seed=args.seed,
                           turn_context=getattr(args, "turn_context", DecodingOptions.turn_context))


def add_common(parser: argparse.ArgumentParser, voice_help: str) -> None:
    parser.add_argument("-o", "--output", type=Path, required=True, help="WAV file to write")
    parser.add_argument("--voice", action="append", default=[], help=voice_help)
    parser.add_argument("--models", type=Path, help="models folder (default: the bundled models/demo)")
    parser.add_argument("--spectrogram", type=Path, help="also write a spectrogram PNG here")
    add_decoding_arguments(parser)
    add_adaptation_argument(parser)
    parser.add_argument("--device", default="cpu")
    add_precision_argument(parser)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")


def add_adaptation_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapt-decoder", type=int, default=0, metavar="STEPS",
                        help="fine-tune a copy of the codec's decoder on each voice prompt for STEPS steps before "
                             "decoding its speech: the same tokens, nearer a voice the codec never heard (about "
                             "0.4 s a step on one CPU thread, once per voice; 10-25 is enough; default 0: off)")


def _pipeline(args: argparse.Namespace) -> SpeechPipeline:
    if args.threads:
        torch.set_num_threads(args.threads)
    return SpeechPipeline.from_folder(models_folder(args.models), device=args.device, precision=args.precision)


def _voice(pipeline: SpeechPipeline, path: str | Path | None, name: str | None, adapt_steps: int) -> Voice:
    """The voice of a prompt file (None: the bundled default), saying what an adaptation took."""
    start = time.perf_counter()
    voice = (pipeline.voice(path, name=name, adapt_steps=adapt_steps) if path is not None
             else pipeline.default_voice(adapt_steps))
    if adapt_steps:
        print(f"adapted the codec's decoder to {voice.name} in {time.perf_counter() - start:.1f} s "
              f"({adapt_steps} steps)", file=sys.stderr)
    return voice


def _single_voice(pipeline: SpeechPipeline, voices: list[str], adapt_steps: int = 0) -> Voice:
    if len(voices) > 1:
        raise ValueError("give one --voice prompt.wav")
    return _voice(pipeline, voices[0] if voices else None, None, adapt_steps)


def _write(pipeline: SpeechPipeline, wav: np.ndarray, args: argparse.Namespace) -> int:
    from soundstorm.data.audio import save_audio

    save_audio(args.output, wav, pipeline.sample_rate)
    if args.spectrogram:
        write_spectrogram(wav, pipeline.sample_rate, args.spectrogram)
    timing = pipeline.timing
    stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timing.stages.items())
    print(f"wrote {args.output}: {timing.audio_seconds:.2f} s of audio in {timing.seconds:.2f} s "
          f"(real-time factor {timing.rtf:.3f}; {stages})", file=sys.stderr)
    return 0


def run_tts(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    return _write(pipeline, pipeline.tts(args.text, _single_voice(pipeline, args.voice, args.adapt_decoder), decoding_options(args)), args)


def run_dialogue(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    turns = parse_dialogue(Path(args.script).read_text(encoding="utf-8"))
    named = [v for v in args.voice if "=" in v]
    if named and len(named) != len(args.voice):
        raise ValueError("give every --voice as NAME=FILE, or a single --voice FILE for all speakers")
    if named:
        voices = {name: _voice(pipeline, path, name, args.adapt_decoder)
                  for name, _, path in (v.partition("=") for v in named)}
    else:
        shared = _single_voice(pipeline, args.voice, args.adapt_decoder)
        voices = {speaker: shared for speaker, _ in turns}
    return _write(pipeline, pipeline.dialogue(turns, voices, decoding_options(args)), args)


def run_resynth(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    return _write(pipeline, pipeline.resynth(args.input, _single_voice(pipeline, args.voice, args.adapt_decoder), decoding_options(args)), args)


def read_tokens(path: Path) -> torch.Tensor:
    """Semantic tokens int64 [S] from .npy or whitespace-separated integers."""
    if not path.is_file():
        raise FileNotFoundError(f"no token file at {path}")
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
    else:
        try:
            array = np.array([int(t) for t in path.read_text().split()])
        except ValueError as error:
            raise ValueError(f"{path}: expected whitespace-separated integers ({error})") from error
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{path}: expected integer tokens [S], got {array.dtype} {array.shape}")
    return torch.from_numpy(array.astype(np.int64))


def run_generate(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    tokens = read_tokens(args.tokens)
    return _write(pipeline, pipeline.speak(tokens, _single_voice(pipeline, args.voice, args.adapt_decoder), decoding_options(args)), args)


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def add(name: str, help_text: str, run: object) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.set_defaults(run=run)
        return parser

    tts = add("tts", "text to speech in the voice of a short prompt", run_tts)
    tts.add_argument("text", help="the text to speak (long texts are split into sentences)")
    add_common(tts, "voice prompt audio, or a voice folder from `soundstorm enroll` (default: the bundled voice)")
    dialogue = add("dialogue", "a multi-speaker dialogue from a `NAME: text` script", run_dialogue)
    dialogue.add_argument("script", type=Path, help="the dialogue script")
    add_turn_context_argument(dialogue)
    add_common(dialogue, "NAME=prompt.wav or NAME=VOICE_FOLDER, once per speaker (or one for all)")
    resynth = add("resynth", "the words of a recording in another voice (voice conversion)", run_resynth)
    resynth.add_argument("input", type=Path, help="the recording whose words to keep")
    add_common(resynth, "the target voice's prompt audio, or its voice folder")
    generate = add("generate", "speech from semantic tokens (.npy or integers in a text file)", run_generate)
    generate.add_argument("tokens", type=Path, help="semantic tokens at the model's semantic rate")
    add_common(generate, "voice prompt audio, or a voice folder (default: the bundled voice)")
