"""`soundstorm bench`: SoundStorm against the autoregressive baseline, for the same audio.

    soundstorm bench --seconds 5 10 30 60 --batch 1 8 --out docs/bench          # CPU, random weights
    soundstorm bench --soundstorm runs/small/model --ar runs/ar-small/model --device cuda --bf16

Both models generate every level of the same number of frames from the same semantic tokens:
SoundStorm with its parallel schedule (sum(steps) forward passes: 23 for Q = 8 with the paper's
[16, 1, ...]), the AR baseline token by token with its KV cache (T * Q passes). Speed does not
depend on the weights, so without checkpoints both run at random initialisation with the
sizes of recipes/soundstorm-small.toml and recipes/ar-small.toml (--preset / AR flags change
them). Per case: wall time (median of --repeats, runners interleaved), real-time factor
(seconds per generated audio second), forward passes, peak memory (CUDA: allocator peak;
CPU: the process's resident-set high-water mark during the run, above its level before).
Writes a markdown table, JSON and a log-log PNG plot of time against duration to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from soundstorm.atomic import atomic_write_text

FRAME_RATE = 50.0  # the codec's frames per second for the durations (50 Hz, as in the paper)


@dataclass
class BenchResult:
    runner: str
    seconds_of_audio: float
    batch: int
    wall: list[float]
    forward_passes: int
    peak_memory_mb: float

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def rtf(self) -> float:
        """Seconds of compute per second of generated audio (all examples of the batch)."""
        return self.median / (self.seconds_of_audio * self.batch)


class PeakMemory:
    """Peak memory of a block, in MB: CUDA allocator peak, or the CPU resident set's peak above
    its level at entry (sampled every millisecond from /proc/self/statm)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0

    @staticmethod
    def _rss_mb() -> float:
        try:
            with open("/proc/self/statm") as handle:
                return int(handle.read().split()[1]) * 4096 / 2**20
        except OSError:  # not Linux: no figure
            return 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            self._base = self._rss_mb()
            self._high = self._base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self._high = max(self._high, self._rss_mb())

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20 - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self._high, self._rss_mb()) - self._base


@dataclass
class Runner:
    name: str
    run: Callable[[Tensor, int], int]  # (semantic [B, S], frames) -> forward passes made
    parameters: int


@dataclass
class Setup:
    runners: list[Runner]
    semantic_rate_ratio: int
    semantic_vocab_size: int


