"""A synthetic task on which iterative decoding visibly beats one-shot decoding.

Each sequence has a hidden "speaker" s (one of `num_speakers`) and random semantic tokens.
Every frame's codes are fixed by the pair (speaker, semantic token of the frame):
codes[t, q] = table[q, s, semantic[t]], each level's table a random permutation of the K
codes. Content comes from the semantic tokens, and the voice must be the same in every
frame: the frames of a sequence have to agree with each other, as in real speech.

One-shot decoding predicts every frame at once; each frame picks its own most likely speaker
and the voice changes from frame to frame. Iterative decoding commits to a few frames first
and the rest follow them: one voice throughout. This is SoundStorm's argument in miniature,
and the project's end-to-end check that training and decoding work together.

Notation: B batch, T frames, S semantic tokens, Q levels, K = num_speakers * semantic_vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from soundstorm.model.config import SoundStormConfig

if TYPE_CHECKING:
    from soundstorm.model.soundstorm import SoundStorm


@dataclass(frozen=True)
class ToyTask:
    num_speakers: int = 4
    semantic_vocab_size: int = 8
    num_quantizers: int = 3
    semantic_rate_ratio: int = 2
    num_frames: int = 32
    seed: int = 0  # fixes the code tables

    @property
    def codebook_size(self) -> int:
        return self.num_speakers * self.semantic_vocab_size

    def tables(self) -> Tensor:
        """int64 [Q, speakers, semantic vocab]: the code of each (level, speaker, content)."""
        generator = torch.Generator().manual_seed(self.seed)
        perms = [torch.randperm(self.codebook_size, generator=generator) for _ in range(self.num_quantizers)]
        return torch.stack(perms).view(self.num_quantizers, self.num_speakers, self.semantic_vocab_size)

    def model_config(self, **overrides: object) -> SoundStormConfig:
        values: dict[str, object] = dict(dim=64, depth=2, heads=4, ff_mult=2.0)
        values.update(overrides)
        return SoundStormConfig(
            codebook_size=self.codebook_size,
            num_quantizers=self.num_quantizers,
            semantic_vocab_size=self.semantic_vocab_size,
            semantic_rate_ratio=self.semantic_rate_ratio,
            **values,  # type: ignore[arg-type]
        )

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """codes int64 [B, T, Q], semantic tokens int64 [B, S], speakers int64 [B]."""
        T, ratio = self.num_frames, self.semantic_rate_ratio
        S = -(-T // ratio)
        speakers = torch.randint(self.num_speakers, (batch_size,), generator=generator)  # [B]
        semantic = torch.randint(self.semantic_vocab_size, (batch_size, S), generator=generator)
        per_frame = semantic.repeat_interleave(ratio, dim=1)[:, :T]  # [B, T]
        return self.codes_for(speakers, per_frame), semantic, speakers

    def codes_for(self, speakers: Tensor, per_frame_semantic: Tensor) -> Tensor:
        """The true codes int64 [B, T, Q] of speakers [B] saying per_frame_semantic [B, T]."""
        tables = self.tables()  # [Q, speakers, V]
        by_level = tables[:, speakers[:, None], per_frame_semantic]  # [Q, B, T]
        return by_level.permute(1, 2, 0).contiguous()

    def consistency(self, codes: Tensor, semantic: Tensor) -> Tensor:
        """Per sequence, the fraction of frames whose Q codes are exactly those of the sequence's
        most common speaker: 1.0 = one consistent voice. codes [B, T, Q] -> float [B]."""
        B, T, Q = codes.shape
        per_frame = semantic.repeat_interleave(self.semantic_rate_ratio, dim=1)[:, :T]  # [B, T]
        tables = self.tables()
        # Which speaker each frame's level-0 code belongs to (-1: belongs to none, for this content).
        level0 = tables[0][:, per_frame]  # [speakers, B, T]
        match = level0 == codes[None, :, :, 0]  # [speakers, B, T]
        frame_speaker = torch.where(match.any(0), match.float().argmax(0), -1)  # [B, T]
        scores = []
        for b in range(B):
            candidates = frame_speaker[b][frame_speaker[b] >= 0]
            if candidates.numel() == 0:
                scores.append(0.0)
                continue
            speaker = int(candidates.mode().values)
            expected = self.codes_for(torch.tensor([speaker]), per_frame[b : b + 1])[0]  # [T, Q]
            scores.append((expected == codes[b]).all(dim=-1).float().mean().item())
        return torch.tensor(scores)


def train_toy_model(
    task: ToyTask,
    *,
    max_seconds: float = 60.0,
    max_steps: int = 3000,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    seed: int = 0,
    progress: bool = False,
) -> tuple[SoundStorm, list[float]]:
    """Train a tiny SoundStorm on the toy task; returns the model (in eval mode) and losses.

    A deliberately small loop (AdamW, linear warmup) so that the check has no dependency on the
    training system; users train real models with `soundstorm train`.
    """
    import time

    from tqdm.auto import tqdm

    from soundstorm.model.soundstorm import SoundStorm

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = SoundStorm(task.model_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = 100
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    losses: list[float] = []
    start = time.monotonic()
    bar = tqdm(total=max_steps, disable=not progress, desc="toy training", unit="step")
    model.train()
    for _ in range(max_steps):
        codes, semantic, _ = task.sample(batch_size, generator)
        out = model(codes, semantic, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(out.loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if time.monotonic() - start > max_seconds:
            break
    bar.close()
    return model.eval(), losses
