"""Training the text-to-semantic model on a token cache's texts and semantic tokens
(`task = "t2s"` in a recipe).

[model] holds TextToSemanticConfig fields; semantic_vocab_size and semantic_rate default to the
cache's. [data] cache is a token cache with semantic tokens and transcripts; whole utterances
are used (no crops). [options]:
- turn_pairs (default 0.3): the probability that an example is two utterances joined, their
  texts by <turn> when the speakers differ (by a word break when they agree) and their tokens
  one after the other: it teaches the model the dialogue's turn marker and to continue a
  prompt, the two ways TTS and dialogue use a prefix (soundstorm/text/model.py).
- max_tokens (default 400): utterances with more semantic tokens are skipped.
- eos_weight (default 1): the weight of each sequence's EOS target in the training loss
  (TextToSemantic.forward); validation reports the unweighted loss, and how often EOS is the
  argmax at the true end (eos_accuracy) with its mean probability there (eos_probability).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from soundstorm.data.cache import TokenCache
from soundstorm.text.model import TextToSemantic, TextToSemanticConfig
from soundstorm.text.symbols import TextSymbols
from soundstorm.train.distributed import DistributedContext
from soundstorm.train.recipe import Recipe
from soundstorm.train.task import Task, register_task, sharded_loader

OPTIONS = {"turn_pairs": 0.3, "max_tokens": 400, "eos_weight": 1.0}


@dataclass
class TextBatch:
    text: Tensor  # int64 [B, Lt], padded
    text_lengths: Tensor  # int64 [B]
    semantic: Tensor  # int64 [B, S], padded
    semantic_lengths: Tensor  # int64 [B]

    def to(self, device: torch.device | str) -> TextBatch:
        return TextBatch(*(t.to(device) for t in (self.text, self.text_lengths, self.semantic, self.semantic_lengths)))


class TextSemanticDataset(Dataset[tuple[list[int], np.ndarray]]):
    """(text ids, semantic tokens) of the cache's utterances with a speakable transcript."""

    def __init__(self, cache: TokenCache, split: str | None, symbols: TextSymbols, max_tokens: int,
                 turn_pairs: float = 0.0, seed: int = 0) -> None:
        self.cache, self.symbols = cache, symbols
        self.turn_pairs, self.seed, self.epoch = turn_pairs, seed, 0
        self.positions: list[int] = []
        self.texts: list[list[int]] = []
        self.rates: list[float] = []  # semantic tokens per text symbol, per utterance
        skipped = 0
        for i in cache.indices(split):
            item, tokens = cache.items[i], cache.semantic(i)
            if not item.text or tokens is None or len(tokens) > max_tokens:
                skipped += 1
                continue
            try:
                self.texts.append(symbols.encode(item.text))
            except ValueError:  # unpronounceable: a symbol, a numeral
                skipped += 1
                continue
            self.positions.append(i)
            self.rates.append(len(tokens) / len(self.texts[-1]))
        if not self.positions:
            raise ValueError(f"{cache.root}: no utterances of split {split!r} with transcripts and semantic tokens")
        if skipped:
            print(f"t2s data: {skipped} utterances of split {split!r} skipped (no speakable transcript, "
                  f"or over {max_tokens} tokens)", file=sys.stderr)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.positions)

    def _item(self, k: int) -> tuple[list[int], np.ndarray]:
        return self.texts[k], np.asarray(self.cache.semantic(self.positions[k]), dtype=np.int64)

    def __getitem__(self, k: int) -> tuple[list[int], np.ndarray]:
        text, tokens = self._item(k)
        rng = np.random.default_rng([self.seed, self.epoch, k])
        if self.turn_pairs > 0 and len(self) > 1 and rng.random() < self.turn_pairs:
            j = int(rng.integers(0, len(self) - 1))
            j += j >= k  # another utterance
            other_text, other_tokens = self._item(j)
            turn = self.cache.items[self.positions[j]].speaker != self.cache.items[self.positions[k]].speaker
            text, tokens = self.symbols.join(text, other_text, turn), np.concatenate([tokens, other_tokens])
        return text, tokens


def collate_text(items: Sequence[tuple[list[int], np.ndarray]]) -> TextBatch:
    B = len(items)
    text_lengths = torch.tensor([len(t) for t, _ in items])
    semantic_lengths = torch.tensor([len(s) for _, s in items])
    text = torch.zeros(B, int(text_lengths.max()), dtype=torch.long)
    semantic = torch.zeros(B, int(semantic_lengths.max()), dtype=torch.long)
    for b, (t, s) in enumerate(items):
        text[b, : len(t)] = torch.tensor(t)
        semantic[b, : len(s)] = torch.from_numpy(s)
    return TextBatch(text, text_lengths, semantic, semantic_lengths)


