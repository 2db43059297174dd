"""The server's limits, one dataclass (`soundstorm serve --help` lists them as flags)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServerConfig:
    max_text_chars: int = 1000  # a TTS text or a whole dialogue script
    max_turns: int = 20  # dialogue turns
    max_upload_bytes: int = 8 * 2**20  # one uploaded audio file
    max_body_bytes: int = 20 * 2**20  # a whole request: refused with 413 while it is read
    max_source_seconds: float = 30.0  # a recording to resynthesize
    max_pending: int = 16  # requests waiting for the worker; beyond it the server answers 503
    max_batch: int = 8  # SoundStorm segments decoded together
    batch_wait_ms: float = 10.0  # how long the worker waits for more requests to batch with
    request_timeout_s: float = 300.0  # a request still waiting after this gets 504

    def __post_init__(self) -> None:
        for name in ("max_text_chars", "max_turns", "max_upload_bytes", "max_body_bytes", "max_pending", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_source_seconds", "request_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
