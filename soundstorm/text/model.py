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
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        if self.text_units not in UNITS:
            raise ValueError(f"TextToSemanticConfig.text_units must be one of {UNITS}, got {self.text_units!r}")
        for name in ("semantic_vocab_size", "dim", "depth", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TextToSemanticConfig.{name} must be a positive integer, got {value!r}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"TextToSemanticConfig.dim ({self.dim}) must split into {self.heads} even-sized heads")
        if self.semantic_rate <= 0:
            raise ValueError("TextToSemanticConfig.semantic_rate must be > 0")

    @property
    def text_vocab_size(self) -> int:
        return TextSymbols.vocab_size_of(self.text_units)



@dataclass
class TextToSemanticOutput:
    loss: Tensor  # scalar, mean cross-entropy over semantic tokens and EOS
    correct: Tensor  # correctly predicted tokens
    count: Tensor  # predicted tokens


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
                                     config.dropout, config.rope_base)
        self.head = nn.Linear(config.dim, V + 1)

    def _sequence(self, text: Tensor, semantic: Tensor, eos: bool) -> Tensor:
        """text [Lt], semantic [S] -> input ids [Lt + 1 + S (+ 1)]."""
        parts = [text, text.new_full((1,), self.sep), semantic + self.semantic_offset]
        if eos:
            parts.append(text.new_full((1,), self.semantic_offset + self.eos))
        return torch.cat(parts)

    def forward(self, text: Tensor, text_lengths: Tensor, semantic: Tensor, semantic_lengths: Tensor) -> TextToSemanticOutput:
        """Teacher-forced loss. text int64 [B, Lt] and semantic int64 [B, S], padded at the end,
        with their lengths [B]."""
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
        loss = F.cross_entropy(logits, wanted)
        return TextToSemanticOutput(loss, (logits.argmax(dim=-1) == wanted).sum(), chosen.sum())

    @torch.inference_mode()
    def generate(self, text: Tensor, prompt_semantic: Tensor | None = None, max_tokens: int | None = None,
                 temperature: float = 1.0, top_k: int | None = None, min_tokens: int = 1,
                 generator: torch.Generator | None = None) -> Tensor:
        """Semantic tokens int64 [S] for one text int64 [Lt] (ids of TextSymbols(config.text_units),
        prompt text included), continuing prompt_semantic [P] (not repeated in the output).
        Stops at EOS, or after max_tokens (default: 8 per text symbol + 50)."""
        if text.dim() != 1 or text.dtype != torch.long or len(text) == 0:
            raise ValueError(f"text must be a non-empty int64 [Lt], got {text.dtype} {tuple(text.shape)}")
        if int(text.min()) < 0 or int(text.max()) >= self.config.text_vocab_size:
            raise ValueError(f"text ids must be in [0, {self.config.text_vocab_size})")
        prompt = text.new_zeros(0) if prompt_semantic is None else prompt_semantic.to(text.device)
        if len(prompt) and (int(prompt.min()) < 0 or int(prompt.max()) >= self.config.semantic_vocab_size):
            raise ValueError(f"prompt semantic tokens must be in [0, {self.config.semantic_vocab_size})")
        limit = max_tokens if max_tokens is not None else 8 * len(text) + 50
        cache = KVCache()
        hidden = self.decoder(self.embedding(self._sequence(text, prompt, eos=False)[None]), cache)[:, -1]  # [1, D]
        out: list[int] = []
        while len(out) < limit:
            logits = self.head(hidden).float()  # [1, V + 1]
            if len(out) < min_tokens:
                logits[:, self.eos] = float("-inf")
            if temperature == 0:
                token = int(logits.argmax(dim=-1))
            else:
                probs = filter_logits(logits / temperature, top_k, None).softmax(dim=-1)
                token = int(sample_codes(probs[:, None], generator)[0, 0])
            if token == self.eos:
                break
            out.append(token)
            step = torch.tensor([[token + self.semantic_offset]], device=text.device)
            hidden = self.decoder(self.embedding(step), cache)[:, -1]
        return torch.tensor(out, dtype=torch.long, device=text.device)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        save_model(self, self.config, path, dtype=dtype)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> TextToSemantic:
        return load_model(cls, TextToSemanticConfig, path, map_location)
