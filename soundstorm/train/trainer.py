"""The training loop every model of the project shares (SoundStorm, codec, tokenizer, baseline).

One process or many under torchrun (DDP: gloo on CPUs, nccl on GPUs); only rank 0 writes.

    out/
      recipe.json              the recipe, as run
      checkpoints/step-00001000/  state.safetensors + state.json (weights, optimizers,
                               schedulers, EMA, RNG states, data position); the last
                               `keep_last` and the best on validation are kept
      best/  model/            exported models (config.json + model.safetensors): best on
                               validation, and the final one (EMA weights when EMA is on)
      tensorboard/             scalars, validation metrics, audio samples
      summary.json             written at the end: steps, best, replica checksums

Resume is automatic: a run whose out folder holds checkpoints continues from the newest one
that loads (a corrupt one is reported and skipped), with the same data order and random
draws. SIGTERM / SIGINT write a checkpoint and exit; after SIGKILL at most `checkpoint_every`
steps are lost. `until_step` and `max_minutes` end a run early, with a checkpoint, to be
resumed later (e.g. across time-limited sessions).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import random
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from soundstorm.atomic import atomic_write_text
from soundstorm.precision import bf16_is_fast
from soundstorm.train.distributed import DistributedContext
from soundstorm.train.ema import EMA
from soundstorm.train.recipe import Recipe
from soundstorm.train.schedule import LearningRateSchedule
from soundstorm.train.state import load_state, save_state
from soundstorm.train.task import build_task

CHECKPOINTS_DIR = "checkpoints"
# Recipe fields that must not change when a run is resumed.
FIXED_ON_RESUME = ("task", "model", "seed")
# Config fields that regularize training and leave the weights' meaning alone: a fine-tune from a
# model folder may change them (e.g. attention_dropout = 0 for CPU speed).
REGULARIZATION_FIELDS = ("dropout", "attention_dropout")


def log_spectrogram_image(wav: torch.Tensor, n_fft: int = 512) -> torch.Tensor:
    """float wav [N] -> a log-magnitude spectrogram [F, frames] scaled to [0, 1], low
    frequencies at the bottom, over an 80 dB range."""
    if wav.numel() < n_fft:
        wav = torch.nn.functional.pad(wav, (0, n_fft - wav.numel()))
    spectrum = torch.stft(wav, n_fft, hop_length=n_fft // 4, window=torch.hann_window(n_fft), return_complex=True)
    decibels = 20 * torch.log10(spectrum.abs().clamp(min=1e-5))
    decibels = decibels.clamp(min=decibels.max() - 80)
    image = (decibels - decibels.min()) / (decibels.max() - decibels.min()).clamp(min=1e-5)
    return image.flip(0)


def _checksum(module: nn.Module) -> float:
    with torch.no_grad():
        return float(sum(p.double().sum() + p.double().abs().sum() for p in module.parameters()))


class Trainer:
    def __init__(
        self,
        recipe: Recipe,
        out_dir: str | Path,
        *,
        device: str | None = None,
        progress: bool | None = None,
        until_step: int | None = None,
        max_minutes: float | None = None,
        init_from: str | Path | None = None,
        start_step: int | None = None,
    ) -> None:
        self.recipe = recipe
        self.init_from = Path(init_from) if init_from is not None else None
        if start_step is not None:
            if self.init_from is None:
                raise ValueError("--start-step continues a run from its model's weights: give the model folder with --init-from")
            if not 0 < start_step < recipe.optimizer.max_steps:
                raise ValueError(f"--start-step must be between 1 and optimizer.max_steps - 1 "
                                 f"({recipe.optimizer.max_steps - 1}), got {start_step}")
        self.start_step = start_step
        self.out_dir = Path(out_dir)
        self.context = DistributedContext.from_env(device)
        self.until_step = until_step
        self.max_minutes = max_minutes
        if progress is None:
            progress = sys.stderr.isatty()
        self.progress = progress and self.context.is_main
        if recipe.deterministic:
            torch.use_deterministic_algorithms(True)
        random.seed(recipe.seed)
        torch.manual_seed(recipe.seed)  # the same initial weights on every rank
        self.task = build_task(recipe, self.context)
        self.modules = {name: m.to(self.context.device) for name, m in self.task.build_modules().items()}
        torch.manual_seed(recipe.seed * 1000 + self.context.rank)  # dropout differs between ranks

        opt = recipe.optimizer
        self.phases = self.task.phases()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        for phase in self.phases:
            params = [p for name in phase.modules for p in self.modules[name].parameters() if p.requires_grad]
            self.optimizers[phase.name] = torch.optim.AdamW(
                params, lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay
            )
            self.schedulers[phase.name] = torch.optim.lr_scheduler.LambdaLR(
                self.optimizers[phase.name],
                LearningRateSchedule(warmup_steps=opt.warmup_steps, max_steps=opt.max_steps, min_ratio=opt.min_lr_ratio),
            )
        self.ema = EMA(self.modules[self.task.export_module], opt.ema_decay) if opt.ema_decay > 0 else None
        self.wrapped: dict[str, nn.Module] = {
            name: DistributedDataParallel(m) if self.context.enabled and any(p.requires_grad for p in m.parameters()) else m
            for name, m in self.modules.items()
        }
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_loss: float | None = None
        self.best_step: int | None = None
        self.stop_requested = False
        self.writer: Any = None

    # ---- checkpoints -------------------------------------------------------------------------

    def _rng_state(self) -> dict[str, Any]:
        return {"torch": torch.get_rng_state(), "python": list(random.getstate()), "task": self.task.state_dict()}

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        self.task.load_state_dict(state["task"])

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs; RNG states of every rank (gathered to rank 0)."""
        rng = self._rng_state()
        ranks = [rng]
        if self.context.enabled:
            ranks = [None] * self.context.world_size
            dist.all_gather_object(ranks, rng)  # in memory only; the file stays pickle-free
        return {
            "modules": {name: m.state_dict() for name, m in self.modules.items()},
            "ema": self.ema.module.state_dict() if self.ema else None,
            "optimizers": {name: o.state_dict() for name, o in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "rng": ranks,
            "progress": {
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "best_loss": self.best_loss, "best_step": self.best_step, "world_size": self.context.world_size,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        if self.ema is not None and state["ema"] is not None:
            self.ema.module.load_state_dict(state["ema"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        progress = state["progress"]
        self.step, self.epoch, self.batch_in_epoch = progress["step"], progress["epoch"], progress["batch_in_epoch"]
        self.best_loss, self.best_step = progress["best_loss"], progress["best_step"]
        ranks = state["rng"]
        if len(ranks) == self.context.world_size:
            self._set_rng_state(ranks[self.context.rank])
        else:
            self.log(f"resuming on {self.context.world_size} processes a run saved on {len(ranks)}: "
                     "random draws will differ from an uninterrupted run")

    def checkpoint_paths(self) -> list[Path]:
        folder = self.out_dir / CHECKPOINTS_DIR
        return sorted(folder.glob("step-*"), reverse=True) if folder.is_dir() else []

    def save_checkpoint(self) -> None:
        state = self.state_dict()  # every rank takes part in the gather
        if self.context.is_main:
            path = self.out_dir / CHECKPOINTS_DIR / f"step-{self.step:08d}"
            save_state(state, path, extra_files={"recipe.json": json.dumps(self.recipe.to_dict(), indent=2)})
            paths = self.checkpoint_paths()  # newest first
            keep = set(paths[: self.recipe.schedule.keep_last])
            keep |= {p for p in paths if int(p.name.split("-")[1]) == self.best_step}
            for old in paths:
                if old not in keep:
                    shutil.rmtree(old, ignore_errors=True)
        self.context.barrier()

    def initialize_from(self, path: Path) -> None:
        """Start from the weights of a model folder (config.json + model.safetensors) whose
        config is this run's: fine-tuning, or going on from a committed model on a new machine.
        The optimizer, schedule and data order start afresh."""
        from safetensors.torch import load_file

        from soundstorm.checkpoint import WEIGHTS_NAME, read_config

        module = self.modules[self.task.export_module]
        # Through the config class: fields added since the folder was saved take their defaults.
        found = type(self.task.config).from_dict(read_config(path, type(module).__name__)).to_dict()  # type: ignore[attr-defined]
        found = json.loads(json.dumps(found))
        expected = json.loads(json.dumps(self.task.config.to_dict()))  # type: ignore[attr-defined]
        for name in (*self.task.measured_config_fields, *REGULARIZATION_FIELDS):  # not the weights' business
            found.pop(name, None)
            expected.pop(name, None)
        if found != expected:
            differing = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
            raise ValueError(f"--init-from {path}: its config differs from this recipe's in {differing}")
        state = load_file(path / WEIGHTS_NAME, device=str(self.context.device))
        module.load_state_dict(state, strict=True)  # fp16 weights are cast to the module's dtype
        if self.ema is not None:
            self.ema = EMA(module, self.recipe.optimizer.ema_decay)
        self.log(f"initialised {self.task.export_module} from {path}")

    def continue_at(self, step: int) -> None:
        """Go on from `step` of the recipe's schedule with the weights already loaded: the
        learning rate is the schedule's there, ramped up again over warmup_steps because the
        optimizer's moments are new (LearningRateSchedule). Data order and random draws start as
        a new run's do."""
        self.step = step
        for name, scheduler in self.schedulers.items():
            for schedule in scheduler.lr_lambdas:
                schedule.restart_step = step  # type: ignore[attr-defined]
            scheduler.last_epoch = step
            for group, base, schedule in zip(self.optimizers[name].param_groups, scheduler.base_lrs,
                                             scheduler.lr_lambdas, strict=True):
                group["lr"] = base * schedule(step)
        self.log(f"continuing at step {step} of {self.recipe.optimizer.max_steps} with fresh optimizer moments "
                 f"(learning rate re-warmed over {self.recipe.optimizer.warmup_steps} steps)")

    def resume(self) -> bool:
        """Load the newest checkpoint that loads; False when there is none."""
        saved = self.out_dir / "recipe.json"
        if saved.is_file():
            previous = json.loads(saved.read_text())
            current = self.recipe.to_dict()
            for key in FIXED_ON_RESUME:
                if previous.get(key) != current.get(key):
                    raise ValueError(
                        f"{self.out_dir} holds a run with {key} = {previous.get(key)!r}, this recipe has "
                        f"{key} = {current.get(key)!r}: use another output folder to start a new run"
                    )
        failures = []
        for path in self.checkpoint_paths():
            try:
                state = load_state(path)
                self.load_state_dict(state)
            except (ValueError, KeyError, RuntimeError) as error:
                failures.append(f"{path.name}: {error}")
                self.log(f"checkpoint {path} cannot be used ({error}); trying the one before it")
                continue
            self.log(f"resumed from {path} (step {self.step}, epoch {self.epoch})")
            return True
        if failures:
            raise ValueError(f"no checkpoint in {self.out_dir / CHECKPOINTS_DIR} can be loaded: {failures}")
        return False

    # ---- the loop ------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        if self.context.is_main:
            if self.progress:
                tqdm.write(message, file=sys.stderr)
            else:
                print(message, file=sys.stderr, flush=True)

    def _batches(self) -> Iterator[Any]:
        """Training batches forever, epoch after epoch, counting the data position."""
        while True:
            produced = 0
            for batch in self.task.train_batches(self.epoch, self.batch_in_epoch):
                self.batch_in_epoch += 1
                produced += 1
                yield batch
            if produced == 0 and self.batch_in_epoch == 0:
                raise ValueError("the training data yields no batches: is the split empty?")
            self.epoch += 1
            self.batch_in_epoch = 0

    def _no_sync(self, phase_modules: tuple[str, ...]) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        for name in phase_modules:
            module = self.wrapped[name]
            if isinstance(module, DistributedDataParallel):
                stack.enter_context(module.no_sync())
        return stack

    def train_step(self, micro_batches: list[Any]) -> dict[str, float]:
        accum = len(micro_batches)
        metrics: dict[str, float] = {}
        for phase in self.phases:
            optimizer = self.optimizers[phase.name]
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            stepped = False
            for i, batch in enumerate(micro_batches):
                batch = self.task.move(batch)
                sync = contextlib.nullcontext() if i == accum - 1 else self._no_sync(phase.modules)
                with sync:
                    with self.task.autocast():
                        loss, phase_metrics = self.task.loss(phase.name, self.wrapped, batch, self.step)
                    if loss is None:  # the phase sits this step out (e.g. a GAN before it starts)
                        continue
                    stepped = True
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"the {phase.name} loss is {loss.item()} at step {self.step}: lower optimizer.lr, "
                            "or resume from an earlier checkpoint"
                        )
                    (loss / accum).backward()
                total += loss.item() / accum
                for key, value in phase_metrics.items():
                    metrics[f"{phase.name}/{key}"] = metrics.get(f"{phase.name}/{key}", 0.0) + value / accum
            if stepped:
                if self.recipe.optimizer.grad_clip > 0:
                    params = [p for group in optimizer.param_groups for p in group["params"]]
                    norm = torch.nn.utils.clip_grad_norm_(params, self.recipe.optimizer.grad_clip)
                    metrics[f"{phase.name}/grad_norm"] = float(norm)
                optimizer.step()
            with warnings.catch_warnings():
                # A phase that sat steps out still follows the schedule, so its learning rate
                # at step s is the schedule's value at s.
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                self.schedulers[phase.name].step()
            metrics[f"{phase.name}/loss"] = total
            metrics[f"{phase.name}/lr"] = self.schedulers[phase.name].get_last_lr()[0]
        if self.ema is not None:
            self.ema.update(self.modules[self.task.export_module], self.step)
        return metrics

    def validate(self) -> dict[str, float]:
        module = self.ema.module if self.ema is not None else self.modules[self.task.export_module]
        modules = {**self.modules, self.task.export_module: module}
        for m in modules.values():
            m.eval()
        try:
            metrics = self.task.validate(modules, self.task.valid_batches())
        finally:
            for m in self.modules.values():
                m.train()
        if self.context.is_main:
            for key, value in metrics.items():
                self._scalar(f"valid/{key}", value)
            loss = metrics.get("loss", math.inf)
            if self.best_loss is None or loss < self.best_loss:
                self.best_loss, self.best_step = loss, self.step
                self.task.export(module, self.out_dir / "best")
            self.log(f"step {self.step}: valid " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if "/" not in k))
        return metrics

    def _scalar(self, name: str, value: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar(name, value, self.step)

    def _log_samples(self) -> None:
        module = self.ema.module if self.ema is not None else self.modules[self.task.export_module]
        module.eval()
        try:
            samples = self.task.samples(module, self.step)
        finally:
            self.modules[self.task.export_module].train()
        if self.writer is not None:
            for name, (wav, sample_rate) in samples.items():
                wav = wav.float().cpu()
                self.writer.add_audio(f"samples/{name}", wav.clamp(-1, 1), self.step, sample_rate)
                self.writer.add_image(f"spectrograms/{name}", log_spectrogram_image(wav), self.step, dataformats="HW")

    def _should_stop(self, start: float) -> bool:
        """Signal, until_step or time budget; agreed across ranks so that all stop together."""
        stop = self.stop_requested or (self.until_step is not None and self.step >= self.until_step)
        if self.max_minutes is not None and (time.monotonic() - start) / 60 >= self.max_minutes:
            stop = True
        if self.context.enabled:
            flag = torch.tensor([float(stop)])
            dist.all_reduce(flag)
            stop = bool(flag.item() > 0)
        return stop

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        self.log(f"received signal {signum}: writing a checkpoint at the end of this step")

    def fit(self) -> dict[str, Any]:
        """Train to optimizer.max_steps (or until stopped). Returns the run's summary."""
        schedule, max_steps = self.recipe.schedule, self.recipe.optimizer.max_steps
        if not self.resume() and self.init_from is not None:
            self.initialize_from(self.init_from)
            if self.start_step is not None:
                self.continue_at(self.start_step)
        if self.recipe.optimizer.bf16 is True and not bf16_is_fast(self.context.device):
            self.log(f"warning: optimizer.bf16 = true on {self.context.device}, which has no native bf16 "
                     f"(no avx512_bf16 or AMX on a CPU): it is emulated, and a training step is many times "
                     f"slower than in float32; bf16 = \"auto\" uses it only where it is native")
        if self.context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.recipe.save(self.out_dir / "recipe.json")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=self.step or None)
        previous_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        start = last_log = time.monotonic()
        tokens_since_log = 0
        bar = tqdm(total=max_steps, initial=self.step, disable=not self.progress, desc="training", unit="step")
        batches = self._batches()
        stopped_early = False
        for m in self.modules.values():
            m.train()
        try:
            while self.step < max_steps:
                micro = [next(batches) for _ in range(self.recipe.optimizer.grad_accum)]
                metrics = self.train_step(micro)
                self.step += 1
                tokens_since_log += sum(self.task.batch_size_tokens(b) for b in micro) * self.context.world_size
                bar.update(1)
                if self.step % schedule.log_every == 0 or self.step == max_steps:
                    elapsed = time.monotonic() - last_log
                    metrics["tokens_per_second"] = tokens_since_log / max(elapsed, 1e-9)
                    tokens_since_log, last_log = 0, time.monotonic()
                    if self.context.is_main:
                        for key, value in metrics.items():
                            self._scalar(f"train/{key}", value)
                        shown = {k.split("/")[-1] if k.count("/") == 1 and k.startswith(self.phases[0].name) else k: v
                                 for k, v in metrics.items() if not k.endswith("grad_norm")}
                        if self.progress:
                            bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()})
                        else:
                            self.log(f"step {self.step}/{max_steps} " + " ".join(f"{k} {v:.4g}" for k, v in shown.items()))
                if self.step % schedule.valid_every == 0 or self.step == max_steps:
                    self.validate()
                if schedule.sample_every and self.step % schedule.sample_every == 0 and self.context.is_main:
                    self._log_samples()
                if self.step % schedule.checkpoint_every == 0 or self.step == max_steps:
                    self.save_checkpoint()
                if self.step < max_steps and self._should_stop(start):
                    stopped_early = True
                    if self.step % schedule.valid_every != 0:
                        self.validate()  # so that best/ holds the best weights up to the stop, not an older one
                    self.save_checkpoint()
                    self.log(f"stopped at step {self.step}; run the same command again to resume")
                    break
        finally:
            bar.close()
            for s, handler in previous_handlers.items():
                signal.signal(s, handler)
            if self.writer is not None:
                self.writer.close()
        return self._finish(stopped_early)

    def close(self) -> None:
        """Let go of the process group: first the DDP wrappers, whose reducers hold it, then the
        group itself. A gloo group still referenced by a reducer outlives destroy_process_group and is
        torn down at interpreter exit, where its threads can abort the process after training has
        finished ("terminate called without an active exception"; seen once in CI under torchrun)."""
        self.wrapped = dict(self.modules)
        gc.collect()
        self.context.close()

    def _finish(self, stopped_early: bool) -> dict[str, Any]:
        checksums = [_checksum(self.modules[self.task.export_module])]
        if self.context.enabled:
            checksums = [None] * self.context.world_size
            dist.all_gather_object(checksums, _checksum(self.modules[self.task.export_module]))
        summary = {
            "step": self.step, "epoch": self.epoch, "stopped_early": stopped_early,
            "best_step": self.best_step, "best_valid_loss": self.best_loss,
            "world_size": self.context.world_size, "replica_checksums": checksums,
        }
        if self.context.is_main:
            if len(set(checksums)) > 1:
                raise RuntimeError(f"the replicas' weights differ after training: checksums {checksums}")
            # model/ is the run's last weights, also after --until-step or --max-minutes (those of the
            # stop; summary.json's stopped_early says whether max_steps was reached): a run stopped to
            # be looked at can be evaluated as it is, where best/ may be an older step.
            final = self.ema.module if self.ema is not None else self.modules[self.task.export_module]
            self.task.export(final, self.out_dir / "model")
            atomic_write_text(self.out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        self.context.barrier()
        return summary