def build_runners(args: argparse.Namespace, device: torch.device) -> Setup:
    """SoundStorm and (unless --no-ar) the AR baseline, ready to time."""
    from soundstorm import SoundStorm, SoundStormConfig
    from soundstorm.baselines import ARAcousticConfig, ARAcousticModel
    from soundstorm.masking import default_steps
    from soundstorm.model.step_linear import use_step_weights

    torch.manual_seed(0)
    if args.soundstorm:
        soundstorm = SoundStorm.from_pretrained(args.soundstorm)
    else:
        soundstorm = SoundStorm(SoundStormConfig.preset(args.preset, codebook_size=args.codebook_size,
                                                        num_quantizers=args.num_quantizers,
                                                        semantic_vocab_size=args.semantic_vocab_size))
    config = soundstorm.config
    if args.ar:
        ar = ARAcousticModel.from_pretrained(args.ar)
    else:
        ar = ARAcousticModel(ARAcousticConfig(
            codebook_size=config.codebook_size, num_quantizers=config.num_quantizers,
            coarse_levels=max(1, config.num_quantizers // 2), semantic_vocab_size=config.semantic_vocab_size,
            semantic_rate_ratio=config.semantic_rate_ratio, dim=args.ar_dim or config.dim,
            depth=args.ar_depth or config.depth, heads=config.heads))
    soundstorm.to(device).eval()
    ar.to(device).eval()
    if args.step_weights:  # the AR baseline's one-position passes read float16 weight copies
        use_step_weights(ar)
    steps = args.steps or default_steps(config.num_quantizers)
    passes = [0]
    soundstorm.conformer.register_forward_hook(lambda *_: passes.__setitem__(0, passes[0] + 1))

    def autocast(enabled: bool) -> torch.autocast:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    def run_soundstorm(semantic: Tensor, frames: int) -> int:
        before = passes[0]
        with torch.inference_mode(), autocast(args.bf16):
            soundstorm.generate(semantic_tokens=semantic, num_frames=frames, steps=steps, temperature=1.0)
        return passes[0] - before

    def run_ar(semantic: Tensor, frames: int) -> int:
        with torch.inference_mode(), autocast(args.bf16 and not args.ar_fp32):
            return ar.generate(semantic, num_frames=frames, temperature=1.0, top_k=None).forward_passes

    runners = [Runner("soundstorm", run_soundstorm, soundstorm.num_parameters())]
    if not args.no_ar:
        runners.append(Runner("ar baseline", run_ar, ar.num_parameters()))
    return Setup(runners, config.semantic_rate_ratio, config.semantic_vocab_size)


def benchmark(setup: Setup, seconds: list[float], batches: list[int], repeats: int, device: torch.device,
              progress: bool) -> list[BenchResult]:
    ratio, vocab = setup.semantic_rate_ratio, setup.semantic_vocab_size
    results: list[BenchResult] = []
    for batch in batches:
        for duration in seconds:
            frames = round(duration * FRAME_RATE)
            semantic = torch.randint(0, vocab, (batch, -(-frames // ratio)), device=device)
            for runner in setup.runners:  # warm-up at a small size: allocations, kernel choice
                runner.run(semantic[:, :2], 2 * ratio)
            cases = {r.name: BenchResult(r.name, duration, batch, [], 0, 0.0) for r in setup.runners}
            for _ in range(repeats):
                for runner in setup.runners:
                    case = cases[runner.name]
                    with PeakMemory(device) as memory:
                        start = time.perf_counter()
                        case.forward_passes = runner.run(semantic, frames)
                        if device.type == "cuda":
                            torch.cuda.synchronize(device)
                        case.wall.append(time.perf_counter() - start)
                    case.peak_memory_mb = max(case.peak_memory_mb, memory.peak_mb)
            results += cases.values()
            if progress:
                for case in cases.values():
                    print(f"{duration:g} s x {batch}: {case.runner} {case.median:.3f} s, {case.forward_passes} passes",
                          file=sys.stderr, flush=True)
    return results


def to_markdown(results: list[BenchResult], header: str) -> str:
    lines = [header, "", "| audio | batch | runner | forward passes | median s | RTF | peak memory MB | SoundStorm speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    by_case = {(r.seconds_of_audio, r.batch, r.runner): r for r in results}
    for r in results:
        ours = by_case.get((r.seconds_of_audio, r.batch, "soundstorm"))
        speedup = f"{r.median / ours.median:.1f}x" if ours is not None and r.runner != "soundstorm" else "-"
        lines.append(f"| {r.seconds_of_audio:g} s | {r.batch} | {r.runner} | {r.forward_passes} | {r.median:.3f} | "
                     f"{r.rtf:.4f} | {r.peak_memory_mb:.0f} | {speedup} |")
    return "\n".join(lines) + "\n"


def plot(results: list[BenchResult], path: Path, title: str) -> None:
    from soundstorm.plots import pyplot, save_figure

    figure, axes = pyplot().subplots(figsize=(6, 4))
    for runner in dict.fromkeys(r.runner for r in results):
        for batch in sorted({r.batch for r in results}):
            rows = sorted((r for r in results if r.runner == runner and r.batch == batch), key=lambda r: r.seconds_of_audio)
            axes.plot([r.seconds_of_audio for r in rows], [r.median for r in rows], marker="o",
                      linestyle="-" if runner == "soundstorm" else "--", label=f"{runner}, batch {batch}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("generated audio (s)")
    axes.set_ylabel("wall time (s)")
    axes.set_title(title, fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path, dpi=120)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, nargs="+", default=[5, 10, 30, 60], help="durations (default 5 10 30 60)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per case; the median is reported (default 1)")
    parser.add_argument("--soundstorm", type=Path, help="a SoundStorm checkpoint (default: random weights of --preset)")
    parser.add_argument("--ar", type=Path, help="an AR baseline checkpoint (default: random weights, SoundStorm's dims)")
    parser.add_argument("--preset", default="small", help="SoundStorm preset without a checkpoint (default small)")
    parser.add_argument("--codebook-size", type=int, default=1024)
    parser.add_argument("--num-quantizers", type=int, default=8)
    parser.add_argument("--semantic-vocab-size", type=int, default=512)
    parser.add_argument("--ar-dim", type=int, help="AR width (default SoundStorm's)")
    parser.add_argument("--ar-depth", type=int, help="AR depth per stage (default SoundStorm's)")
    parser.add_argument("--steps", type=int, nargs="+", help="SoundStorm iterations per level (default [16, 1, ...])")
    parser.add_argument("--no-ar", action="store_true", help="time SoundStorm only")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for both")
    parser.add_argument("--ar-fp32", action="store_true",
                        help="the AR baseline in float32 even under --bf16: its one-position passes are bound by "
                             "launching ops, which autocast's casts add to (an H100: 1.94 ms a pass in float32, 2.82 ms "
                             "under bf16 autocast; docs/gpu.md), so float32 is its fastest on a GPU")
    parser.add_argument("--step-weights", action="store_true",
                        help="the AR baseline's one-position passes read float16 copies of its weights, as the "
                             "text-to-semantic model's do under --precision auto on a CPU (soundstorm/model/step_linear.py)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, help="write bench.md, bench.json and bench.png into this folder")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    setup = build_runners(args, device)
    results = benchmark(setup, args.seconds, args.batch, args.repeats, device, progress=not args.quiet)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    command = "soundstorm bench " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:])
    parameters = {r.name: r.parameters for r in setup.runners}
    header = (f"    {command}\n\n{name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{'bf16 autocast' if args.bf16 else 'float32'}"
              f"{' (AR baseline: float32)' if args.bf16 and args.ar_fp32 else ''}"
              f"{' (AR baseline: float16 step weights)' if args.step_weights else ''}; parameters: "
              + ", ".join(f"{n} {p / 1e6:.1f}M" for n, p in parameters.items()))
    markdown = to_markdown(results, header)
    print(markdown)
    if args.out:
        atomic_write_text(args.out / "bench.md", markdown)
        payload = {"command": command, "device": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
                   "bf16": args.bf16, "ar_fp32": args.ar_fp32, "step_weights": args.step_weights, "parameters": parameters,
                   "results": [asdict(r) | {"median": r.median, "rtf": r.rtf} for r in results]}
        atomic_write_text(args.out / "bench.json", json.dumps(payload, indent=2) + "\n")
        plot(results, args.out / "bench.png", f"{name}, {'bf16' if args.bf16 else 'fp32'}")
    return 0
