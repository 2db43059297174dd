"""AudioLM's acoustic stages 2 and 3 (Borsos et al., 2022), autoregressive: what SoundStorm replaces.

    coarse stage   [semantic tokens (S), SEP, a(0,1) a(0,2) .. a(0,Qc), a(1,1) ..]
                   a decoder-only transformer over the first Qc levels flattened frame by frame,
                   conditioned on the semantic tokens of the whole utterance as a prefix;
    fine stage     [coarse tokens of a chunk (C frames x Qc), SEP, fine tokens (C x Qf)]
                   a second one over the remaining levels, conditioned on the coarse ones, in
                   independent chunks of `fine_chunk_frames` (AudioLM: 3 s).

A voice prompt is a prefix: its coarse tokens follow SEP in the coarse stage, its fine tokens
follow SEP in the fine chunks it covers. Generation is KV-cached: one forward pass per token
(T * Q passes for T frames, against SoundStorm's sum(steps)), each attending over the cache.
Each position predicts a token of one known level, so the softmax runs over that level's K
codes only, in training and in generation.

Notation: B batch, T frames, Q levels = Qc coarse + Qf fine, K codes, S semantic tokens,
V semantic vocabulary, L sequence length, C chunk frames, D width.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soundstorm.baselines.config import ARAcousticConfig
from soundstorm.checkpoint import load_model, save_model
from soundstorm.decoding import filter_logits, sample_codes
from soundstorm.model.decoder import CausalDecoder, KVCache


@dataclass
class ARAcousticOutput:
    loss: Tensor  # scalar, coarse + fine cross-entropy
    coarse_loss: Tensor  # scalar
    fine_loss: Tensor  # scalar
    level_correct: Tensor  # float [Q], correctly predicted tokens per level
    level_count: Tensor  # float [Q], predicted tokens per level


@dataclass
class ARGeneration:
    codes: Tensor  # int64 [B, T, Q], prompt included
    forward_passes: int  # decoder calls, both stages


class Stage(nn.Module):
    """One decoder-only transformer: input vocabulary -> hidden states -> logits of its levels."""

    def __init__(self, config: ARAcousticConfig, vocab_size: int, levels: int) -> None:
        super().__init__()
        self.K = config.codebook_size
        self.embedding = nn.Embedding(vocab_size, config.dim)
        self.decoder = CausalDecoder(config.dim, config.depth, config.heads, int(config.ff_mult * config.dim),
                                     config.dropout, config.rope_base, config.attention_dropout)
        self.head = nn.Linear(config.dim, levels * config.codebook_size)

    def hidden(self, ids: Tensor, cache: KVCache | None = None) -> Tensor:
        return self.decoder(self.embedding(ids), cache)  # [B, L, D]

    def level_logits(self, hidden: Tensor, level: int) -> Tensor:
        """hidden [..., D] -> logits [..., K] of the stage's level-th level (0-based)."""
        K = self.K
        return F.linear(hidden, self.head.weight[level * K : (level + 1) * K], self.head.bias[level * K : (level + 1) * K])


def _level_losses(stage: Stage, hidden: Tensor, targets: Tensor, levels: Tensor, num_levels: int,
                  correct: Tensor, count: Tensor, offset: int) -> Tensor:
    """Cross-entropy summed over predicted positions, each over its own level's K codes.

    hidden [B, L, D]; targets int64 [B, L] codes in [0, K) (-1 = no prediction); levels [B, L]."""
    total = hidden.new_zeros((), dtype=torch.float32)
    for level in range(num_levels):
        chosen = (levels == level) & (targets >= 0)  # [B, L]
        if not bool(chosen.any()):
            continue
        logits = stage.level_logits(hidden[chosen], level).float()  # [M, K]
        wanted = targets[chosen]
        total = total + F.cross_entropy(logits, wanted, reduction="sum")
        correct[offset + level] += (logits.argmax(dim=-1) == wanted).sum()
        count[offset + level] += chosen.sum()
    return total


