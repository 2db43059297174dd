"""Adapt the text-to-semantic model to one voice from a minute of its speech and transcripts.

    adapted = adapt_t2s(model, [(text_ids, semantic), ...], T2SAdaptation(steps=100))

The semantic tokens carry more of the speaker than their name says: on the held-out flite-rms,
the histogram of its real tokens lies 0.13-0.14 (Jensen-Shannon) from the training voices' and
from what the text-to-semantic model writes for its sentences, while the model's tokens lie 0.03
from the training voices' (docs/enrolment.md). A SoundStorm enrolled on the voice's real tokens
then reads the model's tokens less well (CER 0.39 -> 0.52 in text to speech). Fine-tuning a copy
of the text-to-semantic model on the same minute, with its transcripts, makes it write the
voice's own tokens.

As in training (soundstorm/train/t2s_task.py), some examples join two utterances by a word
break, so that the copy still continues a prompt; EOS is weighted as the bundled model was
trained (eos_weight 10).

Notation: Lt text symbols, S semantic tokens.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from soundstorm.text.model import TextToSemantic
from soundstorm.text.symbols import TextSymbols


@dataclass(frozen=True)
class T2SAdaptation:
    steps: int = 100  # optimizer steps; 0 leaves the model as it is
    lr: float = 1e-4  # AdamW, constant
    batch_size: int = 8  # examples a step
    joined: float = 0.3  # probability that an example is two utterances joined by a word break
    eos_weight: float = 10.0  # as recipes/t2s-small.toml trained the bundled model
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or not self.lr > 0 or self.batch_size < 1 or not 0.0 <= self.joined <= 1.0:
            raise ValueError(f"T2SAdaptation needs steps >= 0, lr > 0, batch_size >= 1 and joined in [0, 1], got {self}")


def adapt_t2s(model: TextToSemantic, examples: Sequence[tuple[list[int], Tensor]],
              options: T2SAdaptation = T2SAdaptation()) -> TextToSemantic:
    """A copy of `model` (float32, eval mode) fine-tuned on one voice's examples, each (text ids
    of TextSymbols(config.text_units), semantic int64 [S] at the model's rate); `model` is not
    changed."""
    if not examples:
        raise ValueError("adapt_t2s needs at least one (text, semantic tokens) example of the voice")
    config = model.config
    for text, semantic in examples:
        if not text or min(text) < 0 or max(text) >= config.text_vocab_size:
            raise ValueError(f"adaptation text ids must be a non-empty list in [0, {config.text_vocab_size})")
        if semantic.dim() != 1 or len(semantic) == 0 or int(semantic.min()) < 0 \
                or int(semantic.max()) >= config.semantic_vocab_size:
            raise ValueError(f"adaptation semantic tokens must be a non-empty int64 [S] in [0, {config.semantic_vocab_size})")
    adapted = copy.deepcopy(model).float().eval()
    if options.steps == 0:
        return adapted
    symbols = TextSymbols(config.text_units)
    device = next(model.parameters()).device
    rng = np.random.default_rng(options.seed)
    optimizer = torch.optim.AdamW(adapted.parameters(), lr=options.lr, betas=(0.9, 0.98), weight_decay=0.0)
    adapted.train()
    for _ in range(options.steps):
        batch = []
        for i in rng.integers(0, len(examples), options.batch_size):
            text, semantic = examples[i]
            if len(examples) > 1 and rng.random() < options.joined:
                j = int(rng.integers(0, len(examples) - 1))
                j += j >= i  # another utterance
                text, semantic = symbols.join(text, examples[j][0], turn=False), torch.cat([semantic, examples[j][1]])
            batch.append((text, semantic))
        text, text_lengths, semantic, semantic_lengths = _batch(batch)
        out = adapted(text.to(device), text_lengths.to(device), semantic.to(device), semantic_lengths.to(device),
                      eos_weight=options.eos_weight)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(adapted.parameters(), 1.0)
        optimizer.step()
    return adapted.eval()


def _batch(examples: Sequence[tuple[list[int], Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Zero-padded text [B, Lt] and semantic [B, S], with their lengths [B]."""
    text_lengths = torch.tensor([len(t) for t, _ in examples])
    semantic_lengths = torch.tensor([len(s) for _, s in examples])
    text = torch.zeros(len(examples), int(text_lengths.max()), dtype=torch.long)
    semantic = torch.zeros(len(examples), int(semantic_lengths.max()), dtype=torch.long)
    for b, (t, s) in enumerate(examples):
        text[b, : len(t)] = torch.tensor(t)
        semantic[b, : len(s)] = s
    return text, text_lengths, semantic, semantic_lengths
