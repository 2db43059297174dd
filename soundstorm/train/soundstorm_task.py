"""Training SoundStorm on a token cache (`task = "soundstorm"` in a recipe).

[model] holds SoundStormConfig fields, or `preset = "small"` plus overrides; codebook_size,
num_quantizers, semantic_vocab_size and semantic_rate_ratio default to the cache's, and a
model that disagrees with the cache is refused. [options]: cond_drop_prob (condition dropout
for classifier-free guidance, default 0.1); train_levels (train only the first N levels, for a
model decoded with steps for those levels only, where a codec's finer levels add little audio:
benchmarks/codec_levels.py; default all); level_weights (how often each trained level is the one
trained, e.g. [1, 2, 2, 2] for more of the finer levels; default uniform, the paper's).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from soundstorm import masking
from soundstorm.data.cache import TokenCache
from soundstorm.data.collate import Batch
from soundstorm.model.config import SoundStormConfig
from soundstorm.model.soundstorm import SoundStorm
from soundstorm.train.distributed import DistributedContext
from soundstorm.train.recipe import Recipe
from soundstorm.train.task import Task, register_task
from soundstorm.train.token_data import TokenBatches

OPTIONS: dict[str, Any] = {"cond_drop_prob": 0.1, "train_levels": None, "level_weights": None}


def model_config(recipe_model: dict[str, Any], cache: TokenCache) -> SoundStormConfig:
    values = dict(recipe_model)
    preset = values.pop("preset", None)
    defaults: dict[str, Any] = {
        "codebook_size": cache.codec["codebook_size"],
        "num_quantizers": cache.codec["num_quantizers"],
        "semantic_vocab_size": cache.semantic_info["vocab_size"] if cache.semantic_info else 0,
        "semantic_rate_ratio": cache.ratio or 1,
    }
    values = {**defaults, **values}
    try:
        config = SoundStormConfig.preset(preset, **values) if preset else SoundStormConfig.from_dict(values)
    except TypeError as error:
        raise ValueError(f"[model] in the recipe: {error}") from error
    cache.check_compatible(config)
    return config


@register_task("soundstorm")
class SoundStormTask(Task):
    def __init__(self, recipe: Recipe, context: DistributedContext) -> None:
        super().__init__(recipe, context)
        unknown = sorted(set(recipe.options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown [options] for task soundstorm: {unknown}; known: {sorted(OPTIONS)}")
        self.options = {**OPTIONS, **recipe.options}
        data = recipe.data
        if not data.cache:
            raise ValueError("the recipe needs data.cache: a token cache folder (soundstorm corpus tokenize)")
        self.cache = TokenCache(data.cache)
        self.config = model_config(recipe.model, self.cache)
        self.data = TokenBatches(recipe, context, self.cache, self.config.num_quantizers)
        levels = self.options["train_levels"]
        if levels is not None and (not isinstance(levels, int) or isinstance(levels, bool)
                                   or not 1 <= levels <= self.config.num_quantizers):
            raise ValueError(f"options.train_levels must be an integer in [1, {self.config.num_quantizers}] "
                             f"(the first levels trained), got {levels!r}")
        weights = self.options["level_weights"]
        if weights is not None:
            trained = levels if levels is not None else self.config.num_quantizers
            try:  # refused here, before anything runs, not at the first step's mask
                if not isinstance(weights, list) or any(isinstance(w, bool) or not isinstance(w, (int, float))
                                                        for w in weights):
                    raise ValueError
                masking.check_level_weights(weights, trained)
            except ValueError:
                raise ValueError(f"options.level_weights must list {trained} non-negative numbers, one per level "
                                 f"trained, not all 0; got {weights!r}") from None
        # Masks and condition dropout draw from this generator; it is checkpointed, so a
        # resumed run draws exactly what an uninterrupted one would.
        self.generator = torch.Generator(device=context.device).manual_seed(recipe.seed * 7919 + context.rank)

    def build_modules(self) -> dict[str, nn.Module]:
        return {"model": SoundStorm(self.config)}

    def train_batches(self, epoch: int, start_batch: int) -> Iterable[Batch]:
        return self.data.train(epoch, start_batch)

    def valid_batches(self) -> Iterator[Batch]:
        return self.data.valid()

    def loss(self, phase: str, modules: dict[str, nn.Module], batch: Batch, step: int) -> tuple[Tensor, dict[str, float]]:
        out = modules["model"](batch.codes, batch.semantic, batch.lengths, generator=self.generator,
                               cond_drop_prob=self.options["cond_drop_prob"], train_levels=self.options["train_levels"],
                               level_weights=self.options["level_weights"])
        accuracy = out.level_correct.sum() / out.level_count.sum().clamp(min=1)
        return out.loss, {"accuracy": accuracy.item()}

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], batches: Iterable[Batch]) -> dict[str, float]:
        model = modules["model"]
        Q = self.config.num_quantizers
        generator = torch.Generator(device=self.context.device).manual_seed(12345 + self.context.rank)  # same masks every time
        totals = torch.zeros(3, Q, dtype=torch.float64)  # loss sum, correct, count per level
        for batch in batches:
            batch = self.move(batch)
            with self.autocast():
                out = model(batch.codes, batch.semantic, batch.lengths, generator=generator,
                            train_levels=self.options["train_levels"])
            totals += torch.stack([out.level_loss_sum, out.level_correct, out.level_count]).double().cpu()
        totals = self.context.all_reduce_sum(totals)
        count = totals[2].sum().clamp(min=1)
        metrics = {"loss": float(totals[0].sum() / count), "accuracy": float(totals[1].sum() / count)}
        for q in range(Q):
            if totals[2, q] > 0:
                metrics[f"accuracy/level_{q + 1}"] = float(totals[1, q] / totals[2, q])
                metrics[f"loss/level_{q + 1}"] = float(totals[0, q] / totals[2, q])
        return metrics

    def export(self, module: nn.Module, path: Path) -> None:
        module.save_pretrained(path)  # type: ignore[operator]

    def batch_size_tokens(self, batch: Batch) -> int:
        return int(batch.lengths.sum()) * self.config.num_quantizers

    def samples(self, module: nn.Module, step: int) -> dict[str, tuple[Tensor, int]]:
        """A validation utterance's second half generated from its first half (prompt), decoded."""
        if not self.recipe.data.codec or self.data.valid_set is None:
            return {}
        from soundstorm.codecs import load_codec

        codec = load_codec(self.recipe.data.codec)
        example = self.data.valid_set[0]
        codes = example.codes[None].to(self.context.device)  # [1, T, Q]
        semantic = None if example.semantic is None else example.semantic[None].to(self.context.device)
        prompt = codes[:, : max(1, codes.shape[1] // 2)]
        generated = module.generate(semantic, num_frames=codes.shape[1], prompt_codes=prompt,  # type: ignore[operator]
                                    generator=torch.Generator(device=self.context.device).manual_seed(step))
        with torch.inference_mode():
            return {
                "original": (codec.decode(codes.cpu())[0, 0], codec.sample_rate),
                "generated": (codec.decode(generated.cpu())[0, 0], codec.sample_rate),
            }

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
