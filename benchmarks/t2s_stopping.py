"""Does the text-to-semantic model stop where the speech ends? Generated against true lengths
on held-out utterances, for one or more models side by side.

    .venv/bin/python benchmarks/t2s_stopping.py data/synth-tokens-9b0328cc931f \
        models/demo/t2s runs/t2s-eos/model --utterances 40 --threads 2 --json docs/t2s_stopping.json

For each utterance of the cache's valid split: its text, decoded greedily (temperature 0) and
sampled (temperature 0.8, top-k 50, the pipeline's defaults; one seed per utterance, the same for
every model), and with --eos-threshold each also stopping once p(EOS) reaches a threshold.
Reported per model and mode: how often decoding ended by EOS rather than at the length bound, and
the median and 10th-90th percentiles of generated / true length. A model that never learned EOS
runs to its bound (5.35x with the old 8 per symbol + 50); a good one stays near 1.
The utterances are those the t2s task trains on (TextSemanticDataset: a speakable transcript).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.data.cache import TokenCache  # noqa: E402
from soundstorm.text.model import TextToSemantic  # noqa: E402
from soundstorm.text.symbols import TextSymbols  # noqa: E402
from soundstorm.train.t2s_task import TextSemanticDataset  # noqa: E402

MODES = {"greedy": {"temperature": 0.0, "top_k": None}, "sampled": {"temperature": 0.8, "top_k": 50}}


def decoding_modes(eos_thresholds: list[float]) -> dict[str, dict[str, float | None]]:
    """Greedy and sampled, each as it is and with each EOS probability threshold."""
    modes: dict[str, dict[str, float | None]] = {}
    for name, options in MODES.items():
        modes[name] = dict(options)
        for threshold in eos_thresholds:
            modes[f"{name}, p(EOS) >= {threshold:g}"] = {**options, "eos_threshold": threshold}
    return modes


def measure(model: TextToSemantic, items: list[tuple[list[int], int]],
            modes: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float]]:
    results = {}
    for mode, options in modes.items():
        ratios, by_eos = [], 0
        for k, (ids, true_length) in enumerate(items):
            text = torch.tensor(ids)
            _, most = model.config.length_bounds(len(ids))
            generator = torch.Generator().manual_seed(k)
            length = len(model.generate(text, generator=generator, **options))  # type: ignore[arg-type]
            by_eos += length < most
            ratios.append(length / true_length)
        r = np.array(ratios)
        results[mode] = {"stopped_by_eos": by_eos / len(items), "median_length_ratio": float(np.median(r)),
                         "p10_length_ratio": float(np.percentile(r, 10)), "p90_length_ratio": float(np.percentile(r, 90))}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache", type=Path, help="a token cache with transcripts and semantic tokens")
    parser.add_argument("models", type=Path, nargs="+", help="text-to-semantic model folders")
    parser.add_argument("--utterances", type=int, default=40)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--eos-threshold", type=float, nargs="*", default=[],
                        help="also decode with these EOS probability thresholds (TextToSemantic.generate)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = TokenCache(args.cache)
    models = {str(path): TextToSemantic.from_pretrained(path).eval().float() for path in args.models}
    units = {m.config.text_units for m in models.values()}
    if len(units) != 1:
        raise SystemExit(f"the models read different text units: {sorted(units)}")
    symbols = TextSymbols(units.pop())
    dataset = TextSemanticDataset(cache, args.split, symbols, max_tokens=sys.maxsize)
    items = [(dataset.texts[k], len(cache.semantic(dataset.positions[k])))  # type: ignore[arg-type]
             for k in range(min(args.utterances, len(dataset)))]
    report = {"cache": str(args.cache), "split": args.split, "utterances": len(items),
              "models": {name: measure(model, items, decoding_modes(args.eos_threshold)) for name, model in models.items()}}
    print(f"{len(items)} utterances of {args.cache} ({args.split})\n")
    print("| model | decoding | stopped by EOS | median generated / true length | 10th-90th percentile |")
    print("|---|---|---:|---:|---:|")
    for name, modes in report["models"].items():
        for mode, r in modes.items():
            print(f"| {name} | {mode} | {r['stopped_by_eos']:.0%} | {r['median_length_ratio']:.2f} | "
                  f"{r['p10_length_ratio']:.2f}-{r['p90_length_ratio']:.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