class ARAcousticModel(nn.Module):
    def __init__(self, config: ARAcousticConfig) -> None:
        super().__init__()
        self.config = config
        V, K, Qc, Q = config.semantic_vocab_size, config.codebook_size, config.coarse_levels, config.num_quantizers
        self.coarse_sep = V + Qc * K  # coarse vocabulary: semantic ids, coarse codes, SEP
        self.fine_sep = Q * K  # fine vocabulary: all codes, SEP
        self.coarse = Stage(config, V + Qc * K + 1, Qc)
        self.fine = Stage(config, Q * K + 1, config.fine_levels)

    # ------------------------------------------------------------------ sequences

    def _coarse_sequence(self, semantic: Tensor, codes: Tensor) -> Tensor:
        """One example: semantic [S], codes [T, Q] -> ids [S + 1 + T * Qc]."""
        V, K, Qc = self.config.semantic_vocab_size, self.config.codebook_size, self.config.coarse_levels
        acoustic = codes[:, :Qc] + V + K * torch.arange(Qc, device=codes.device)  # [T, Qc]
        sep = semantic.new_full((1,), self.coarse_sep)
        return torch.cat([semantic, sep, acoustic.flatten()])

    def _fine_sequence(self, codes: Tensor) -> Tensor:
        """One chunk: codes [C, Q] -> ids [C * Qc + 1 + C * Qf]."""
        K, Qc, Q = self.config.codebook_size, self.config.coarse_levels, self.config.num_quantizers
        ids = codes + K * torch.arange(Q, device=codes.device)  # [C, Q], level offsets
        sep = codes.new_full((1,), self.fine_sep)
        return torch.cat([ids[:, :Qc].flatten(), sep, ids[:, Qc:].flatten()])

    def forward(self, codes: Tensor, semantic: Tensor, lengths: Tensor, generator: torch.Generator | None = None) -> ARAcousticOutput:
        """Teacher-forced losses of both stages. codes int64 [B, T, Q], semantic int64 [B, S]
        (S = ceil(T / r) for r frames per semantic token), lengths [B] in frames. The fine
        stage trains on one random chunk of each example (generator picks it)."""
        config = self.config
        B, T, Q = codes.shape
        if Q != config.num_quantizers:
            raise ValueError(f"codes have {Q} levels, the model has {config.num_quantizers}")
        Qc, Qf, C = config.coarse_levels, config.fine_levels, config.fine_chunk_frames
        ratio = config.semantic_rate_ratio
        correct = codes.new_zeros(Q, dtype=torch.float32)
        count = codes.new_zeros(Q, dtype=torch.float32)

        # Coarse: sequences padded at the end (causal attention never looks at the padding).
        sequences, starts = [], []
        for b in range(B):
            n = int(lengths[b])
            sequences.append(self._coarse_sequence(semantic[b, : -(-n // ratio)], codes[b, :n]))
            starts.append(-(-n // ratio) + 1)  # position of the first acoustic token
        ids, targets, levels = self._teacher_forcing(sequences, starts, Qc, V_offset=config.semantic_vocab_size)
        hidden = self.coarse.hidden(ids)
        coarse_sum = _level_losses(self.coarse, hidden, targets, levels, Qc, correct, count, offset=0)

        sequences, starts = [], []
        for b in range(B):
            n = int(lengths[b])
            c = min(C, n)
            start = int(torch.randint(0, n - c + 1, (1,), generator=generator)) if n > c else 0
            sequences.append(self._fine_sequence(codes[b, start : start + c]))
            starts.append(c * Qc + 1)
        ids, targets, levels = self._teacher_forcing(sequences, starts, Qf, V_offset=Qc * config.codebook_size)
        hidden = self.fine.hidden(ids)
        fine_sum = _level_losses(self.fine, hidden, targets, levels, Qf, correct, count, offset=Qc)

        coarse_loss = coarse_sum / count[:Qc].sum().clamp(min=1)
        fine_loss = fine_sum / count[Qc:].sum().clamp(min=1)
        return ARAcousticOutput(coarse_loss + fine_loss, coarse_loss, fine_loss, correct, count)

    def _teacher_forcing(self, sequences: list[Tensor], starts: list[int], num_levels: int,
                         V_offset: int) -> tuple[Tensor, Tensor, Tensor]:
        """Pad sequences into ids [B, L]; the target at position i is the code of token i + 1
        when that token is predicted (at or after `start`), else -1; levels [B, L] its level."""
        K = self.config.codebook_size
        L = max(len(s) for s in sequences)
        ids = sequences[0].new_zeros(len(sequences), L)
        targets = torch.full_like(ids, -1)
        levels = torch.zeros_like(ids)
        for b, (sequence, start) in enumerate(zip(sequences, starts)):
            ids[b, : len(sequence)] = sequence
            predicted = sequence[start:]  # the tokens this stage generates
            targets[b, start - 1 : len(sequence) - 1] = (predicted - V_offset) % K
            levels[b, start - 1 : len(sequence) - 1] = torch.arange(len(predicted), device=ids.device) % num_levels
        return ids, targets, levels

    # ------------------------------------------------------------------ generation

    def _sample(self, logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> Tensor:
        """logits [B, K] -> codes [B]."""
        if temperature == 0:
            return logits.argmax(dim=-1)
        probs = filter_logits(logits.float() / temperature, top_k, None).softmax(dim=-1)
        return sample_codes(probs[:, None], generator)[:, 0]

    def _continue(self, stage: Stage, prefix: Tensor, num_new: int, first_level: int, num_levels: int, offsets: Tensor,
                  temperature: float, top_k: int | None, generator: torch.Generator | None) -> tuple[Tensor, int]:
        """Generate num_new codes after prefix ids [B, L0]; the first has level first_level.
        Returns codes [B, num_new] (without level offsets) and the forward passes made."""
        B = prefix.shape[0]
        out = prefix.new_zeros(B, num_new)
        if num_new == 0:
            return out, 0
        cache = KVCache()
        hidden = stage.hidden(prefix, cache)[:, -1]  # [B, D]
        passes = 1
        for i in range(num_new):
            level = (first_level + i) % num_levels
            code = self._sample(stage.level_logits(hidden, level), temperature, top_k, generator)  # [B]
            out[:, i] = code
            if i + 1 < num_new:
                hidden = stage.decoder.step(stage.embedding(code + offsets[level]), cache)  # [B, D]
                passes += 1
        return out, passes

    @torch.inference_mode()
    def generate(self, semantic: Tensor, num_frames: int | None = None, prompt_codes: Tensor | None = None,
                 temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> ARGeneration:
        """Codes [B, T, Q] for semantic tokens [B, S] (of prompt and continuation), token by token.

        num_frames: T (default S * semantic_rate_ratio); prompt_codes [B, P, Q]
        are the first P frames, kept. Every example of a batch has the same length."""
        config = self.config
        K, Qc, Qf, Q, C = (config.codebook_size, config.coarse_levels, config.fine_levels,
                           config.num_quantizers, config.fine_chunk_frames)
        if semantic.dim() != 2 or semantic.dtype != torch.long:
            raise ValueError(f"semantic must be int64 [B, S], got {semantic.dtype} {tuple(semantic.shape)}")
        if int(semantic.min()) < 0 or int(semantic.max()) >= config.semantic_vocab_size:
            raise ValueError(f"semantic tokens must be in [0, {config.semantic_vocab_size})")
        B, S = semantic.shape
        T = num_frames if num_frames is not None else S * config.semantic_rate_ratio
        if -(-T // config.semantic_rate_ratio) != S:
            raise ValueError(f"semantic tokens for {T} frames must number ceil(T / {config.semantic_rate_ratio}), got {S}")
        P = 0 if prompt_codes is None else prompt_codes.shape[1]
        if prompt_codes is not None:
            if prompt_codes.dim() != 3 or prompt_codes.shape[0] != B or prompt_codes.shape[2] != Q:
                raise ValueError(f"prompt_codes must be [B, P, Q] = [{B}, P, {Q}], got {tuple(prompt_codes.shape)}")
            if not 0 < P < T:
                raise ValueError(f"the prompt ({P} frames) must be shorter than the output ({T} frames)")
        device = semantic.device
        codes = torch.zeros(B, T, Q, dtype=torch.long, device=device)
        if prompt_codes is not None:
            codes[:, :P] = prompt_codes

        # Coarse stage: the whole utterance, after the semantic prefix and the prompt's coarse tokens.
        coarse_offsets = config.semantic_vocab_size + K * torch.arange(Qc, device=device)
        prefix = torch.cat([semantic, semantic.new_full((B, 1), self.coarse_sep),
                            (codes[:, :P, :Qc] + coarse_offsets).flatten(1)], dim=1)
        new, passes = self._continue(self.coarse, prefix, (T - P) * Qc, 0, Qc, coarse_offsets, temperature, top_k, generator)
        codes[:, P:, :Qc] = new.view(B, T - P, Qc)

        # Fine stage: independent chunks, each after its coarse tokens and the prompt's fine ones.
        fine_offsets = K * torch.arange(Qc, Q, device=device)
        for start in range(0, T, C):
            chunk = codes[:, start : start + C]  # [B, c, Q]
            c = chunk.shape[1]
            known = max(0, min(P - start, c))
            ids = chunk + K * torch.arange(Q, device=device)
            prefix = torch.cat([ids[:, :, :Qc].flatten(1), semantic.new_full((B, 1), self.fine_sep),
                                ids[:, :known, Qc:].flatten(1)], dim=1)
            new, chunk_passes = self._continue(self.fine, prefix, (c - known) * Qf, 0, Qf, fine_offsets,
                                               temperature, top_k, generator)
            codes[:, start + known : start + c, Qc:] = new.view(B, c - known, Qf)
            passes += chunk_passes
        return ARGeneration(codes, passes)

    # ------------------------------------------------------------------ checkpoints

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        save_model(self, self.config, path, dtype=dtype)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> ARAcousticModel:
        return load_model(cls, ARAcousticConfig, path, map_location)