@register_task("t2s")
class TextToSemanticTask(Task):
    measured_config_fields = ("min_tokens_per_symbol", "max_tokens_per_symbol")

    def __init__(self, recipe: Recipe, context: DistributedContext) -> None:
        super().__init__(recipe, context)
        unknown = sorted(set(recipe.options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown [options] for task t2s: {unknown}; known: {sorted(OPTIONS)}")
        options = {**OPTIONS, **recipe.options}
        self.eos_weight = float(options["eos_weight"])
        if self.eos_weight <= 0:
            raise ValueError(f"[options] eos_weight must be > 0, got {options['eos_weight']!r}")
        if not recipe.data.cache:
            raise ValueError("the recipe needs data.cache: a token cache with semantic tokens and transcripts")
        cache = TokenCache(recipe.data.cache)
        if not cache.semantic_info:
            raise ValueError(f"{recipe.data.cache}: the token cache has no semantic tokens")
        frame_rate = cache.codec["frame_rate"]
        defaults = {"semantic_vocab_size": cache.semantic_info["vocab_size"], "semantic_rate": frame_rate / cache.ratio}
        try:
            self.config = TextToSemanticConfig.from_dict({**defaults, **recipe.model})
        except TypeError as error:
            raise ValueError(f"[model] in the t2s recipe: {error}") from error
        if self.config.semantic_vocab_size != defaults["semantic_vocab_size"]:
            raise ValueError(f"[model] semantic_vocab_size {self.config.semantic_vocab_size} differs from the "
                             f"token cache's {defaults['semantic_vocab_size']}")
        symbols = TextSymbols(self.config.text_units)
        data = recipe.data
        self.train_set = TextSemanticDataset(cache, data.train_split, symbols, options["max_tokens"],
                                             options["turn_pairs"], recipe.seed)
        self.valid_set = TextSemanticDataset(cache, data.valid_split, symbols, options["max_tokens"]) \
            if data.valid_split else None
        rates = {"min_tokens_per_symbol": min(self.train_set.rates), "max_tokens_per_symbol": max(self.train_set.rates)}
        self.config = replace(self.config, **{name: value for name, value in rates.items() if name not in recipe.model})

    def build_modules(self) -> dict[str, nn.Module]:
        return {"model": TextToSemantic(self.config)}

    def train_batches(self, epoch: int, start_batch: int) -> Iterable[TextBatch]:
        self.train_set.set_epoch(epoch)
        return sharded_loader(self.train_set, collate_text, self.recipe, self.context, epoch, shuffle=True,
                              start_batch=start_batch)

    def valid_batches(self) -> Iterator[TextBatch]:
        if self.valid_set is None:
            return iter(())
        loader = sharded_loader(self.valid_set, collate_text, self.recipe, self.context, 0, shuffle=False, whole=False)
        return (batch for batch, _ in zip(loader, range(self.recipe.schedule.valid_batches)))

    def loss(self, phase: str, modules: dict[str, nn.Module], batch: TextBatch, step: int) -> tuple[Tensor, dict[str, float]]:
        out = modules["model"](batch.text, batch.text_lengths, batch.semantic, batch.semantic_lengths,
                               eos_weight=self.eos_weight)
        sequences = len(batch.text_lengths)
        return out.loss, {"accuracy": float(out.correct) / max(1, int(out.count)),
                          "eos_accuracy": float(out.eos_correct) / sequences}

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], batches: Iterable[TextBatch]) -> dict[str, float]:
        totals = torch.zeros(6, dtype=torch.float64)  # loss * count, correct, count, EOS correct, p(EOS), sequences
        for batch in batches:
            batch = self.move(batch)
            with self.autocast():
                out = modules["model"](batch.text, batch.text_lengths, batch.semantic, batch.semantic_lengths)
            totals += torch.tensor([float(out.loss) * int(out.count), int(out.correct), int(out.count),
                                    int(out.eos_correct), float(out.eos_probability), len(batch.text_lengths)],
                                   dtype=torch.float64)
        totals = self.context.all_reduce_sum(totals)
        count, sequences = max(1.0, float(totals[2])), max(1.0, float(totals[5]))
        return {"loss": float(totals[0]) / count, "accuracy": float(totals[1]) / count,
                "eos_accuracy": float(totals[3]) / sequences, "eos_probability": float(totals[4]) / sequences}

    def export(self, module: nn.Module, path: Path) -> None:
        module.save_pretrained(path)  # type: ignore[operator]

    def batch_size_tokens(self, batch: TextBatch) -> int:
        return int(batch.semantic_lengths.sum())

