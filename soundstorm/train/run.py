"""`soundstorm train RECIPE --out DIR`: the command line of the training loop.

    soundstorm train recipes/soundstorm-small.toml --out runs/small
    torchrun --nproc_per_node 2 -m soundstorm.cli train recipes/soundstorm-small.toml --out runs/small
    soundstorm train recipes/soundstorm-small.toml --out runs/small --set optimizer.lr=1e-3 --max-minutes 50

Running the same command again resumes from the newest checkpoint in --out. A run whose --out
is gone (a new machine) goes on from a committed copy of its model folder:

    soundstorm train RECIPE --out runs/small --init-from models/carry/small --start-step 6000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundstorm.train.recipe import Recipe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", type=Path, help="a TOML recipe (see recipes/)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, exported models, logs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe field (TOML value), e.g. --set optimizer.lr=1e-3; repeatable")
    parser.add_argument("--until-step", type=int, help="stop (with a checkpoint) at this step, to resume later")
    parser.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this much time")
    parser.add_argument("--init-from", type=Path, help="a model folder whose weights a new run starts from "
                        "(ignored when --out holds a checkpoint to resume)")
    parser.add_argument("--start-step", type=int, metavar="N",
                        help="with --init-from: the step that model's run had reached; training goes on from there on "
                             "the recipe's schedule and max_steps, with fresh optimizer moments and the learning rate "
                             "re-warmed over optimizer.warmup_steps (a run carried to a new machine as its model folder)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: the local GPU under torchrun, else cpu)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from soundstorm.train.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = Recipe.load(args.recipe, args.overrides)
    trainer = Trainer(recipe, args.out, device=args.device, progress=False if args.quiet else None,
                      until_step=args.until_step, max_minutes=args.max_minutes, init_from=args.init_from,
                      start_step=args.start_step)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    if trainer.context.is_main:
        state = "stopped" if summary["stopped_early"] else "finished"
        print(f"training {state} at step {summary['step']}; best validation loss "
              f"{summary['best_valid_loss']} at step {summary['best_step']}; models in {args.out}", file=sys.stderr)
    return 0
