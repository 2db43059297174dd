"""What the training loop trains: a Task builds modules and data and computes losses.

The loop (soundstorm/train/trainer.py) owns everything common: optimizers, schedules,
gradient accumulation and clipping, autocast, DDP, EMA, checkpoints, logging. A task owns what
differs between SoundStorm, the codec, the semantic tokenizer and the AR baseline. A step runs
the task's phases in order, each with its own optimizer over its own modules (one phase for
most tasks; a GAN has a generator phase and a discriminator phase).
"""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from soundstorm.precision import resolve_training_bf16
from soundstorm.train.distributed import DistributedContext
from soundstorm.train.recipe import Recipe


@dataclass(frozen=True)
class Phase:
    name: str
    modules: tuple[str, ...]  # names of the modules whose parameters this phase optimizes


class Task(ABC):
    def __init__(self, recipe: Recipe, context: DistributedContext) -> None:
        self.recipe = recipe
        self.context = context
        self.bf16 = resolve_training_bf16(recipe.optimizer.bf16, context.device)

    @abstractmethod
    def build_modules(self) -> dict[str, nn.Module]:
        """The modules to train, freshly initialised (the loop seeds torch first)."""

    def phases(self) -> list[Phase]:
        return [Phase("main", ("model",))]

    # Fields of the exported config measured on this run's data rather than learned (a model
    # initialised from another run's weights may differ in them: --init-from ignores them).
    measured_config_fields: tuple[str, ...] = ()

    @property
    def export_module(self) -> str:
        """The module that EMA averages and `export` saves."""
        return "model"

    @abstractmethod
    def train_batches(self, epoch: int, start_batch: int) -> Iterable[Any]:
        """This rank's training batches of `epoch`, skipping its first `start_batch`
        (deterministic for a given recipe seed, so that a resume continues the data order)."""

    @abstractmethod
    def valid_batches(self) -> Iterable[Any]:
        """This rank's validation batches (the same at every validation)."""

    @abstractmethod
    def loss(self, phase: str, modules: dict[str, nn.Module], batch: Any, step: int) -> tuple[Tensor | None, dict[str, float]]:
        """The loss to minimise in `phase` and metrics to log; None skips the phase this step.
        `modules` may be DDP-wrapped."""

    @abstractmethod
    def validate(self, modules: dict[str, nn.Module], batches: Iterable[Any]) -> dict[str, float]:
        """Metrics over the validation batches, reduced over ranks; must include "loss"."""

    @abstractmethod
    def export(self, module: nn.Module, path: Path) -> None:
        """Save the trained model as a self-describing folder (config.json + weights)."""

    def batch_size_tokens(self, batch: Any) -> int:
        """Tokens (or samples) in a batch, for throughput logging."""
        return 0

    def samples(self, module: nn.Module, step: int) -> dict[str, tuple[Tensor, int]]:
        """Optional audio to log: name -> (float wav [N], sample rate)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Task-side state to checkpoint (e.g. a random generator)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def move(self, batch: Any) -> Any:
        """Put a batch on the training device."""
        return batch.to(self.context.device) if hasattr(batch, "to") else batch

    def autocast(self) -> torch.autocast:
        device = self.context.device.type
        return torch.autocast(device, dtype=torch.bfloat16, enabled=self.bf16)


def ignore_stop_signals(worker_id: int) -> None:
    """A DataLoader worker's init: SIGINT and SIGTERM are the main process's to handle (it
    writes a checkpoint, then stops its workers). A signal sent to the whole process group
    (Ctrl-C, a cluster's pre-emption) would otherwise kill the workers first and crash the
    main process before it could checkpoint."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def sharded_loader(dataset: Dataset[Any], collate: Callable[[Sequence[Any]], Any], recipe: Recipe,
                   context: DistributedContext, epoch: int, shuffle: bool, start_batch: int = 0,
                   whole: bool = True) -> DataLoader:
    """This rank's batches of dataset in epoch's order (a seeded shuffle, or in order), from its
    start_batch-th on. With `whole` (training), only whole batches and as many on every rank,
    since DDP needs every rank to step together; without (validation), every item once."""
    generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + epoch)
    count = len(dataset)  # type: ignore[arg-type]
    order = torch.randperm(count, generator=generator).tolist() if shuffle else list(range(count))
    mine = order[context.rank :: context.world_size]
    size = recipe.data.batch_size
    per_rank = count // (size * context.world_size) if whole else -(-len(mine) // size)
    batches = [mine[i * size : (i + 1) * size] for i in range(start_batch, per_rank)]
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=recipe.data.num_workers,
                      generator=generator, worker_init_fn=ignore_stop_signals)


TASKS: dict[str, type[Task]] = {}


def register_task(name: str):  # type: ignore[no-untyped-def]
    def decorator(cls: type[Task]) -> type[Task]:
        TASKS[name] = cls
        return cls

    return decorator


def build_task(recipe: Recipe, context: DistributedContext) -> Task:
    # Importing the task modules registers them.
    import soundstorm.train.ar_task  # noqa: F401
    import soundstorm.train.semantic_task  # noqa: F401
    import soundstorm.train.soundstorm_task  # noqa: F401
    import soundstorm.train.soundstream_task  # noqa: F401
    import soundstorm.train.t2s_task  # noqa: F401

    if recipe.task not in TASKS:
        raise ValueError(f"unknown task {recipe.task!r} in the recipe; known tasks: {sorted(TASKS)}")
    return TASKS[recipe.task](recipe, context)
