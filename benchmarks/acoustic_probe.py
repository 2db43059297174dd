"""Where the acoustic stage loses the phones: the codec, SoundStorm's first level, or its finer ones.

    .venv/bin/python benchmarks/acoustic_probe.py --manifest data/synth/manifest.jsonl --per-group 72 \
        --threads 2 --json docs/intelligibility/acoustic_probe.json

For held-out sentences (eval-tts's pairs: the sentence and a 3 s prompt of another utterance of
its speaker), each variant below makes the sentence's codec tokens (the L levels SoundStorm
decodes, or --levels), the codec decodes them, and the semantic tokenizer listens: the phone error rate of
the tokens it hears against the text (`PhoneScorer.phone_errors`, no recognizer noise). Every
variant speaks the synthesizer's own semantic tokens: the text-to-semantic model plays no part.

- `codec`: the synthesizer's audio encoded and decoded, L levels (no SoundStorm);
- `codec-1`: the same, level 1 alone (what the coarsest level carries);
- `true-1`: the true level 1, levels 2..L as SoundStorm decodes them (one greedy pass each,
  `decoding.decode_finer_levels`): what predicting the finer levels costs;
- `true-1 guided G`: the same with classifier-free guidance G on those passes (--fine-guidance);
- `soundstorm`: SoundStorm decoding every level with the models folder's schedule (the pipeline,
  its soft decoding too where decoding.json asks for it);
- `soundstorm hard` / `soundstorm soft T`: the same tokens, levels 2..L decoded as the tokens /
  as the expected codebook vectors at soft temperature T (one row per --soft-temperatures entry);
- `soundstorm-1only`: SoundStorm's level 1 alone, decoded as `codec-1`;
- one row per --schedules entry: SoundStorm with that schedule and guidance (decoded as the
  pipeline decodes, soft where decoding.json says).

With --decoder FOLDER (a SoundStream with the same encoder and codebooks, e.g. a decoder trained
on SoundStorm's codes: recipes/demo/codec-soundstorm-inputs.toml) every variant is also decoded
by it, the same tokens, rows marked `[decoder]` (a decoder that reads semantic tokens,
recipes/demo/codec-semantic.toml, is given the ones each variant was spoken from). Also the share of level-1 tokens SoundStorm
draws equal to the true ones (low where many codes sound alike: read it beside the rates).

With --asr every variant is also heard by pocketsphinx, as eval-tts hears our audio: WER and CER
per variant, and of the synthesizer's audio itself (`synth audio`), so that the ceiling each
stage sets is read in the words issue 8's goal counts (the tokenizer's phones flatter a decoder
that reads the tokenizer's own tokens). --similarity adds each variant's speaker similarity to the
prompt (resemblyzer). With --reference, a decoder that reads a voice reference (vocos.py:
reference_mels) decodes every variant a second time with the sentence's 3 s prompt as its
reference, rows marked `[voice reference]`: the same tokens, with and without. --only keeps the
named variants (and the synthesizer's audio) when the others are not wanted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.codecs import load_codec  # noqa: E402
from soundstorm.data.audio import load_audio  # noqa: E402
from soundstorm.data.manifest import read_manifest  # noqa: E402
from soundstorm.decoding import decode_finer_levels  # noqa: E402
from soundstorm.eval.speech_eval import GROUPS, choose  # noqa: E402
from soundstorm.precision import autocast  # noqa: E402
from soundstorm.text.pipeline import AcousticTokens, DecodingOptions, SpeechPipeline, Voice  # noqa: E402


def soft_variants(pipeline: SpeechPipeline, voice: Voice, semantic: Tensor, options: DecodingOptions,
                  temperatures: list[float]) -> dict[str, AcousticTokens]:
    """The pipeline's tokens with levels 2..L hard, and soft at each temperature (the same draws:
    the same seed; soft decoding changes only what the codec is handed)."""
    variants = {"soundstorm hard": pipeline.acoustic(semantic, voice, replace(options, soft_temperature=0.0))}
    for t in temperatures:
        variants[f"soundstorm soft {t:g}"] = pipeline.acoustic(semantic, voice, replace(options, soft_temperature=t))
    return variants


@torch.inference_mode()
def finer_levels(pipeline: SpeechPipeline, voice: Voice, semantic: Tensor, level1: Tensor, levels: int,
                 guidance: float = 1.0) -> Tensor:
    """Codes [T, levels]: the given level 1 [T], then levels 2..levels as SoundStorm decodes
    them (one greedy pass each; guidance 1: unguided, as decoding.json's schedule), after the
    voice's prompt (its codes and semantic tokens, as the pipeline puts them first)."""
    P = voice.codes.shape[0]
    coarse = torch.cat([voice.codes[:, :1], level1[:, None]])[None]  # [1, P + T, 1]
    tokens = torch.cat([voice.semantic, semantic])[None]  # [1, S]
    with autocast(pipeline.precision, pipeline.device):
        codes = decode_finer_levels(pipeline.soundstorm, tokens, coarse, levels, guidance_scale=guidance,
                                    prompt_codes=voice.codes[None])
    return codes[0, P:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--models", default="models/demo")
    parser.add_argument("--decoder", type=Path, help="another SoundStream folder to decode every variant with too")
    parser.add_argument("--per-group", type=int, default=24)
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--fine-guidance", type=float, nargs="*", default=[2.0])
    parser.add_argument("--schedules", nargs="*", default=[],
                        help="more SoundStorm decodings, each STEPS:GUIDANCE with comma-separated per-level "
                             "values, e.g. 4,1,1,1:1.5,2,2,2")
    parser.add_argument("--soft-temperatures", type=float, nargs="*", default=[],
                        help="decode SoundStorm's finer levels softly at each of these temperatures too")
    parser.add_argument("--levels", type=int,
                        help="how many codec levels the variants make (default: as many as SoundStorm decodes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--asr", action="store_true", help="also WER and CER of every variant by pocketsphinx")
    parser.add_argument("--similarity", action="store_true", help="also every variant's similarity to the prompt")
    parser.add_argument("--reference", action="store_true",
                        help="decode every variant with the prompt as the voice reference too (a decoder that reads one)")
    parser.add_argument("--only", nargs="*", help="keep only these variants, e.g. codec soundstorm")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipeline = SpeechPipeline.from_folder(args.models)
    scorer = pipeline.phone_scorer
    if scorer is None:
        raise SystemExit("the models folder's semantic tokens have no phone classes: nothing to score")
    decoders = {"": pipeline.decoder}  # the codec's, or the models folder's decoder/
    if args.decoder:
        other = load_codec(f"soundstream:{args.decoder}")
        if getattr(other, "encoder_digest", None) != getattr(pipeline.codec, "encoder_digest", None):
            raise SystemExit(f"{args.decoder} has another encoder or codebooks than {args.models}/codec: its codes differ")
        decoders[" [decoder]"] = other
    schedules = [tuple(list(map(kind, part.split(","))) for kind, part in zip((int, float), text.split(":")))
                 for text in args.schedules]
    levels = len(pipeline.default_steps) if args.levels is None else args.levels
    if not 1 <= levels <= pipeline.codec.num_quantizers:
        raise SystemExit(f"--levels must be in [1, {pipeline.codec.num_quantizers}] for this codec, got {levels}")
    sr = pipeline.sample_rate
    entries = read_manifest(args.manifest)
    pairs = [p for p in choose(entries, ("flite", "festival"), args.per_group, 3.0) if p[0].split in args.groups]
    counts: dict[str, dict[str, list[int]]] = {}  # group -> variant -> [errors, phones]
    heard_words: dict[str, dict[str, list[str]]] = {}  # group -> variant -> pocketsphinx's hypotheses (--asr)
    texts: dict[str, list[str]] = {}  # group -> the sentences' texts
    if args.asr:
        from soundstorm.eval.asr import Recognizer, error_rates

        asr = Recognizer()
    similarities: dict[str, dict[str, list[float]]] = {}  # group -> variant -> similarity to the prompt
    if args.similarity:
        from soundstorm.eval.speaker import SpeakerSimilarity

        similarity = SpeakerSimilarity()
    for index, (entry, prompt_entry) in enumerate(pairs):
        root = args.manifest.parent
        reference, _ = load_audio(entry.audio_path(root), sample_rate=sr, resample=True, downmix=True)
        prompt, _ = load_audio(prompt_entry.audio_path(root), sample_rate=sr, resample=True, downmix=True)
        voice = pipeline.voice(prompt[: 3 * sr], sample_rate=sr)
        true_codes, semantic = pipeline.tokens(torch.from_numpy(reference)[None, None])  # [T, Q], [S]
        options = DecodingOptions(seed=args.seed * len(pairs) + index)
        generated: dict[str, AcousticTokens] = {}  # SoundStorm's own tokens, made once if a variant wants them

        def soundstorm() -> AcousticTokens:
            if not generated:
                generated["tokens"] = pipeline.acoustic(semantic, voice, options)
            return generated["tokens"]

        def soundstorm_soft() -> dict[str, AcousticTokens]:
            return soft_variants(pipeline, voice, semantic, options, args.soft_temperatures) if args.soft_temperatures else {}

        makers: dict[str, Callable[[], Tensor | AcousticTokens]] = {
            "codec": lambda: true_codes[:, :levels],
            "codec-1": lambda: true_codes[:, :1],
            "true-1": lambda: finer_levels(pipeline, voice, semantic, true_codes[:, 0], levels),
            **{f"true-1 guided {g:g}": (lambda g=g: finer_levels(pipeline, voice, semantic, true_codes[:, 0], levels, g))
               for g in args.fine_guidance},
            "soundstorm": soundstorm,
            "soundstorm-1only": lambda: soundstorm().codes[:, :1],
            **{text: (lambda steps=steps, guidance=guidance: pipeline.acoustic(
                semantic, voice, replace(options, steps=steps, guidance_scale=guidance)))
               for text, (steps, guidance) in zip(args.schedules, schedules)},
        }
        made: dict[str, Tensor | AcousticTokens] = {name: make() for name, make in makers.items()
                                                     if not args.only or name in args.only}
        if not args.only or any(name.startswith("soundstorm soft") for name in args.only):
            made.update(soundstorm_soft())
        codecs = dict(decoders)
        if args.reference:
            assert voice.recording is not None
            codecs.update({f"{suffix} [voice reference]": codec.with_reference(voice.recording)
                           for suffix, codec in decoders.items() if codec.reads_reference})
        group = counts.setdefault(GROUPS[entry.split or ""], {})
        alike = similarities.setdefault(GROUPS[entry.split or ""], {})
        words = heard_words.setdefault(GROUPS[entry.split or ""], {})
        texts.setdefault(GROUPS[entry.split or ""], []).append(entry.text or "")
        if args.asr:
            words.setdefault("synth audio", []).append(asr.transcribe(reference, sr))
        if args.similarity:
            alike.setdefault("synth audio", []).append(similarity(prompt[: 3 * sr], reference, sr))
        for suffix, codec in codecs.items():
            for name, codes in made.items():
                # A decoder that reads semantic tokens gets the ones every variant was spoken from.
                if isinstance(codes, AcousticTokens):
                    wav = pipeline.decode(codes, Voice("", codes.codes, semantic, codec=codec), semantic)
                else:
                    with torch.inference_mode():
                        wav = codec.decode_generated(codes[None], semantic=semantic[None])[0, 0].float().numpy()
                heard = pipeline.plan_resynth(wav, voice, options, sample_rate=sr).segments[0].semantic
                errors, phones = scorer.phone_errors(heard, entry.text or "")
                row = group.setdefault(name + suffix, [0, 0])
                row[0] += errors
                row[1] += phones
                if args.asr:
                    words.setdefault(name + suffix, []).append(asr.transcribe(wav, sr))
                if args.similarity:
                    alike.setdefault(name + suffix, []).append(similarity(prompt[: 3 * sr], wav, sr))
        if generated:
            row = group.setdefault("level-1 accuracy", [0, 0])
            row[0] += int((generated["tokens"].codes[:, 0] == true_codes[:, 0]).sum())
            row[1] += generated["tokens"].codes.shape[0]
        print(f"{index + 1}/{len(pairs)} {entry.id}", file=sys.stderr)

    results = {group: {**{name: errors / max(total, 1) for name, (errors, total) in rows.items()},
                       "sentences": sum(1 for e, _ in pairs if GROUPS[e.split or ""] == group)}
               for group, rows in counts.items()}
    print("| variant (phone error rate heard; last row: level-1 accuracy) | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for name in next(iter(counts.values())):
        print(f"| {name} | " + " | ".join(f"{r[name]:.3f}" for r in results.values()) + " |")
    asr_results = {}
    if args.asr:
        asr_results = {group: {name: {"wer": (rates := error_rates(texts[group], hypotheses)).wer, "cer": rates.cer}
                               for name, hypotheses in variants.items()}
                       for group, variants in heard_words.items()}
        print("\n| variant (pocketsphinx WER / CER) | " + " | ".join(asr_results) + " |")
        print("|---|" + "---:|" * len(asr_results))
        for name in next(iter(asr_results.values())):
            print(f"| {name} | " + " | ".join(f"{r[name]['wer']:.3f} / {r[name]['cer']:.3f}"
                                              for r in asr_results.values()) + " |")
    similarity_results = {group: {name: float(sum(v) / len(v)) for name, v in variants.items()}
                          for group, variants in similarities.items()}
    if args.similarity:
        print("\n| variant (similarity to the prompt) | " + " | ".join(similarity_results) + " |")
        print("|---|" + "---:|" * len(similarity_results))
        for name in next(iter(similarity_results.values())):
            print(f"| {name} | " + " | ".join(f"{r[name]:.3f}" for r in similarity_results.values()) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "levels": levels, "results": results,
                                         "asr": asr_results or None, "similarity": similarity_results or None,
                                         "similarities": similarities or None, "texts": texts if args.asr else None,
                                         "hypotheses": heard_words if args.asr else None},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
