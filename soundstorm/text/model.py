"""Text to semantic tokens (SPEAR-TTS's first stage), as a decoder-only transformer.

One sequence per utterance, text as a prefix of the tokens it is spoken as:

    [text ids (Lt), SEP, semantic ids (S), EOS]

The loss is on the semantic tokens and EOS; attention is causal, so the text prefix is read
left to right (a prefix LM, the decoder-only form of SPEAR-TTS's encoder-decoder). A prompt
is a prefix too: its text before the target's (joined by a word break, or by <turn> when the
speaker changes: soundstorm.text.symbols), its semantic tokens right after SEP, so the model
continues in the prompt's pace. Generation is KV-cached with temperature and top-k.

Notation: B batch, Lt text ids, S semantic tokens, V semantic vocabulary, Tv text vocabulary,
L sequence length, D width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soundstorm.checkpoint import load_model, save_model
from soundstorm.config_dict import DictConfig
from soundstorm.decoding import filter_logits, sample_codes
from soundstorm.model.decoder import CausalDecoder, KVCache
from soundstorm.text.symbols import UNITS, TextSymbols


@dataclass(frozen=True)
class TextToSemanticConfig(DictConfig):
    semantic_vocab_size: int = 512  # V
    semantic_rate: float = 25.0  # tokens per second of the semantic tokenizer it was trained on
    text_units: str = "phonemes"  # "phonemes" or "characters" (soundstorm.text.symbols)
    dim: int = 256
    depth: int = 6
    heads: int = 4
    ff_mult: float = 4.0
    dropout: float = 0.1
    # Dropout on the attention weights; None: `dropout`, as before this field existed. 0 lets
    # PyTorch's CPU attention use its fused kernel: with dropout it falls back to materializing
    # the weights: 1.6x the time of a demo SoundStorm training step and 4.6x a training step of
    # the demo AR baseline over 2251 tokens (measured: benchmarks/attention_dropout.py, docs/benchmarks.md).
    attention_dropout: float | None = None
    rope_base: float = 10000.0
    # Semantic tokens per text symbol, the lowest and highest of the training data's utterances
    # (soundstorm.train.t2s_task measures them): generate's default bounds on the output length,
    # so that a model unsure of its EOS neither stops at once nor runs on. None: 1 token at least,
    # 8 per symbol + 50 at most.
    min_tokens_per_symbol: float | None = None
    max_tokens_per_symbol: float | None = None

    def __post_init__(self) -> None:
        if self.text_units not in UNITS:
            raise ValueError(f"TextToSemanticConfig.text_units must be one of {UNITS}, got {self.text_units!r}")
        for name in ("semantic_vocab_size", "dim", "depth", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TextToSemanticConfig.{name} must be a positive integer, got {value!r}")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"TextToSemanticConfig.{name} must be in [0, 1), got {value}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"TextToSemanticConfig.dim ({self.dim}) must split into {self.heads} even-sized heads")
        if self.semantic_rate <= 0:
            raise ValueError("TextToSemanticConfig.semantic_rate must be > 0")
        low, high = self.min_tokens_per_symbol, self.max_tokens_per_symbol
        if (low is not None and low < 0) or (high is not None and high <= 0) or \
                (low is not None and high is not None and low > high):
            raise ValueError(f"TextToSemanticConfig tokens per symbol: need 0 <= min <= max and max > 0, "
                             f"got min {low!r}, max {high!r}")

    def length_bounds(self, text_symbols: int, prompt_tokens: int = 0) -> tuple[int, int]:
        """(fewest, most) new semantic tokens for a text of text_symbols symbols (a prompt's text
        included) whose first prompt_tokens tokens are given: the training data's rates applied
        to the whole text, less the prompt."""
        low, high = self.min_tokens_per_symbol, self.max_tokens_per_symbol
        most = 8 * text_symbols + 50 if high is None else max(1, math.ceil(high * text_symbols) - prompt_tokens)
        fewest = 1 if low is None else max(1, math.floor(low * text_symbols) - prompt_tokens)
        return min(fewest, most), most

    @property
    def text_vocab_size(self) -> int:
        return TextSymbols.vocab_size_of(self.text_units)



@dataclass
class TextToSemanticOutput:
    loss: Tensor  # scalar, mean cross-entropy over semantic tokens and EOS (EOS weighted by eos_weight)
    correct: Tensor  # correctly predicted tokens
    count: Tensor  # predicted tokens
    eos_correct: Tensor  # sequences whose EOS is the argmax at their end
    eos_probability: Tensor  # sum over sequences of p(EOS) at their end


class TextToSemantic(nn.Module):
    def __init__(self, config: TextToSemanticConfig) -> None:
        super().__init__()
        self.config = config
        Tv, V = config.text_vocab_size, config.semantic_vocab_size
        self.sep = Tv  # input vocabulary: text ids, SEP, semantic ids, EOS
        self.semantic_offset = Tv + 1
        self.eos = V  # output vocabulary: semantic ids, EOS
        self.embedding = nn.Embedding(Tv + 1 + V + 1, config.dim)
        self.decoder = CausalDecoder(config.dim, config.depth, config.heads, int(config.ff_mult * config.dim),
                                     config.dropout, config.rope_base, config.attention_dropout)
        self.head = nn.Linear(config.dim, V + 1)

    def _sequence(self, text: Tensor, semantic: Tensor, eos: bool) -> Tensor:
        """text [Lt], semantic [S] -> input ids [Lt + 1 + S (+ 1)]."""
        parts = [text, text.new_full((1,), self.sep), semantic + self.semantic_offset]
        if eos:
            parts.append(text.new_full((1,), self.semantic_offset + self.eos))
        return torch.cat(parts)

    def forward(self, text: Tensor, text_lengths: Tensor, semantic: Tensor, semantic_lengths: Tensor,
                eos_weight: float = 1.0) -> TextToSemanticOutput:
        """Teacher-forced loss. text int64 [B, Lt] and semantic int64 [B, S], padded at the end,
        with their lengths [B]. eos_weight > 1 weighs each sequence's one EOS target above its
        hundreds of semantic targets (the loss is the weighted mean): unweighted, a small model
        learns the tokens long before it learns where to stop."""
        B = text.shape[0]
        sequences = [self._sequence(text[b, : int(text_lengths[b])], semantic[b, : int(semantic_lengths[b])], eos=True)
                     for b in range(B)]
        L = max(len(s) for s in sequences)
        ids = text.new_zeros(B, L)
        targets = torch.full_like(ids, -1)  # target at position i: output id of token i + 1
        for b, sequence in enumerate(sequences):
            ids[b, : len(sequence)] = sequence
            start = int(text_lengths[b])  # SEP's position: it predicts the first semantic token
            targets[b, start : len(sequence) - 1] = sequence[start + 1 :] - self.semantic_offset
        hidden = self.decoder(self.embedding(ids))  # [B, L, D]
        chosen = targets >= 0
        logits = self.head(hidden[chosen]).float()  # [M, V + 1]
        wanted = targets[chosen]
        at_eos = wanted == self.eos
        weights = torch.where(at_eos, eos_weight, 1.0)
        loss = (F.cross_entropy(logits, wanted, reduction="none") * weights).sum() / weights.sum()
        predicted = logits.argmax(dim=-1)
        eos_probability = logits[at_eos].detach().softmax(dim=-1)[:, self.eos].sum()
        return TextToSemanticOutput(loss, (predicted == wanted).sum(), chosen.sum(),
                                    (predicted[at_eos] == self.eos).sum(), eos_probability)

    @torch.inference_mode()
    def generate(self, text: Tensor, prompt_semantic: Tensor | None = None, max_tokens: int | None = None,
                 temperature: float = 1.0, top_k: int | None = None, min_tokens: int | None = None,
                 eos_threshold: float | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Semantic tokens int64 [S] for one text int64 [Lt] (ids of TextSymbols(config.text_units),
        prompt text included), continuing prompt_semantic [P] (not repeated in the output).
        Stops at EOS, never before min_tokens nor after max_tokens (defaults: the training data's
        rates, TextToSemanticConfig.length_bounds).

        eos_threshold: also stop as soon as the model gives EOS at least this probability (its own
        distribution, before temperature and top-k), as Tacotron's stop token does. At the end of
        an utterance EOS competes with the silence tokens that every utterance ends in, and "more
        silence" often keeps the argmax although EOS holds a large share (docs/t2s_stopping.md).
        None: stop only when EOS is the token decoded."""
        return self.generate_many(text, 1, prompt_semantic, max_tokens, temperature, top_k, min_tokens,
                                  eos_threshold, generator)[0]

    @torch.inference_mode()
    def generate_many(self, text: Tensor, num_samples: int, prompt_semantic: Tensor | None = None,
                      max_tokens: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                      min_tokens: int | None = None, eos_threshold: float | None = None,
                      generator: torch.Generator | None = None) -> list[Tensor]:
        """num_samples independent draws [S_i] of `generate` for the same text and prompt, decoded
        as one batch: the prompt is read once and each step runs the samples together (on this
        project's 2-core CPU 2 samples cost 1.3x the text-to-semantic time of one, 4 samples 2.2x:
        docs/intelligibility.md). One sample draws exactly what `generate` does."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        prompt = self._check(text, prompt_semantic, eos_threshold)
        fewest, most = self.config.length_bounds(len(text), len(prompt))
        limit = max_tokens if max_tokens is not None else most
        min_tokens = min(min_tokens if min_tokens is not None else fewest, limit)
        N = num_samples
        cache = KVCache()
        hidden = self.decoder(self.embedding(self._sequence(text, prompt, eos=False)[None]), cache)[:, -1]  # [1, D]
        if N > 1:
            cache.repeat(N)
            hidden = hidden.expand(N, -1)  # [N, D]
        return self._decode(hidden, cache, torch.full((N,), min_tokens), torch.full((N,), max(limit, 0)),
                            temperature, top_k, eos_threshold, generator, text.device)

    @torch.inference_mode()
    def generate_batch(self, texts: Sequence[Tensor], prompts: Sequence[Tensor | None] | None = None,
                       temperature: float = 1.0, top_k: int | None = None, eos_threshold: float | None = None,
                       generators: Sequence[torch.Generator] | None = None,
                       bounds: Sequence[tuple[int, int] | None] | None = None) -> list[Tensor]:
        """`generate` for several texts (each with its own prompt or None, and its own random
        stream) as one batch: the sequences are left-padded to one length (CausalDecoder.forward's
        valid) and step on together, each stopping at its own EOS or bounds. Each text gets what
        it gets alone, up to the float rounding of the padded matrix products (a near-tie between
        tokens can then go the other way, and the samples after it); a batch of sentences costs
        a little more than its longest alone, where one after the other costs the sum.

        bounds: each text's (fewest, most) tokens, as generate's min_tokens and max_tokens, or
        None for the training data's rates (TextToSemanticConfig.length_bounds)."""
        N = len(texts)
        prompts = list(prompts) if prompts is not None else [None] * N
        given = list(bounds) if bounds is not None else [None] * N
        if len(prompts) != N or len(given) != N or (generators is not None and len(generators) != N):
            raise ValueError(f"give one prompt (or None), one generator and one bounds (or None) per text: {N} texts, "
                             f"{len(prompts)} prompts, {'no' if generators is None else len(generators)} generators, "
                             f"{len(given)} bounds")
        if N == 0:
            return []
        checked = [self._check(text, prompt, eos_threshold) for text, prompt in zip(texts, prompts)]
        sequences = [self._sequence(text, prompt, eos=False) for text, prompt in zip(texts, checked)]
        L, device = max(len(sequence) for sequence in sequences), texts[0].device
        ids = torch.zeros(N, L, dtype=torch.long, device=device)
        valid = torch.zeros(N, L, dtype=torch.bool, device=device)
        for n, sequence in enumerate(sequences):
            ids[n, L - len(sequence) :] = sequence
            valid[n, L - len(sequence) :] = True
        cache = KVCache()
        hidden = self.decoder(self.embedding(ids), cache, valid=valid if not bool(valid.all()) else None)[:, -1]
        limits = [own if own is not None else self.config.length_bounds(len(text), len(prompt))
                  for own, text, prompt in zip(given, texts, checked)]
        most = torch.tensor([max(high, 0) for _, high in limits])
        fewest = torch.minimum(torch.tensor([low for low, _ in limits]), most)
        return self._decode(hidden, cache, fewest, most, temperature, top_k, eos_threshold,
                            None if generators is None else list(generators), device)

    def _check(self, text: Tensor, prompt_semantic: Tensor | None, eos_threshold: float | None) -> Tensor:
        """Refuse bad input to generation; -> the prompt [P] (empty for none) on text's device."""
        if eos_threshold is not None and not 0.0 < eos_threshold <= 1.0:
            raise ValueError(f"eos_threshold must be in (0, 1] or None, got {eos_threshold!r}")
        if text.dim() != 1 or text.dtype != torch.long or len(text) == 0:
            raise ValueError(f"text must be a non-empty int64 [Lt], got {text.dtype} {tuple(text.shape)}")
        if int(text.min()) < 0 or int(text.max()) >= self.config.text_vocab_size:
            raise ValueError(f"text ids must be in [0, {self.config.text_vocab_size})")
        prompt = text.new_zeros(0) if prompt_semantic is None else prompt_semantic.to(text.device)
        if len(prompt) and (int(prompt.min()) < 0 or int(prompt.max()) >= self.config.semantic_vocab_size):
            raise ValueError(f"prompt semantic tokens must be in [0, {self.config.semantic_vocab_size})")
        return prompt

    def _decode(self, hidden: Tensor, cache: KVCache, fewest: Tensor, most: Tensor, temperature: float,
                top_k: int | None, eos_threshold: float | None, generator: torch.Generator | list[torch.Generator] | None,
                device: torch.device) -> list[Tensor]:
        """Sample N sequences step by step from the hidden states [N, D] after their prefixes
        (in cache): sequence n never stops before fewest[n] tokens nor runs past most[n] ([N]
        int64, on the CPU). One generator for all, or one per sequence."""
        N = hidden.shape[0]
        limit = int(most.max())
        out = torch.zeros(N, max(limit, 0), dtype=torch.long)
        lengths = most.clone()  # a sample that never stops ends at its limit
        running = torch.ones(N, dtype=torch.bool)
        for position in range(limit):
            running &= position < most  # at its limit: its length is set
            if not running.any():
                break
            logits = self.head(hidden).float()  # [N, V + 1]
            early = position < fewest  # [N]
            if bool(early.all()):
                logits[:, self.eos] = float("-inf")
            else:
                if bool(early.any()):
                    logits[early.to(logits.device), self.eos] = float("-inf")
                if eos_threshold is not None:
                    stop = running & ~early & (logits.softmax(dim=-1)[:, self.eos].cpu() >= eos_threshold)
                    lengths[stop] = position
                    running &= ~stop
                    if not running.any():
                        break
            if temperature == 0:
                tokens = logits.argmax(dim=-1)
            else:
                probs = filter_logits(logits / temperature, top_k, None).softmax(dim=-1)
                tokens = sample_codes(probs[:, None], generator)[:, 0]  # [N]
            tokens = tokens.cpu()
            ended = running & (tokens == self.eos)
            lengths[ended] = position
            running &= ~ended
            if not running.any():
                break
            out[:, position] = tokens.masked_fill(~running, 0)  # a finished sample's steps are never read
            step = (out[:, position] + self.semantic_offset).to(device)  # [N]
            hidden = self.decoder.step(self.embedding(step), cache)  # [N, D]
        return [out[n, : int(lengths[n])].to(device) for n in range(N)]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        save_model(self, self.config, path, dtype=dtype)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> TextToSemantic:
        return load_model(cls, TextToSemanticConfig, path, map_location)
