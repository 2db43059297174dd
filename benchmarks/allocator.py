"""glibc's malloc as it comes against keep_freed_memory() (soundstorm/allocator.py), side by side.

    .venv/bin/python benchmarks/allocator.py --rounds 5 --json docs/allocator.json

Three workloads, each in a process of its own per setting (a process's malloc settings cannot be
undone), the two settings alternating round by round so that the machine's noise falls on both:

- pass: one SoundStorm forward pass of the bundled model (models/demo/soundstorm, float32) over
  a dialogue's guided batch, [6, 320] frames;
- train: one optimizer step (forward, backward, AdamW) of a model of the bundled size on random
  tokens, [8, 400] frames, float32;
- dialogue: benchmarks/dialogue_speed.py's six turns through the whole pipeline (`auto`).

Each child reports its median seconds per iteration and the minor page faults per iteration
(getrusage); the table gives the median over rounds of each, and the ratio default / kept.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.allocator import OPT_OUT, keep_freed_memory  # noqa: E402

WORKLOADS = ("pass", "train", "dialogue")
SETTINGS = ("default", "kept")


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(step: Callable[[], None], iterations: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):  # first-call allocations and glibc's thresholds settle here
        step()
    seconds, counts = [], []
    for _ in range(iterations):
        before, start = faults(), time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
        counts.append(faults() - before)
    return {"seconds": statistics.median(seconds), "faults": statistics.median(counts)}


def child(workload: str, iterations: int, threads: int) -> dict[str, float]:
    from soundstorm import SoundStorm

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = SoundStorm.from_pretrained(ROOT / "models" / "demo" / "soundstorm").float()
    config = model.config
    if workload == "pass":
        model.eval()
        codes = torch.randint(0, config.codebook_size, (6, 320, config.num_quantizers))  # [B, T, Q]
        condition = model.embed_condition(torch.randint(0, config.semantic_vocab_size, (6, 160)), 320)

        def step() -> None:
            with torch.inference_mode():
                model.hidden_states(codes, condition, None)

        return measure(step, iterations, warmup=3)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    codes = torch.randint(0, config.codebook_size, (8, 400, config.num_quantizers))
    semantic = torch.randint(0, config.semantic_vocab_size, (8, 200))

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(codes, semantic_tokens=semantic).loss.backward()
        optimizer.step()

    return measure(train_step, iterations, warmup=2)


def run_child(workload: str, setting: str, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    env[OPT_OUT] = "default" if setting == "default" else "keep"
    if workload == "dialogue":
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "dialogue.json"
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dialogue_speed.py"), "--variants", "auto",
                            "--repeats", str(args.dialogue_repeats), "--threads", str(args.threads),
                            "--json", str(out)], env=env, check=True, stdout=subprocess.DEVNULL)
            row = json.loads(out.read_text())["rows"][0]
        return {"seconds": row["seconds"], "soundstorm_seconds": row["stage_soundstorm"], "rtf": row["rtf"]}
    result = subprocess.run([sys.executable, __file__, "--child", workload, "--iterations", str(args.iterations),
                             "--threads", str(args.threads)], env=env, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10, help="passes or steps per child")
    parser.add_argument("--dialogue-repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=WORKLOADS[:2], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kept = keep_freed_memory()  # respects SOUNDSTORM_MALLOC=default
        print(json.dumps({**child(args.child, args.iterations, args.threads), "kept": kept}))
        return 0

    results: dict[str, dict[str, list[dict[str, float]]]] = {w: {s: [] for s in SETTINGS} for w in args.workloads}
    for round_ in range(args.rounds):
        for workload in args.workloads:
            for setting in SETTINGS if round_ % 2 == 0 else SETTINGS[::-1]:
                results[workload][setting].append(run_child(workload, setting, args))
                print(f"round {round_ + 1} {workload} {setting}: {results[workload][setting][-1]}", file=sys.stderr)

    print(f"\nglibc malloc as it comes against keep_freed_memory(), {args.threads} threads, medians of "
          f"{args.rounds} rounds (torch {torch.__version__}):\n")
    print("| workload | default s | kept s | speed-up | minor faults per iteration, default / kept |")
    print("|---|---:|---:|---:|---:|")
    summary = {}
    for workload, by_setting in results.items():
        medians = {s: {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "kept"}
                   for s, rows in by_setting.items()}
        summary[workload] = medians
        default, kept = medians["default"], medians["kept"]
        fault_cell = (f"{default['faults']:,.0f} / {kept['faults']:,.0f}" if "faults" in default else "")
        print(f"| {workload} | {default['seconds']:.3f} | {kept['seconds']:.3f} | "
              f"{default['seconds'] / kept['seconds']:.2f}x | {fault_cell} |")
        if workload == "dialogue":
            print(f"| dialogue, SoundStorm stage | {default['soundstorm_seconds']:.3f} | {kept['soundstorm_seconds']:.3f} | "
                  f"{default['soundstorm_seconds'] / kept['soundstorm_seconds']:.2f}x | |")
            print(f"| dialogue, real-time factor | {default['rtf']:.3f} | {kept['rtf']:.3f} | | |")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rounds": args.rounds, "torch": torch.__version__,
                                         "medians": summary, "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
