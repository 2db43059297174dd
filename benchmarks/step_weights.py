"""Step weights for the text-to-semantic model (soundstorm/model/step_linear.py: float16,
bfloat16 or int8 copies read by the one-position passes) against float32: the speed of its
steps, the whole dialogue's, and how far the logits move.

    .venv/bin/python benchmarks/step_weights.py data/synth-tokens-9b54fd99a7a8 --threads 2 \
        --json docs/step_weights.json
    .venv/bin/python benchmarks/step_weights.py data/synth-plus-tokens --dtypes float16 int8

Three measurements, each side by side in one run (float32 first, then each --dtypes variant,
interleaved; medians):
1. milliseconds per generated token: the bundled t2s model generating the semantic tokens of
   held-out sentences (sampled, the pipeline's defaults; the same seed for all); and per decoder
   pass over one new position after a 230-position prefix, by forward's general path and by
   the step path generation uses (CausalDecoder.step: the same numbers, fewer ops);
2. the dialogue of benchmarks/dialogue_speed.py through the whole pipeline (--precision auto,
   with the models folder's text-to-semantic model loaded again and converted to each variant;
   the float32 variant unconverted);
3. fidelity, teacher-forced step by step over the cache's test utterances: how often the top
   token agrees with float32's, the mean KL divergence from float32's distribution, the largest
   logit difference.
Run it alone: any other load on a 2-core machine distorts the timings.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dialogue_speed import SCRIPT  # noqa: E402

from soundstorm.data.cache import TokenCache  # noqa: E402
from soundstorm.model.decoder import KVCache  # noqa: E402
from soundstorm.model.step_linear import use_step_weights  # noqa: E402
from soundstorm.text.model import TextToSemantic  # noqa: E402
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline  # noqa: E402
from soundstorm.text.symbols import TextSymbols  # noqa: E402
from soundstorm.train.t2s_task import TextSemanticDataset  # noqa: E402


@torch.inference_mode()
def step_logits(model: TextToSemantic, text: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
    """Logits [S + 1, V + 1] of every semantic token and EOS, fed one position per pass after
    the text prefix (as generation runs, with the true tokens)."""
    sequence = model._sequence(text, semantic, eos=False)
    start = len(text) + 1
    cache = KVCache()
    hidden = model.decoder(model.embedding(sequence[None, :start]), cache)[:, -1]
    logits = [model.head(hidden).float()]
    for token in sequence[start:]:
        hidden = model.decoder(model.embedding(token.view(1, 1)), cache)[:, -1]
        logits.append(model.head(hidden).float())
    return torch.cat(logits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache", type=Path, help="token cache (its test split's texts and semantic tokens)")
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--utterances", type=int, default=24, help="test utterances for fidelity and per-token speed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", choices=["float16", "bfloat16", "int8"], default=["float16", "int8"],
                        help="the step-weight copies to compare with float32")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    reference = TextToSemantic.from_pretrained(args.models / "t2s").eval()
    models = {"float32": reference}
    replaced = 0
    for name in args.dtypes:
        converted = TextToSemantic.from_pretrained(args.models / "t2s").eval()
        replaced = use_step_weights(converted, getattr(torch, name))
        models[f"{name} step weights"] = converted
    data = TextSemanticDataset(TokenCache(args.cache), "test", TextSymbols(reference.config.text_units), 10_000)
    picks = [round(i * (len(data) - 1) / max(1, args.utterances - 1)) for i in range(min(args.utterances, len(data)))]
    items = [tuple(torch.tensor(x) for x in data._item(k)) for k in picks]

    # 3. fidelity
    references = [step_logits(reference, text, semantic) for text, semantic in items]
    fidelity: dict[str, dict[str, float]] = {}
    for name, model in list(models.items())[1:]:
        agree, positions, kl, worst = 0, 0, 0.0, 0.0
        for (text, semantic), ref in zip(items, references):
            new = step_logits(model, text, semantic)
            log_ref, log_new = ref.log_softmax(-1), new.log_softmax(-1)
            agree += int((ref.argmax(-1) == new.argmax(-1)).sum())
            positions += len(ref)
            kl += float((log_ref.exp() * (log_ref - log_new)).sum())
            worst = max(worst, float((ref - new).abs().max()))
        fidelity[name] = {"positions": positions, "top1_agreement": agree / positions, "mean_kl": kl / positions,
                          "max_abs_logit_difference": worst}

    # 1. per-token speed
    per_token: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(args.repeats + 1):
        for name, model in models.items():
            tokens, seconds = 0, 0.0
            for k, (text, _) in enumerate(items[:8]):
                generator = torch.Generator().manual_seed(k)
                start = time.perf_counter()
                out = model.generate(text, temperature=0.8, top_k=50, generator=generator)
                seconds += time.perf_counter() - start
                tokens += len(out)
            if repeat:  # the first round warms up
                per_token[name].append(1000 * seconds / max(1, tokens))

    # 1b. one decoder pass over one new position: forward's general path against the step path
    # (CausalDecoder.step), after a 230-position prefix, 150 steps a run
    per_pass: dict[str, dict[str, list[float]]] = {name: {"forward": [], "step": []} for name in models}
    prefix = items[0][0].new_zeros(230)
    for repeat in range(args.repeats + 1):
        for name, model in models.items():
            for path in ("forward", "step"):
                with torch.inference_mode():
                    cache = KVCache()
                    model.decoder(model.embedding(prefix[None]), cache)
                    x = model.embedding(prefix.new_full((1,), model.semantic_offset))  # [1, D]
                    start = time.perf_counter()
                    for _ in range(150):
                        model.decoder.step(x, cache) if path == "step" else model.decoder(x[:, None], cache)
                    if repeat:
                        per_pass[name][path].append(1000 * (time.perf_counter() - start) / 150)

    # 2. the dialogue
    pipelines = {}
    for name, model in models.items():
        pipeline = SpeechPipeline.from_folder(args.models)
        pipeline.t2s = model
        pipeline.t2s_step_dtype = None if name == "float32" else getattr(torch, name.split()[0])
        pipelines[name] = pipeline
    first = pipelines["float32"]
    voices = {name: first.voice(args.models / "voices" / f"{voice}.wav") for name, voice in zip("AB", ["flite-slt", "flite-awb"])}
    options = DecodingOptions(seed=0)
    for pipeline in pipelines.values():
        pipeline.dialogue(SCRIPT[:1], voices, options)
    dialogue: dict[str, list[dict[str, float]]] = {name: [] for name in pipelines}
    for _ in range(args.repeats):
        for name, pipeline in pipelines.items():
            start = time.perf_counter()
            wav = pipeline.dialogue(SCRIPT, voices, options)
            seconds = time.perf_counter() - start
            dialogue[name].append({"seconds": seconds, "audio_seconds": len(wav) / pipeline.sample_rate,
                                   **{f"stage_{k}": v for k, v in pipeline.timing.stages.items()}})

    rows = []
    for name in models:
        runs = dialogue[name]
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        rows.append({"variant": name, "t2s_precision": pipelines[name].t2s_description,
                     "ms_per_token": statistics.median(per_token[name]), "ms_per_token_runs": per_token[name],
                     "ms_per_pass_forward": statistics.median(per_pass[name]["forward"]),
                     "ms_per_pass_step": statistics.median(per_pass[name]["step"]),
                     **{f"dialogue_{k}": v for k, v in median.items()},
                     "dialogue_rtf": median["seconds"] / median["audio_seconds"], "dialogue_runs": runs})
    print(f"{replaced} linear layers converted; {args.threads} torch threads, medians of {args.repeats} "
          f"(torch {torch.__version__}, {platform.processor() or platform.machine()})\n")
    print("| text-to-semantic | ms / pass: forward / step | ms / token | dialogue wall (s) | text-to-semantic (s) | "
          "SoundStorm (s) | codec (s) | RTF |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['t2s_precision']} | {row['ms_per_pass_forward']:.2f} / {row['ms_per_pass_step']:.2f} | "
              f"{row['ms_per_token']:.2f} | {row['dialogue_seconds']:.2f} | "
              f"{row.get('dialogue_stage_text_to_semantic', 0):.2f} | {row.get('dialogue_stage_soundstorm', 0):.2f} | "
              f"{row.get('dialogue_stage_codec', 0):.2f} | {row['dialogue_rtf']:.3f} |")
    for row in rows[1:]:
        name, measured = row["variant"], fidelity[row["variant"]]
        print(f"\n{name}: speed-up {rows[0]['ms_per_token'] / row['ms_per_token']:.2f}x per token, "
              f"{rows[0]['dialogue_seconds'] / row['dialogue_seconds']:.2f}x the dialogue; fidelity over "
              f"{measured['positions']} test positions: top-1 agreement {measured['top1_agreement']:.4f}, "
              f"mean KL {measured['mean_kl']:.2e} nats, largest logit difference "
              f"{measured['max_abs_logit_difference']:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"models": str(args.models), "threads": args.threads, "repeats": args.repeats,
                                         "layers_converted": replaced, "fidelity": fidelity, "rows": rows,
                                         "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
