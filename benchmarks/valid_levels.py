"""SoundStorm models side by side on one token cache's validation split, level by level.

    .venv/bin/python benchmarks/valid_levels.py --cache data/synth-tokens-9b54fd99a7a8 \
        --models models/demo/soundstorm runs/ss-all/best runs/ss-l4/best --train-levels 4 --threads 2

Every model is scored by the training task's own validation (`SoundStormTask.validate`: masked-
token loss and accuracy per level, under bf16 autocast as in training) on the same batches
with the same masks, so the columns compare directly. `--train-levels N` draws the masks'
level from the first N levels only (options.train_levels): the way to compare a model trained
on the first levels with one trained on all, on the levels both were trained for.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from soundstorm import SoundStorm
from soundstorm.train.distributed import DistributedContext
from soundstorm.train.recipe import Recipe
from soundstorm.train.task import build_task

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "demo" / "soundstorm.toml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="a token cache (soundstorm corpus tokenize)")
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="SoundStorm model folders")
    parser.add_argument("--train-levels", type=int, help="score the first N levels only (default: all)")
    parser.add_argument("--batches", type=int, default=50, help="validation batches (default 50, the recipe's)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [f'data.cache="{args.cache}"', f"schedule.valid_batches={args.batches}", "data.num_workers=0"]
    if args.train_levels is not None:
        overrides.append(f"options.train_levels={args.train_levels}")
    task = build_task(Recipe.load(RECIPE, overrides), DistributedContext.from_env("cpu"))
    results = {}
    for path in args.models:
        model = SoundStorm.from_pretrained(path).float().eval()
        results[str(path)] = task.validate({"model": model}, task.valid_batches())
    keys = sorted({k for metrics in results.values() for k in metrics},
                  key=lambda k: (k.split("/")[0], int(k.rsplit("_", 1)[1]) if "/" in k else 0))
    print("| metric | " + " | ".join(str(p) for p in args.models) + " |")
    print("|---|" + "---:|" * len(args.models))
    for key in keys:
        print(f"| {key} | " + " | ".join(f"{results[str(p)].get(key, float('nan')):.4f}" for p in args.models) + " |")
    if args.json:
        args.json.write_text(json.dumps({"cache": str(args.cache), "train_levels": args.train_levels,
                                         "batches": args.batches, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
