"""SoundStorm: a bidirectional Conformer over summed per-frame RVQ token embeddings.

Notation: B batch, T acoustic frames, S semantic tokens, Q quantizer levels, K codes per
level, D model width. Levels are 0-based in code (level 0 is the paper's level 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soundstorm import masking
from soundstorm.model.config import SoundStormConfig
from soundstorm.model.conformer import Conformer
from soundstorm.model.inputs import check_codes, check_lengths, check_semantic, check_token_range
from soundstorm.model.prompt_states import PromptStates

if TYPE_CHECKING:
    from soundstorm.decoding import DecodeStep


@dataclass
class SoundStormOutput:
    """What one training forward pass returns."""

    loss: Tensor  # [] mean cross-entropy over the masked tokens of each example's level
    logits: Tensor  # [B, T, K] float32, logits of each example's trained level
    targets: Tensor  # [B, T] int64, the true codes of each example's trained level
    mask: masking.TrainingMask  # the mask that was applied
    level_loss_sum: Tensor  # [Q] summed cross-entropy of the loss tokens, by level
    level_correct: Tensor  # [Q] loss tokens predicted right (argmax), by level
    level_count: Tensor  # [Q] loss tokens, by level

    @property
    def level_accuracy(self) -> Tensor:
        """[Q] masked-token accuracy by level; NaN for a level no example trained."""
        return self.level_correct / self.level_count


class SoundStorm(nn.Module):
    def __init__(self, config: SoundStormConfig) -> None:
        super().__init__()
        self.config = config
        K, Q, D = config.codebook_size, config.num_quantizers, config.dim
        # One table per level, each with K codes + MASK, stored as one flat table so that the
        # Q embeddings of a frame are gathered and summed by a single embedding_bag call.
        self.code_embedding = nn.EmbeddingBag(Q * (K + 1), D, mode="sum")
        self.register_buffer("level_offsets", torch.arange(Q) * (K + 1), persistent=False)  # [Q]
        # Semantic ids, plus the null condition for classifier-free guidance.
        self.semantic_embedding = (
            nn.Embedding(config.semantic_vocab_size + 1, D) if config.conditional else None
        )
        self.conformer = Conformer(
            dim=D,
            depth=config.depth,
            heads=config.heads,
            ff_dim=config.ff_dim,
            kernel_size=config.conv_kernel_size,
            dropout=config.dropout,
            rope_base=config.rope_base,
            attention_dropout=config.attention_dropout,
        )
        # One linear head per level, stacked so that only the level being trained or decoded
        # is ever computed.
        self.head_weight = nn.Parameter(torch.empty(Q, K, D))
        self.head_bias = nn.Parameter(torch.zeros(Q, K))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
                nn.init.normal_(module.weight, std=0.02)
        nn.init.normal_(self.head_weight, std=0.02)
        nn.init.zeros_(self.head_bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- building blocks, shared by training and decoding ----------------------------------

    def embed_condition(self, semantic_tokens: Tensor | None, num_frames: int) -> Tensor | None:
        """Semantic tokens [B, S] -> per-frame conditioning [B, T, D], by repetition (paper)."""
        if self.semantic_embedding is None or semantic_tokens is None:
            return None
        ratio = self.config.semantic_rate_ratio
        per_frame = semantic_tokens.repeat_interleave(ratio, dim=1)[:, :num_frames]  # [B, T]
        return self.semantic_embedding(per_frame)  # [B, T, D]

    def null_condition(self, batch_size: int, num_frames: int) -> Tensor | None:
        """The 'no condition' embedding [B, T, D] that condition dropout trains."""
        if self.semantic_embedding is None:
            return None
        null = self.semantic_embedding.weight[self.config.null_semantic_id]  # [D]
        return null.expand(batch_size, num_frames, -1)

    def embed(self, codes: Tensor, condition: Tensor | None) -> Tensor:
        """codes [B, T, Q] (MASK allowed), condition [B, T, D] -> the Conformer's input [B, T, D]."""
        B, T, Q = codes.shape
        ids = (codes + self.level_offsets).reshape(B * T, Q)  # [B*T, Q] ids into the flat table
        x = self.code_embedding(ids).view(B, T, -1)  # [B, T, D], the sum over levels
        return x if condition is None else x + condition

    def hidden_states(self, codes: Tensor, condition: Tensor | None, valid: Tensor | None,
                      record: PromptStates | None = None) -> Tensor:
        """codes [B, T, Q] (MASK allowed), condition [B, T, D] -> Conformer output [B, T, D];
        record: an empty PromptStates of the batch's prompt lengths, filled by this pass."""
        return self.conformer(self.embed(codes, condition), valid, record)

    def hidden_states_after_prompt(self, codes: Tensor, condition: Tensor | None, valid: Tensor,
                                   prompt: PromptStates) -> Tensor:
        """hidden_states at the frames after each example's prompt, over its recorded states:
        codes [B, G, Q], condition [B, G, D] and valid [B, G] of those frames, left-aligned
        (frame g of example b is its frame prompt.lengths[b] + g) -> [B, G, D]."""
        return self.conformer.forward_after_prompt(self.embed(codes, condition), valid, prompt)

    def level_logits(self, hidden: Tensor, level: int) -> Tensor:
        """Logits of one level for every example: hidden [B, T, D] -> [B, T, K], at least float32."""
        logits = F.linear(hidden, self.head_weight[level], self.head_bias[level])
        return logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 -> float32

    def example_level_logits(self, hidden: Tensor, levels: Tensor) -> Tensor:
        """Logits of level levels[b] for example b: hidden [B, T, D] -> [B, T, K], at least float32."""
        weight = self.head_weight[levels]  # [B, K, D]
        bias = self.head_bias[levels]  # [B, K]
        logits = torch.baddbmm(bias[:, None, :], hidden, weight.transpose(1, 2))
        return logits.to(torch.promote_types(logits.dtype, torch.float32))

    # ---- training ----------------------------------------------------------------------------

    def forward(
        self,
        codes: Tensor,
        semantic_tokens: Tensor | None = None,
        lengths: Tensor | None = None,
        *,
        mask: masking.TrainingMask | None = None,
        cond_drop_prob: float = 0.0,
        generator: torch.Generator | None = None,
        train_levels: int | None = None,
        level_weights: Sequence[float] | None = None,
    ) -> SoundStormOutput:
        """One training step's loss under SoundStorm's masking (DESIGN.md section 3).

        Args:
            codes: int64 [B, T, Q] acoustic tokens in [0, K); padded frames may hold anything.
            semantic_tokens: int64 [B, ceil(T / semantic_rate_ratio)], for a conditional model.
            lengths: int64 [B] valid frames per example (default: all T).
            mask: a mask to apply instead of sampling one (tests, analysis).
            cond_drop_prob: probability of replacing an example's condition with the null
                condition, which trains the model for classifier-free guidance.
            generator: random source for the mask and the condition dropout.
            train_levels: train only the first train_levels levels (masking.sample_training_mask's
                num_levels), for a model decoded with steps for those levels only. Default: all Q.
            level_weights: how often each trained level is the one trained (masking's
                level_weights). Default: uniform.
        """
        config = self.config
        codes = check_codes(codes, config)
        B, T, Q = codes.shape
        device = codes.device
        lengths = check_lengths(lengths, B, T).to(device)
        valid = torch.arange(T, device=device) < lengths[:, None]  # [B, T]
        check_token_range(codes, valid, config.codebook_size, "codes")
        semantic_tokens = check_semantic(semantic_tokens, config, B, T, lengths)
        if not 0.0 <= cond_drop_prob <= 1.0:
            raise ValueError(f"cond_drop_prob must be in [0, 1], got {cond_drop_prob}")

        if mask is None:
            mask = masking.sample_training_mask(lengths, T, Q, generator=generator, num_levels=train_levels,
                                                level_weights=level_weights)
        inputs = codes.masked_fill(mask.masked | ~valid[:, :, None], config.mask_id)  # [B, T, Q]

        if semantic_tokens is not None:
            semantic_valid = torch.arange(semantic_tokens.shape[1], device=device) < (
                (lengths + config.semantic_rate_ratio - 1) // config.semantic_rate_ratio
            )[:, None]  # [B, S]
            semantic_tokens = semantic_tokens.masked_fill(~semantic_valid, config.null_semantic_id)
            if cond_drop_prob > 0:
                dropped = torch.rand(B, generator=generator, device=device) < cond_drop_prob  # [B]
                semantic_tokens = semantic_tokens.masked_fill(dropped[:, None], config.null_semantic_id)
        condition = self.embed_condition(semantic_tokens, T)

        needs_key_mask = bool((lengths < T).any())
        hidden = self.hidden_states(inputs, condition, valid if needs_key_mask else None)
        logits = self.example_level_logits(hidden, mask.levels)  # [B, T, K]
        targets = codes.gather(2, mask.levels[:, None, None].expand(B, T, 1)).squeeze(2)  # [B, T]
        targets = targets.masked_fill(~mask.loss, 0)  # padding may hold anything; no loss there

        token_loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # [B, T]
        token_loss = token_loss * mask.loss
        loss = token_loss.sum() / mask.loss.sum()

        with torch.no_grad():
            correct = (logits.argmax(dim=-1) == targets) & mask.loss  # [B, T]
            zeros = torch.zeros(Q, device=device, dtype=token_loss.dtype)
            level_loss_sum = zeros.index_add(0, mask.levels, token_loss.detach().sum(dim=1))
            level_correct = zeros.index_add(0, mask.levels, correct.sum(dim=1).to(zeros.dtype))
            level_count = zeros.index_add(0, mask.levels, mask.loss.sum(dim=1).to(zeros.dtype))
        return SoundStormOutput(
            loss=loss,
            logits=logits,
            targets=targets,
            mask=mask,
            level_loss_sum=level_loss_sum,
            level_correct=level_correct,
            level_count=level_count,
        )

    # ---- generation and checkpoints ----------------------------------------------------------

    def generate(
        self,
        semantic_tokens: Tensor | None = None,
        *,
        num_frames: int | None = None,
        lengths: Tensor | None = None,
        prompt_codes: Tensor | None = None,
        prompt_lengths: Tensor | None = None,
        steps: Sequence[int] | None = None,
        temperature: float = 1.0,
        anneal_temperature: bool = False,
        top_k: int | None = None,
        top_p: float | None = None,
        gumbel_scale: float = 0.0,
        guidance_scale: float | Sequence[float] = 1.0,
        prompt_guidance: float = 0.0,
        greedy_last: bool = True,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        callback: Callable[[DecodeStep], None] | None = None,
        return_logits_from: int | None = None,
        prompt_refresh: str = "pass",
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Generate acoustic tokens int64 [B, T, Q] (or [B, T, len(steps)] for a schedule of the
        first levels only), and with return_logits_from the logits of levels from it; see
        soundstorm.decoding.generate."""
        from soundstorm.decoding import generate

        return generate(
            self,
            semantic_tokens=semantic_tokens,
            num_frames=num_frames,
            lengths=lengths,
            prompt_codes=prompt_codes,
            prompt_lengths=prompt_lengths,
            steps=steps,
            temperature=temperature,
            anneal_temperature=anneal_temperature,
            top_k=top_k,
            top_p=top_p,
            gumbel_scale=gumbel_scale,
            guidance_scale=guidance_scale,
            prompt_guidance=prompt_guidance,
            greedy_last=greedy_last,
            generator=generator,
            callback=callback,
            return_logits_from=return_logits_from,
            prompt_refresh=prompt_refresh,
        )

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write `path/config.json` and `path/model.safetensors` atomically."""
        from soundstorm.checkpoint import save_model

        save_model(self, self.config, path, dtype=dtype)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> SoundStorm:
        """Load a folder written by save_pretrained; fails loudly on any mismatch."""
        from soundstorm.checkpoint import load_model

        return load_model(cls, SoundStormConfig, path, map_location=map_location)
