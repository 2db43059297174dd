"""The generation queue: requests wait in a bounded queue for one worker thread, which takes
every request waiting (up to max_batch) and decodes their SoundStorm segments together.

Generation never runs on the event loop; the queue never grows past max_pending (submit raises
QueueFull, answered with 503). A request that fails (an unknown word, a silent prompt) fails
alone: its own preparation raises, and a batch that fails as a whole is rendered again request
by request. Each segment samples from its own seeded generator, so a request's audio does not
depend on what it was batched with.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from soundstorm.text.pipeline import Plan, SpeechPipeline, Trace

log = logging.getLogger("soundstorm.serve")


class QueueFull(RuntimeError):
    """Every queue slot is taken: come back later."""


@dataclass
class Result:
    wav: np.ndarray  # float32 [N] at the pipeline's sample rate
    trace: Trace
    queue_seconds: float  # waiting for the worker
    generation_seconds: float  # the batch it was decoded in, from preparation to audio
    batch_size: int  # requests in that batch


@dataclass
class _Job:
    prepare: Callable[[], Plan]  # runs on the worker: voice prompts and text-to-semantic
    future: Future[Result]
    submitted: float


class GenerationQueue:
    def __init__(self, pipeline: SpeechPipeline, max_pending: int = 16, max_batch: int = 8,
                 batch_wait_s: float = 0.01) -> None:
        self.pipeline, self.max_batch, self.batch_wait_s = pipeline, max_batch, batch_wait_s
        self.max_pending = max_pending
        self._jobs: queue.Queue[_Job] = queue.Queue(maxsize=max_pending)
        self._stopping = threading.Event()
        self._busy = threading.Event()
        self._thread = threading.Thread(target=self._work, name="soundstorm-generation", daemon=True)
        self.completed = 0
        self.batches = 0

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the batch in progress; requests still waiting are cancelled."""
        self._stopping.set()
        self._thread.join(timeout)
        while True:
            try:
                self._jobs.get_nowait().future.cancel()
            except queue.Empty:
                break

    @property
    def pending(self) -> int:
        return self._jobs.qsize()

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def submit(self, prepare: Callable[[], Plan]) -> Future[Result]:
        if self._stopping.is_set():
            raise QueueFull("the server is shutting down")
        job = _Job(prepare, Future(), time.perf_counter())
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self.max_pending} requests are already waiting; try again shortly") from None
        return job.future

    # ------------------------------------------------------------------ the worker thread

    def _next_batch(self) -> list[_Job]:
        try:
            batch = [self._jobs.get(timeout=0.1)]
        except queue.Empty:
            return []
        deadline = time.perf_counter() + self.batch_wait_s
        while len(batch) < self.max_batch:
            try:  # take what is waiting at once; wait a little only while nothing is
                batch.append(self._jobs.get(timeout=max(0.0, deadline - time.perf_counter())))
            except queue.Empty:
                break
        return batch

    def _work(self) -> None:
        while not self._stopping.is_set():
            batch = [job for job in self._next_batch() if job.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            self._busy.set()
            try:
                self._run(batch)
            finally:
                self._busy.clear()

    def _run(self, batch: list[_Job]) -> None:
        started = time.perf_counter()
        ready: list[tuple[_Job, Plan]] = []
        for job in batch:
            try:
                ready.append((job, job.prepare()))
            except Exception as error:  # noqa: BLE001 - the request's own failure, handed to it
                job.future.set_exception(error)
        if not ready:
            return
        traces = [Trace() for _ in ready]
        try:
            wavs = self.pipeline.render([plan for _, plan in ready], self.max_batch, traces)
        except Exception as error:
            if len(ready) == 1:
                ready[0][0].future.set_exception(error)
                return
            log.warning("a batch of %d failed; rendering its requests one by one", len(ready), exc_info=True)
            for job, plan in ready:
                self._run_alone(job, plan, started)
            return
        finished = time.perf_counter()
        self.batches += 1
        for (job, _), wav, trace in zip(ready, wavs, traces):
            self.completed += 1
            job.future.set_result(Result(wav, trace, started - job.submitted, finished - started, len(ready)))

    def _run_alone(self, job: _Job, plan: Plan, started: float) -> None:
        trace = Trace()
        try:
            wav = self.pipeline.render([plan], self.max_batch, [trace])[0]
        except Exception as error:  # noqa: BLE001
            job.future.set_exception(error)
            return
        self.completed += 1
        job.future.set_result(Result(wav, trace, started - job.submitted, time.perf_counter() - started, 1))

