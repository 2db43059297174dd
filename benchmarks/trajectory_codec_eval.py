"""Two codec training runs compared at several checkpoints: the paired difference at each, and
their mean with the spread between checkpoints, which a single checkpoint's clip-level error
cannot show.

    .venv/bin/python benchmarks/trajectory_codec_eval.py \\
        --pair 4000 docs/codec-eval/scratch4k-ctl.json docs/codec-eval/scratch4k-voices.json \\
        --pair 5000 docs/codec-eval/scratch5k-ctl.json docs/codec-eval/scratch5k-voices.json \\
        --pair 6300 docs/codec-eval/scratch6k-ctl.json docs/codec-eval/scratch6k-voices.json

Each --pair is a label (the step) and two `soundstorm codec eval` reports, run A's and run B's,
that scored the same clips. Why: a paired difference at one checkpoint has a standard error
from its clips alone (+- 0.01 PESQ on 100 clips), but a codec early in training moves by 0.2
PESQ on one voice in a thousand steps (docs/codec.md, stop 48), so one checkpoint can say B is
ahead and the next that A is. Here, for each split and speaker at the most levels both runs
decoded: the mean paired difference B - A of PESQ and STOI at every checkpoint, then the mean
over checkpoints +- the standard error between checkpoints, and how many checkpoints B led at.
Neighbouring checkpoints of one pair of runs are not independent draws, so that error is a
lower bound on the noise of training; separate seeds are the only full measure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from paired_codec_eval import differences, items_by_split, shared_clips  # this folder is sys.path[0] when the script runs
from paired_eval import mean_and_error

METRICS = ("pesq", "stoi")


def paired_means(a_path: Path, b_path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """(split, speaker or "all") -> metric -> mean over the clips of B - A, at the most levels both decoded."""
    a_run, b_run = (items_by_split(json.loads(path.read_text(encoding="utf-8"))) for path in (a_path, b_path))
    if not any(a_run.values()) or not any(b_run.values()):
        raise SystemExit(f"{a_path} or {b_path} holds no per-clip scores: it predates them; run codec eval again")
    means: dict[tuple[str, str], dict[str, float]] = {}
    for split, a_items in a_run.items():
        b_items = b_run.get(split, {})
        shared = shared_clips(split, a_items, b_items)
        if not shared:
            continue
        level = max((q for q in a_items[shared[0]]["codec"] if q in b_items[shared[0]]["codec"]), key=int)
        speakers = sorted({str(a_items[key]["speaker"]) for key in shared})
        for speaker in ["all", *speakers] if len(speakers) > 1 else ["all"]:
            keys = [key for key in shared if speaker == "all" or str(a_items[key]["speaker"]) == speaker]
            a_scores = [a_items[key]["codec"][level] for key in keys]
            b_scores = [b_items[key]["codec"][level] for key in keys]
            means[split, speaker] = {metric: mean_and_error(differences(a_scores, b_scores, metric))[0] for metric in METRICS}
    return means


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", nargs=3, action="append", required=True, metavar=("LABEL", "A", "B"),
                        help="a checkpoint's label and the codec_eval.json of run A and of run B there")
    args = parser.parse_args()
    labels = [label for label, _, _ in args.pair]
    checkpoints = [paired_means(Path(a), Path(b)) for _, a, b in args.pair]
    rows = [row for row in checkpoints[0] if all(row in c for c in checkpoints)]
    if not rows:
        raise SystemExit("the checkpoints share no split scored by both runs")
    for metric in METRICS:
        print(f"\n{metric.upper()} B - A at each checkpoint (the mean over clips), and over the checkpoints\n")
        print(f"| split | speaker | {' | '.join(labels)} | mean +- error between checkpoints | B ahead at |")
        print(f"|---|---|{'---:|' * len(labels)}---:|---:|")
        for split, speaker in rows:
            values = [c[split, speaker][metric] for c in checkpoints]
            mean, error = mean_and_error(values)
            ahead = sum(value > 0 for value in values)
            cells = " | ".join(f"{value:+.3f}" for value in values)
            print(f"| {split} | {speaker} | {cells} | {mean:+.3f} +- {error:.3f} | {ahead} of {len(values)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
