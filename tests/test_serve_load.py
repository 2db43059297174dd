"""A bounded load test on loopback (the one of benchmarks/serve_load.py, small): concurrent
clients against a queue too short for them. Every request gets 200 or 503, never anything
else; the server answers afterwards; memory stays bounded while it refuses the overflow."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import httpx
import psutil

from soundstorm.serve.app import create_app
from soundstorm.serve.config import ServerConfig
from soundstorm.text.pipeline import SpeechPipeline
from tests.live_server import LiveServer
from tests.speech_models import needs_flite, write_tiny_models

pytestmark = needs_flite
_spec = importlib.util.spec_from_file_location("serve_load", Path(__file__).parents[1] / "benchmarks" / "serve_load.py")
assert _spec is not None and _spec.loader is not None
serve_load = sys.modules.setdefault("serve_load", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(serve_load)


def test_concurrent_clients_get_200_or_503_and_memory_stays_bounded(tmp_path: Path) -> None:
    models = write_tiny_models(tmp_path / "models")
    source = (models / "voices" / "awb.wav").read_bytes()
    config = ServerConfig(max_pending=3, max_batch=4)
    process = psutil.Process()
    with LiveServer(create_app(SpeechPipeline.from_folder(models), config)) as server:
        warm, _ = asyncio.run(serve_load.load(server.url, source, total=8, concurrency=2))
        assert {status for status, *_ in warm} == {200}
        after_warmup = process.memory_info().rss
        # 12 clients against 3 waiting places and batches of 4: more requests arrive than fit, so
        # some are refused; they retry after a pause (as Retry-After asks), so all 24 are served.
        results, seconds = asyncio.run(serve_load.load(server.url, source, total=24, concurrency=12, retry_after_s=0.2))
        statuses = [status for status, *_ in results]
        assert set(statuses) <= {200, 503} and statuses.count(200) == 24
        assert statuses.count(503) > 0  # it refused the overflow instead of queueing it
        assert max(batch for status, _, _, batch in results if status == 200) > 1  # waiting requests were batched
        assert process.memory_info().rss - after_warmup < 300 * 2**20
        assert httpx.get(f"{server.url}/api/health", timeout=10).json()["pending"] == 0
    latencies = [latency for status, latency, *_ in results if status == 200]
    assert serve_load.percentile(latencies, 0.5) <= serve_load.percentile(latencies, 0.99) < seconds + 1
