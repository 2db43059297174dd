"""Recipes: typed training configurations, written as TOML files in `recipes/`.

    task = "soundstorm"
    seed = 0
    [model]        # the task's model config (for soundstorm: SoundStormConfig fields, or a preset)
    preset = "small"
    [data]         # where batches come from
    cache = "data/synth-tokens"
    [optimizer]    # AdamW, warmup then cosine decay
    lr = 5e-4
    [schedule]     # when to log, validate and checkpoint
    valid_every = 500
    [options]      # task-specific settings (e.g. cond_drop_prob)

Every field is validated on load; unknown fields are errors (a typo must not silently fall back
to a default). The recipe is saved beside every checkpoint, as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_steps: int = 500
    max_steps: int = 20_000
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio at max_steps
    grad_clip: float = 1.0  # max gradient norm; 0 = no clipping
    grad_accum: int = 1  # micro-batches per optimizer step
    ema_decay: float = 0.0  # exponential moving average of the weights; 0 = off
    # bf16 autocast: true, false, or "auto" (on where the device runs bf16 natively: GPUs that
    # support it, CPUs with avx512_bf16 or AMX). Elsewhere bf16 is emulated: a SoundStorm step
    # of the demo recipe ran 27x slower under it than in float32 on an AVX2-only CPU.
    bf16: bool | str = False

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.max_steps < 1 or self.warmup_steps < 0 or self.grad_accum < 1:
            raise ValueError("optimizer: lr must be > 0, max_steps >= 1, warmup_steps >= 0, grad_accum >= 1")
        if not 0.0 <= self.ema_decay < 1.0 or not 0.0 <= self.min_lr_ratio <= 1.0 or self.grad_clip < 0:
            raise ValueError("optimizer: ema_decay must be in [0, 1), min_lr_ratio in [0, 1], grad_clip >= 0")
        if self.bf16 not in (True, False, "auto"):
            raise ValueError(f'optimizer: bf16 must be true, false or "auto", got {self.bf16!r}')
        object.__setattr__(self, "betas", tuple(self.betas))


@dataclass(frozen=True)
class DataConfig:
    cache: str = ""  # token cache folder (soundstorm corpus tokenize) or manifest, by task
    train_split: str | None = "train"
    valid_split: str | None = "valid"
    max_frames: int = 500  # crop length in frames (the paper: up to 30 s)
    batch_size: int = 16
    num_workers: int = 0
    bucket_batches: int = 50
    codec: str | None = None  # codec spec, to decode validation samples for TensorBoard

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_frames < 1 or self.num_workers < 0:
            raise ValueError("data: batch_size and max_frames must be >= 1, num_workers >= 0")


@dataclass(frozen=True)
class ScheduleConfig:
    log_every: int = 10
    valid_every: int = 500
    checkpoint_every: int = 500
    keep_last: int = 3  # checkpoints kept besides the best one
    valid_batches: int = 50  # at most this many validation batches per validation
    sample_every: int = 0  # decoded audio samples to TensorBoard every N steps (needs data.codec); 0 = never

    def __post_init__(self) -> None:
        if min(self.log_every, self.valid_every, self.checkpoint_every, self.keep_last, self.valid_batches) < 1:
            raise ValueError("schedule: every interval and keep_last must be >= 1")


_SECTIONS = {"optimizer": OptimizerConfig, "data": DataConfig, "schedule": ScheduleConfig}


@dataclass(frozen=True)
class Recipe:
    task: str
    model: dict[str, Any] = field(default_factory=dict)  # validated by the task
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    options: dict[str, Any] = field(default_factory=dict)  # validated by the task
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms: exact resume, slower

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "recipe") -> Recipe:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown fields {unknown}; known: {sorted(known)}")
        if "task" not in values:
            raise ValueError(f"{source}: `task` is missing (e.g. task = \"soundstorm\")")
        values = dict(values)
        for name, section_class in _SECTIONS.items():
            section = values.get(name, {})
            if isinstance(section, section_class):
                continue
            if not isinstance(section, dict):
                raise ValueError(f"{source}: [{name}] must be a table")
            section_fields = {f.name for f in dataclasses.fields(section_class)}
            unknown = sorted(set(section) - section_fields)
            if unknown:
                raise ValueError(f"{source}: unknown fields in [{name}]: {unknown}; known: {sorted(section_fields)}")
            try:
                values[name] = section_class(**section)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{source}: {error}") from error
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> Recipe:
        """Read a TOML (or JSON) recipe; overrides are `section.key=value` with TOML values,
        e.g. `optimizer.lr=1e-3`, `data.cache="tokens/"`, `schedule.valid_every=100`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no recipe at {path}: expected a TOML file like those in recipes/")
        text = path.read_text()
        try:
            values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} cannot be parsed: {error}") from error
        for override in overrides or []:
            key, separator, literal = override.partition("=")
            if not separator:
                raise ValueError(f"an override is section.key=value, got {override!r}")
            try:
                value = tomllib.loads(f"value = {literal}")["value"]
            except tomllib.TOMLDecodeError:
                value = literal  # a bare string
            *sections, last = key.strip().split(".")
            target = values
            for section in sections:
                target = target.setdefault(section, {})
            target[last] = value
        return cls.from_dict(values, source=str(path))

    def save(self, path: str | Path) -> None:
        from soundstorm.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
