"""A real uvicorn server on a free loopback port, in a thread of the test process (so a test can
hold the generation worker at a gate and see the queue fill)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from soundstorm.text.pipeline import SpeechPipeline


class LiveServer:
    def __init__(self, app: FastAPI) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class Gate:
    """Holds the pipeline's render (the SoundStorm stage) until opened: requests pile up behind it."""

    def __init__(self, pipeline: SpeechPipeline) -> None:
        self.open_event, self.entered = threading.Event(), threading.Event()
        self.open_event.set()
        render: Callable[..., Any] = pipeline.render

        def gated(*args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            if not self.open_event.wait(60):
                raise RuntimeError("the gate was never opened")
            return render(*args, **kwargs)

        pipeline.render = gated  # type: ignore[method-assign]

    def close(self) -> None:
        self.entered.clear()
        self.open_event.clear()

    def open(self) -> None:
        self.open_event.set()
