"""Training the autoregressive acoustic baseline on a token cache (`task = "ar"` in a recipe).

The same cache, crops and loop as SoundStorm (soundstorm/train/token_data.py), so the two are
compared on the same data and budget. [model] holds ARAcousticConfig fields; codebook_size,
num_quantizers, semantic_vocab_size and semantic_rate_ratio default to the cache's. No options.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from soundstorm.baselines import ARAcousticConfig, ARAcousticModel
from soundstorm.data.cache import TokenCache
from soundstorm.data.collate import Batch
from soundstorm.train.distributed import DistributedContext
from soundstorm.train.recipe import Recipe
from soundstorm.train.task import Task, register_task
from soundstorm.train.token_data import TokenBatches


def ar_config(recipe_model: dict[str, Any], cache: TokenCache) -> ARAcousticConfig:
    if not cache.semantic_info:
        raise ValueError(f"{cache.root}: the AR baseline is conditioned on semantic tokens; this cache has none")
    defaults = {
        "codebook_size": cache.codec["codebook_size"], "num_quantizers": cache.codec["num_quantizers"],
        "semantic_vocab_size": cache.semantic_info["vocab_size"], "semantic_rate_ratio": cache.ratio,
    }
    values = {**defaults, **recipe_model}
    try:
        config = ARAcousticConfig.from_dict(values)
    except TypeError as error:
        raise ValueError(f"[model] in the recipe: {error}") from error
    for name, value in defaults.items():
        if getattr(config, name) != value:
            raise ValueError(f"[model] {name} = {getattr(config, name)}, but the token cache has {value}")
    return config


@register_task("ar")
class ARTask(Task):
    def __init__(self, recipe: Recipe, context: DistributedContext) -> None:
        super().__init__(recipe, context)
        if recipe.options:
            raise ValueError(f"task ar takes no [options], got {sorted(recipe.options)}")
        if not recipe.data.cache:
            raise ValueError("the recipe needs data.cache: a token cache folder (soundstorm corpus tokenize)")
        self.cache = TokenCache(recipe.data.cache)
        self.config = ar_config(recipe.model, self.cache)
        self.data = TokenBatches(recipe, context, self.cache, self.config.num_quantizers)
        # Picks the fine stage's training chunks; checkpointed for exact resume.
        self.generator = torch.Generator(device=context.device).manual_seed(recipe.seed * 7919 + context.rank)

    def build_modules(self) -> dict[str, nn.Module]:
        return {"model": ARAcousticModel(self.config)}

    def train_batches(self, epoch: int, start_batch: int) -> Iterable[Batch]:
        return self.data.train(epoch, start_batch)

    def valid_batches(self) -> Iterator[Batch]:
        return self.data.valid()

    def loss(self, phase: str, modules: dict[str, nn.Module], batch: Batch, step: int) -> tuple[Tensor, dict[str, float]]:
        out = modules["model"](batch.codes, batch.semantic, batch.lengths, generator=self.generator)
        accuracy = out.level_correct.sum() / out.level_count.sum().clamp(min=1)
        return out.loss, {"coarse_loss": float(out.coarse_loss.detach()), "fine_loss": float(out.fine_loss.detach()),
                          "accuracy": float(accuracy)}

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], batches: Iterable[Batch]) -> dict[str, float]:
        Q = self.config.num_quantizers
        generator = torch.Generator(device=self.context.device).manual_seed(12345 + self.context.rank)
        totals = torch.zeros(2, Q + 2, dtype=torch.float64)  # [correct, count] per level; coarse, fine loss sums
        for batch in batches:
            batch = self.move(batch)
            with self.autocast():
                out = modules["model"](batch.codes, batch.semantic, batch.lengths, generator=generator)
            Qc = self.config.coarse_levels
            totals[0, :Q] += out.level_correct.double().cpu()
            totals[1, :Q] += out.level_count.double().cpu()
            totals[0, Q] += float(out.coarse_loss) * float(out.level_count[:Qc].sum())
            totals[0, Q + 1] += float(out.fine_loss) * float(out.level_count[Qc:].sum())
        totals = self.context.all_reduce_sum(totals)
        Qc = self.config.coarse_levels
        coarse_count = float(totals[1, :Qc].sum()) or 1.0
        fine_count = float(totals[1, Qc:Q].sum()) or 1.0
        metrics = {"coarse_loss": float(totals[0, Q]) / coarse_count, "fine_loss": float(totals[0, Q + 1]) / fine_count,
                   "accuracy": float(totals[0, :Q].sum() / totals[1, :Q].sum().clamp(min=1))}
        metrics["loss"] = metrics["coarse_loss"] + metrics["fine_loss"]
        for q in range(Q):
            if totals[1, q] > 0:
                metrics[f"accuracy/level_{q + 1}"] = float(totals[0, q] / totals[1, q])
        return metrics

    def export(self, module: nn.Module, path: Path) -> None:
        module.save_pretrained(path)  # type: ignore[operator]

    def batch_size_tokens(self, batch: Batch) -> int:
        return int(batch.lengths.sum()) * self.config.num_quantizers

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
