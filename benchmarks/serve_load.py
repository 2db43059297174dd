"""Load test of `soundstorm serve` on loopback: requests per second, latency percentiles, 503s
and the server's peak memory under concurrent clients, for each --max-batch side by side.

    .venv/bin/python benchmarks/serve_load.py --requests 48 --concurrency 8 --max-batch 1 8 \
        --json docs/serve_load.json

Each configuration starts its own `soundstorm serve` process on the same models folder (by
default the bundled models/demo; without a trained SoundStorm there, a folder of the bundled
codec and semantic tokenizer with a randomly initialised SoundStorm of the demo recipe's size,
which decodes at the same speed). The clients send voice-conversion requests (/api/resynth of
a held-out utterance in a bundled voice: fixed lengths, no text model needed), each client
back to back, --requests in all, after --warmup requests that are not counted. Then an
overload round sends --overload-concurrency clients at a queue of --overload-pending places
and counts the 503s: the server must refuse, not grow. Memory is the server process's RSS,
sampled every 20 ms; "growth" is the peak after the overload round minus the peak after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Round:
    max_batch: int
    concurrency: int
    requests: int
    ok: int
    refused_503: int
    other_errors: int
    seconds: float
    requests_per_second: float
    audio_seconds_per_second: float
    latency_p50: float
    latency_p90: float
    latency_p99: float
    mean_batch: float
    rss_after_warmup_mb: float
    rss_peak_mb: float
    overload_requests: int = 0
    overload_ok: int = 0
    overload_503: int = 0
    overload_other: int = 0
    rss_after_overload_mb: float = 0.0


def models_folder(requested: Path | None, scratch: Path) -> tuple[Path, str]:
    if requested is not None:
        return requested, str(requested)
    demo = ROOT / "models" / "demo"
    if (demo / "soundstorm").is_dir():
        return demo, "models/demo (trained)"
    import torch

    from soundstorm import SoundStorm, SoundStormConfig
    from soundstorm.codecs import load_codec
    from soundstorm.semantic.kmeans_tokenizer import load_kmeans_tokenizer

    codec, semantic = load_codec(f"soundstream:{demo / 'codec'}"), load_kmeans_tokenizer(demo / "semantic")
    folder = scratch / "models"
    folder.mkdir()
    for name in ("codec", "semantic", "voices"):
        if (demo / name).exists():
            os.symlink(demo / name, folder / name)
    torch.manual_seed(0)
    ratio = round(codec.frame_rate / semantic.rate)
    SoundStorm(SoundStormConfig(codebook_size=codec.codebook_size, num_quantizers=codec.num_quantizers,
                                semantic_vocab_size=semantic.vocab_size, semantic_rate_ratio=ratio,
                                dim=256, depth=6, heads=4)).save_pretrained(folder / "soundstorm")
    if not (folder / "voices").exists():
        (folder / "voices").mkdir()
        subprocess.run(["flite", "-voice", "slt", "-t", "This is the default voice of the demo, three seconds long.",
                        "-o", str(folder / "voices" / "default.wav")], check=True)
    return folder, "bundled codec + semantic, random SoundStorm of the demo size (dim 256, depth 6)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, models: Path, max_batch: int, max_pending: int, threads: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "soundstorm.cli", "serve", "--models", str(models), "--port", str(self.port),
                   "--max-batch", str(max_batch), "--max-pending", str(max_pending), "--threads", str(threads)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.peak = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        process = psutil.Process(self.process.pid)
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, process.memory_info().rss / 2**20)
            except psutil.Error:
                return
            time.sleep(0.02)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.process.stderr.read().decode() if self.process.stderr else ''}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    self._sampler.start()
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start within 120 s")

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self.process.terminate()
        self.process.wait(30)


async def send(client: httpx.AsyncClient, source: bytes) -> tuple[int, float, float, int]:
    start = time.perf_counter()
    response = await client.post("/api/resynth", files={"source": ("source.wav", source, "audio/wav")},
                                 data={"voice_name": "default"})
    latency = time.perf_counter() - start
    audio = float(response.headers.get("x-audio-seconds", 0.0))
    return response.status_code, latency, audio, int(response.headers.get("x-batch-size", 0))


async def load(url: str, source: bytes, total: int, concurrency: int,
               retry_after_s: float | None = None) -> tuple[list[tuple[int, float, float, int]], float]:
    """`total` requests from `concurrency` clients, each back to back; every response is in the
    list. With `retry_after_s` the clients behave like polite ones: a 503 is resent after that
    pause until it is served, so `total` responses are 200 and the rest of the list are refusals
    (without it, a refusal uses up a request, and how many are served depends on the machine)."""
    results: list[tuple[int, float, float, int]] = []
    remaining = [total]

    async def client_loop(client: httpx.AsyncClient) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            response = await send(client, source)
            results.append(response)
            while retry_after_s is not None and response[0] == 503:
                await asyncio.sleep(retry_after_s)
                response = await send(client, source)
                results.append(response)

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        return results, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_round(models: Path, source: bytes, max_batch: int, args: argparse.Namespace) -> Round:
    with Server(models, max_batch, max(args.concurrency, 1) * 2, args.threads) as server:
        asyncio.run(load(server.url, source, args.warmup, min(args.warmup, args.concurrency) or 1))
        after_warmup = server.peak
        results, seconds = asyncio.run(load(server.url, source, args.requests, args.concurrency))
        ok = [r for r in results if r[0] == 200]
        latencies = [r[1] for r in ok]
        measured = Round(
            max_batch=max_batch, concurrency=args.concurrency, requests=len(results), ok=len(ok),
            refused_503=sum(r[0] == 503 for r in results), other_errors=sum(r[0] not in (200, 503) for r in results),
            seconds=seconds, requests_per_second=len(ok) / seconds, audio_seconds_per_second=sum(r[2] for r in ok) / seconds,
            latency_p50=percentile(latencies, 0.5), latency_p90=percentile(latencies, 0.9),
            latency_p99=percentile(latencies, 0.99), mean_batch=statistics.fmean(r[3] for r in ok) if ok else 0.0,
            rss_after_warmup_mb=after_warmup, rss_peak_mb=server.peak,
        )
    with Server(models, max_batch, args.overload_pending, args.threads) as server:
        asyncio.run(load(server.url, source, args.warmup, 1))
        results, _ = asyncio.run(load(server.url, source, args.overload_concurrency * 2, args.overload_concurrency))
        measured.overload_requests = len(results)
        measured.overload_ok = sum(r[0] == 200 for r in results)
        measured.overload_503 = sum(r[0] == 503 for r in results)
        measured.overload_other = sum(r[0] not in (200, 503) for r in results)
        measured.rss_after_overload_mb = server.peak
        health = httpx.get(f"{server.url}/api/health", timeout=10)
        if health.status_code != 200:
            raise RuntimeError("the server stopped answering after the overload round")
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, help="models folder (default: see above)")
    parser.add_argument("--source", type=Path, help="the recording to resynthesize (default: a held-out synthetic one)")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--overload-concurrency", type=int, default=24)
    parser.add_argument("--overload-pending", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        models, described = models_folder(args.models, Path(scratch))
        source_path = args.source
        if source_path is None:
            source_path = Path(scratch) / "source.wav"
            subprocess.run(["flite", "-voice", "awb", "-t", "The birch canoe slid on the smooth planks of the lake.",
                            "-o", str(source_path)], check=True)
        source = source_path.read_bytes()
        rounds = []
        for max_batch in args.max_batch:
            print(f"max_batch {max_batch} ...", file=sys.stderr)
            rounds.append(run_round(models, source, max_batch, args))

    print(f"models: {described}; {args.concurrency} clients, {args.requests} requests; server threads {args.threads}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    print("| max batch | req/s | audio s/s | p50 s | p90 s | p99 s | mean batch | 503 | RSS peak MB | "
          "overload: ok / 503 / other | RSS after overload MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rounds:
        print(f"| {r.max_batch} | {r.requests_per_second:.2f} | {r.audio_seconds_per_second:.2f} | {r.latency_p50:.2f} | "
              f"{r.latency_p90:.2f} | {r.latency_p99:.2f} | {r.mean_batch:.1f} | {r.refused_503} | {r.rss_peak_mb:.0f} | "
              f"{r.overload_ok} / {r.overload_503} / {r.overload_other} | {r.rss_after_overload_mb:.0f} |")
    if len(rounds) > 1:
        print(f"\nthroughput ratio, max batch {rounds[-1].max_batch} / {rounds[0].max_batch}: "
              f"{rounds[-1].requests_per_second / rounds[0].requests_per_second:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"models": described, "rounds": [asdict(r) for r in rounds]}, indent=2) + "\n")
    failed = any(r.other_errors or r.overload_other for r in rounds)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
