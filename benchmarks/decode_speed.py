"""Decoding speed, side by side in one run: ours vs soundstorm-pytorch, float32 and bf16 autocast.

    make bench-deps                      # once: soundstorm-pytorch with --no-deps
    .venv/bin/python benchmarks/decode_speed.py --threads 2 --json docs/decode_speed.json

Both models have the same dims (dim 512, depth 6, heads 8, conv kernel 5, Q 8, K 1024, 500
semantic ids at half the frame rate) and make the same number of backbone passes: the paper's
schedule, 16 on level 1 and one on each finer level (23). Each case is run `--repeats` times,
the runners interleaved so that machine noise falls on all of them alike; the table gives
medians. Run it alone: any other load on a 2-core machine distorts every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from soundstorm import SoundStorm, SoundStormConfig  # noqa: E402

FRAME_RATE = 50  # acoustic frames per second (a 50 Hz codec, as in the paper)
CONFIG = SoundStormConfig(
    codebook_size=1024, num_quantizers=8, semantic_vocab_size=500, semantic_rate_ratio=2,
    dim=512, depth=6, heads=8, conv_kernel_size=5,
)
STEPS = [16] + [1] * (CONFIG.num_quantizers - 1)


@dataclass
class Result:
    runner: str
    frames: int
    batch: int
    seconds: list[float]
    forward_passes: int

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def per_audio_second(self) -> float:
        return self.median / (self.batch * self.frames / FRAME_RATE)


def count_passes(module: nn.Module) -> list[int]:
    """A counter of module's forward calls: [count]."""
    counter = [0]
    module.register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


def make_runners(use_peer: bool) -> dict[str, tuple[Callable[[Tensor, bool], object], list[int]]]:
    """name -> (run(semantic_tokens, warmup), pass counter)."""
    torch.manual_seed(0)
    ours = SoundStorm(CONFIG).eval()
    ours_passes = count_passes(ours.conformer)

    def run_ours(semantic: Tensor, bf16: bool, warmup: bool) -> Tensor:
        steps = [1] * CONFIG.num_quantizers if warmup else STEPS
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return ours.generate(semantic_tokens=semantic, steps=steps, temperature=1.0)

    runners = {
        "ours fp32": (lambda s, w: run_ours(s, False, w), ours_passes),
        "ours bf16": (lambda s, w: run_ours(s, True, w), ours_passes),
    }
    if use_peer:
        from peer_soundstorm_pytorch import build_peer, peer_generate

        peer = build_peer(
            codebook_size=CONFIG.codebook_size, num_quantizers=CONFIG.num_quantizers,
            semantic_vocab_size=CONFIG.semantic_vocab_size, dim=CONFIG.dim, depth=CONFIG.depth,
            heads=CONFIG.heads, conv_kernel_size=CONFIG.conv_kernel_size, first_level_steps=STEPS[0],
        )
        peer_passes = count_passes(peer.net.conformer)

        def run_peer(semantic: Tensor, bf16: bool, warmup: bool) -> Tensor:
            peer.steps = 1 if warmup else STEPS[0]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return peer_generate(peer, semantic)

        runners["soundstorm-pytorch fp32"] = (lambda s, w: run_peer(s, False, w), peer_passes)
        runners["soundstorm-pytorch bf16"] = (lambda s, w: run_peer(s, True, w), peer_passes)
    return runners


def benchmark(frames: int, batch: int, repeats: int, runners: dict) -> list[Result]:
    semantic = torch.randint(0, CONFIG.semantic_vocab_size, (batch, frames // CONFIG.semantic_rate_ratio))
    results = {name: Result(name, frames, batch, [], 0) for name in runners}
    for run, _ in runners.values():
        run(semantic, True)  # warm-up: allocations and kernel selection at this shape
    for _ in range(repeats):
        for name, (run, passes) in runners.items():
            before = passes[0]
            start = time.perf_counter()
            run(semantic, False)
            results[name].seconds.append(time.perf_counter() - start)
            results[name].forward_passes = passes[0] - before
    return list(results.values())


def table(results: list[Result]) -> str:
    peer = {(r.frames, r.batch): r for r in results if r.runner == "soundstorm-pytorch fp32"}
    lines = [
        "| audio | batch | runner | passes | median s | s per audio s | speed-up vs soundstorm-pytorch |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        reference = peer.get((r.frames, r.batch))
        speedup = f"{reference.median / r.median:.2f}x" if reference else "-"
        lines.append(
            f"| {r.frames / FRAME_RATE:g} s ({r.frames} frames) | {r.batch} | {r.runner} | "
            f"{r.forward_passes} | {r.median:.2f} | {r.per_audio_second:.3f} | {speedup} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[250, 750, 1500])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true", help="time ours only")
    parser.add_argument("--json", type=Path, help="also write the raw timings here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    runners = make_runners(use_peer=not args.no_peer)
    results: list[Result] = []
    for batch in args.batch:
        for frames in args.frames:
            results += benchmark(frames, batch, args.repeats, runners)
            print("\n".join(table(results).splitlines()[-len(runners):]), file=sys.stderr, flush=True)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}")
    print(table(results))
    if args.json:
        payload = {
            "torch": torch.__version__, "threads": args.threads, "config": CONFIG.to_dict(), "steps": STEPS,
            "results": [asdict(r) | {"median": r.median, "per_audio_second": r.per_audio_second} for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
