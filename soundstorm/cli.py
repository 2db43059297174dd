"""The `soundstorm` command. Each subcommand is one function; later issues add their own."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from soundstorm.allocator import keep_freed_memory
from soundstorm.masking import default_steps
from soundstorm.model.config import PRESETS
from soundstorm.precision import add_precision_argument


def _demo(args: argparse.Namespace) -> int:
    """With the bundled models (models/demo): text to speech and a short dialogue, offline.
    Without them (or with --toy): train a tiny SoundStorm on the toy task, then decode it
    iteratively and in one shot."""
    from soundstorm.text.commands import models_folder

    if not args.toy and (models_folder(None) / "soundstorm").is_dir():
        return _speech_demo(args, models_folder(None))
    from soundstorm.toy import ToyTask, train_toy_model

    if args.threads:
        torch.set_num_threads(args.threads)
    task = ToyTask()
    show = not args.quiet and sys.stderr.isatty()
    print(
        f"Training a tiny SoundStorm on the toy task ({task.num_speakers} hidden speakers, "
        f"Q={task.num_quantizers}, K={task.codebook_size}, T={task.num_frames}) for up to "
        f"{args.train_seconds:g} s or {args.max_steps} steps...",
        file=sys.stderr,
    )
    start = time.monotonic()
    model, losses = train_toy_model(
        task, max_seconds=args.train_seconds, max_steps=args.max_steps, progress=show, seed=args.seed
    )
    train_seconds = time.monotonic() - start
    print(
        f"trained {len(losses)} steps in {train_seconds:.1f} s; loss {losses[0]:.3f} -> "
        f"{sum(losses[-20:]) / len(losses[-20:]):.3f} (mean of the last 20)",
        file=sys.stderr,
    )

    generator = torch.Generator().manual_seed(args.seed + 1)
    _, semantic, _ = task.sample(args.num_sequences, generator)
    Q = task.num_quantizers
    schedules = {"iterative": [args.first_level_steps] + [1] * (Q - 1), "one-shot": [1] * Q}
    rows = []
    for name, steps in schedules.items():
        start = time.perf_counter()
        with torch.inference_mode():
            codes = model.generate(
                semantic, steps=steps, temperature=args.temperature,
                generator=torch.Generator().manual_seed(args.seed + 2),
            )
        seconds = time.perf_counter() - start
        consistency = task.consistency(codes, semantic).mean().item()
        rows.append({"decoding": name, "steps": steps, "consistency": consistency, "seconds": seconds})

    if args.json:
        print(json.dumps({"train_steps": len(losses), "final_loss": losses[-1], "results": rows}, indent=2))
    else:
        print(f"\n{'decoding':<10} {'steps':<16} {'consistency':>11} {'seconds':>8}")
        for row in rows:
            print(
                f"{row['decoding']:<10} {str(row['steps']):<16} {row['consistency']:>11.3f} "
                f"{row['seconds']:>8.3f}"
            )
        print(
            "\nconsistency: the fraction of frames that carry one voice throughout (1.0 = all).\n"
            "Iterative decoding commits to a few confident frames first and the rest follow\n"
            "them; one-shot decoding lets every frame pick its own voice."
        )
    if args.save:
        model.save_pretrained(args.save)
        print(f"saved the toy model to {args.save}", file=sys.stderr)
    return 0


DEMO_TEXT = "SoundStorm generates the tokens of a neural audio codec in parallel, level by level."
DEMO_DIALOGUE = [("A", "Did you hear the news this morning?"), ("B", "No, what happened?"),
                 ("A", "The train was late again, so everybody walked.")]


def _speech_demo(args: argparse.Namespace, models: Path) -> int:
    """Text to speech and a two-speaker dialogue with the bundled models."""
    from soundstorm.data.audio import save_audio
    from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    pipeline = SpeechPipeline.from_folder(models, precision=args.precision)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    voices = sorted(p for p in (models / "voices").glob("*.wav") if p.stem != "default")
    voice_a = pipeline.default_voice()
    voice_b = pipeline.voice(next((p for p in voices if "awb" in p.stem), voices[-1])) if voices else voice_a
    options = DecodingOptions(seed=args.seed)
    results = []
    for name, make in (("tts", lambda: pipeline.tts(DEMO_TEXT, voice_a, options)),
                       ("dialogue", lambda: pipeline.dialogue(DEMO_DIALOGUE, {"A": voice_a, "B": voice_b}, options))):
        wav = make()
        save_audio(out / f"{name}.wav", wav, pipeline.sample_rate)
        timing = pipeline.timing
        results.append({"output": str(out / f"{name}.wav"), "audio_seconds": timing.audio_seconds,
                        "seconds": timing.seconds, "rtf": timing.rtf})
        print(f"{out / f'{name}.wav'}: {timing.audio_seconds:.1f} s of audio in {timing.seconds:.1f} s "
              f"(real-time factor {timing.rtf:.3f})", file=sys.stderr)
    if args.json:
        print(json.dumps({"models": str(models), "results": results}, indent=2))
    return 0


def _presets(args: argparse.Namespace) -> int:
    """Print the named model configurations and their sizes."""
    from soundstorm.model.soundstorm import SoundStorm

    for name, config in PRESETS.items():
        with torch.device("meta"):  # count parameters without allocating them
            parameters = SoundStorm(config).num_parameters()
        print(f"{name}: {parameters / 1e6:.1f}M parameters, default steps {default_steps(config.num_quantizers)}")
        if args.verbose:
            print("  " + json.dumps(config.to_dict()))
    return 0


TRAIN = "soundstorm.train.run"


def _add_module(commands: argparse._SubParsersAction, name: str, module_name: str, help_text: str) -> None:  # type: ignore[type-arg]
    """A subcommand whose module provides add_arguments(parser) and run(args), its docstring the description."""
    module = importlib.import_module(module_name)
    parser = commands.add_parser(name, help=help_text, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    parser.set_defaults(run=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soundstorm",
        description="SoundStorm: parallel generation of neural-codec tokens (Borsos et al., 2023).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="speak with the bundled models (or, without them, the toy-task demo)",
        description=_demo.__doc__,
    )
    demo.add_argument("--train-seconds", type=float, default=60.0, help="training time limit (default 60)")
    demo.add_argument("--max-steps", type=int, default=3000, help="training step limit (default 3000)")
    demo.add_argument("--num-sequences", type=int, default=64, help="sequences to generate (default 64)")
    demo.add_argument("--first-level-steps", type=int, default=16, help="iterations on level 1 (default 16)")
    demo.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    add_precision_argument(demo)
    demo.add_argument("--save", type=Path, help="save the trained toy model to this folder")
    demo.add_argument("--json", action="store_true", help="print the results as JSON")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.add_argument("--toy", action="store_true", help="the toy-task demo even when bundled models exist")
    demo.add_argument("--out-dir", type=Path, default=Path("demo-output"), help="where the speech demo writes (default demo-output)")
    demo.set_defaults(run=_demo)

    corpus = commands.add_parser("corpus", help="build, scan and tokenize speech corpora")
    corpus_commands = corpus.add_subparsers(dest="corpus_command", required=True, metavar="STEP")
    _add_module(corpus_commands, "synth", "soundstorm.data.synth", "synthesize a multi-speaker corpus with Debian's voices")
    _add_module(corpus_commands, "scan", "soundstorm.data.scan", "validate a folder of audio (+ transcripts) into a manifest")
    _add_module(corpus_commands, "augment", "soundstorm.data.augment", "new voices: copies of a corpus at random speeds and equalizations")
    _add_module(corpus_commands, "join", "soundstorm.data.join", "pack each speaker's short clips into longer utterances")
    _add_module(corpus_commands, "merge", "soundstorm.data.merge", "merge manifests into one (paths rewritten, ids kept)")
    _add_module(corpus_commands, "tokenize", "soundstorm.data.tokenize", "encode a manifest into a token cache")
    _add_module(corpus_commands, "merge-caches", "soundstorm.data.cache_merge", "merge token caches into one (same codec and tokenizer)")

    codec = commands.add_parser("codec", help="train and evaluate neural audio codecs")
    codec_commands = codec.add_subparsers(dest="codec_command", required=True, metavar="STEP")
    _add_module(codec_commands, "eval", "soundstorm.eval.codec_eval", "PESQ, STOI, mel distance per bitrate, against Opus")
    _add_module(codec_commands, "train", TRAIN, "train our SoundStream codec (a recipe with task = \"soundstream\")")

    semantic = commands.add_parser("semantic", help="train, fit and evaluate semantic tokenizers")
    semantic_commands = semantic.add_subparsers(dest="semantic_command", required=True, metavar="STEP")
    _add_module(semantic_commands, "train", TRAIN, "train the content encoder on phone timings (a recipe with task = \"semantic\")")
    _add_module(semantic_commands, "kmeans", "soundstorm.semantic.fit", "fit k-means on content, MFCC or HuBERT features into a tokenizer")
    _add_module(semantic_commands, "eval", "soundstorm.eval.semantic_eval", "phone content and speaker leak of semantic (and codec) tokens")

    _add_module(commands, "train", TRAIN, "train a model from a recipe (one process, or many under torchrun)")

    from soundstorm.text.commands import add_commands

    add_commands(commands)
    _add_module(commands, "enroll", "soundstorm.text.enroll", "a voice folder: the decoder and SoundStorm adapted to 30-60 s of one voice")
    _add_module(commands, "bundle", "soundstorm.text.bundle", "gather trained models into a small models folder")
    _add_module(commands, "eval", "soundstorm.eval.tts_eval", "WER, speaker similarity and consistency of generated speech (Table 1)")
    _add_module(commands, "eval-tts", "soundstorm.eval.speech_eval", "text to speech from a models folder: WER, similarity, dialogue speed")
    _add_module(commands, "bench", "soundstorm.eval.bench", "speed: SoundStorm against the AR baseline, CPU or GPU")
    _add_module(commands, "serve", "soundstorm.serve.command", "the HTTP API and web page (FastAPI; OpenAPI docs at /docs)")

    presets = commands.add_parser("presets", help="list the named model configurations", description=_presets.__doc__)
    presets.add_argument("--verbose", action="store_true", help="print every field")
    presets.set_defaults(run=_presets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Every subcommand allocates the same large tensors pass after pass: keep their pages
    # (soundstorm/allocator.py; SOUNDSTORM_MALLOC=default opts out).
    keep_freed_memory()
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        # Bad input (a voice prompt, a models folder, decoding options...): its message says what
        # was expected; a traceback would only bury it. SOUNDSTORM_TRACEBACK=1 shows it anyway.
        if os.environ.get("SOUNDSTORM_TRACEBACK"):
            raise
        print(f"soundstorm {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
