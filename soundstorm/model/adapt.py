"""Adapt SoundStorm to one voice from a minute of its tokens (speaker enrolment).

    adapted = adapt_soundstorm(model, [(codes, semantic), ...], SoundStormAdaptation(steps=100))

SoundStorm continues a 3 s prompt, and for a voice it never heard it drifts towards the voices
it knows: on the held-out flite-rms, with the codec's decoder already enrolled on the voice,
its continuation's similarity to the prompt was 0.60 where the codec's own resynthesis had 0.87
(docs/eval-demo). A copy fine-tuned for 100 steps on 60 s of the voice's other utterances,
under SoundStorm's own masked-token loss, took it to 0.83 with WER unchanged; its loss on the
voice's held-out utterances fell from 6.18 to 5.23 (benchmarks/soundstorm_enrol_probe.py: 50
steps 5.27, 200 steps 5.29 as it begins to learn the minute by heart).

Only the copy changes: the model given, its config and so every token and codec stay as they
were. Examples longer than `crop_frames` are cropped at random (at a semantic-token boundary).
With `rank`, low-rank adapters (soundstorm/model/lora.py) learn instead of every weight:
`soundstorm_adapter` returns them, small enough for a voice folder. `blend` keeps only a share of
the change (soundstorm/model/blend.py): at 0.5, for decoder and SoundStorm alike, enrolment kept
most of the voice and stopped costing words in text to speech (docs/enrolment.md).

Notation: T frames, Q levels, S = ceil(T / r) semantic tokens, r = semantic_rate_ratio.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from soundstorm.model.blend import blend_weights
from soundstorm.checkpoint import weights_digest
from soundstorm.model.lora import LoRAAdapter, LoRAConfig, add_lora, learned_adapter
from soundstorm.model.soundstorm import SoundStorm


@dataclass(frozen=True)
class SoundStormAdaptation:
    steps: int = 100  # optimizer steps; 0 leaves the model as it is
    lr: float = 1e-4  # AdamW, constant
    batch_size: int = 8  # utterances a step
    crop_frames: int = 500  # longer examples are cropped to this many frames (10 s at 50 Hz)
    cond_drop_prob: float = 0.1  # as in training, so classifier-free guidance keeps working
    train_levels: int | None = None  # train only the first levels (the ones decoded); None: all
    seed: int = 0
    rank: int | None = None  # low-rank adapters of this rank on the Conformer (soundstorm/model/lora.py); None: every weight
    lora_alpha: float | None = None  # their update's scale is lora_alpha / rank (None: the rank, a scale of 1)
    # The share of the fine-tune's change that the copy keeps: W0 + blend (W1 - W0) (WiSE-FT,
    # Wortsman et al., 2022: a fine-tune half undone keeps more of what the original did well).
    blend: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"SoundStormAdaptation.steps must be >= 0, got {self.steps}")
        if not self.lr > 0 or self.batch_size < 1 or self.crop_frames < 2:
            raise ValueError(f"SoundStormAdaptation needs lr > 0, batch_size >= 1 and crop_frames >= 2, got {self}")
        if not 0.0 <= self.blend <= 1.0:
            raise ValueError(f"SoundStormAdaptation.blend must be in [0, 1], got {self.blend}")
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"SoundStormAdaptation.rank must be >= 1 (or None: no adapters), got {self.rank}")

    @property
    def lora(self) -> LoRAConfig | None:
        if self.rank is None:
            return None
        return LoRAConfig(rank=self.rank, alpha=float(self.rank if self.lora_alpha is None else self.lora_alpha))


def adapt_soundstorm(model: SoundStorm, examples: Sequence[tuple[Tensor, Tensor]],
                     options: SoundStormAdaptation = SoundStormAdaptation()) -> SoundStorm:
    """A copy of `model` (float32, eval mode) fine-tuned on one voice's examples, each (codes
    int64 [T, Q], semantic int64 [S]) as SoundStorm trains on them; `model` is not changed.
    With options.rank, only low-rank adapters learn, merged into the copy's weights."""
    if options.rank is not None and options.steps:
        merged = soundstorm_adapter(model, examples, options).merged_into(model)
        assert isinstance(merged, SoundStorm)
        return merged.eval()
    loss_of = _loss_function(model, examples, options)
    adapted = copy.deepcopy(model).float().eval()
    if options.steps == 0:
        return adapted
    _optimize(adapted, list(adapted.parameters()), loss_of, options)
    return blend_weights(adapted, model, options.blend).eval()


def soundstorm_adapter(model: SoundStorm, examples: Sequence[tuple[Tensor, Tensor]],
                       options: SoundStormAdaptation) -> LoRAAdapter:
    """Low-rank adapters (options.rank) trained on one voice's examples as adapt_soundstorm
    trains the whole model: `adapter.merged_into(model)` is the adapted SoundStorm."""
    if options.lora is None:
        raise ValueError("soundstorm_adapter needs SoundStormAdaptation.rank")
    loss_of = _loss_function(model, examples, options)
    trained = copy.deepcopy(model).float()
    wrapped = add_lora(trained, options.lora, options.seed)
    _optimize(trained, [p for wrapper in wrapped.values() for p in (wrapper.lora_a, wrapper.lora_b)], loss_of, options)
    adapter = learned_adapter(wrapped, options.lora, weights_digest(model))
    for name in adapter.tensors:  # blend: the share of the change B A kept
        if name.endswith(".lora_b"):
            adapter.tensors[name] = options.blend * adapter.tensors[name]
    return adapter


def _optimize(trained: nn.Module, parameters: list[nn.Parameter], loss_of: Callable[[nn.Module], Tensor],
              options: SoundStormAdaptation) -> None:
    """options.steps AdamW steps on `parameters` of `trained` (in training mode), each on
    loss_of(trained); leaves it in eval mode."""
    optimizer = torch.optim.AdamW(parameters, lr=options.lr, betas=(0.9, 0.98), weight_decay=0.0)
    trained.train()
    for _ in range(options.steps):
        loss = loss_of(trained)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
    trained.eval()


def _loss_function(model: SoundStorm, examples: Sequence[tuple[Tensor, Tensor]],
                   options: SoundStormAdaptation) -> Callable[[nn.Module], Tensor]:
    """Checks the examples; -> loss_of(model being trained): the masked-token loss of a fresh
    batch of random crops (seeded by options.seed, one draw after another)."""
    if not examples:
        raise ValueError("adapt_soundstorm needs at least one (codes, semantic) example of the voice")
    config = model.config
    r = config.semantic_rate_ratio
    for codes, semantic in examples:
        if codes.dim() != 2 or codes.shape[1] != config.num_quantizers:
            raise ValueError(f"adaptation codes must be [T, {config.num_quantizers}], got {tuple(codes.shape)}")
        if semantic.dim() != 1 or len(semantic) != -(-codes.shape[0] // r):
            raise ValueError(f"adaptation semantic tokens must be [ceil(T / {r})] = [{-(-codes.shape[0] // r)}] "
                             f"for {codes.shape[0]} frames, got {tuple(semantic.shape)}")
    device = next(model.parameters()).device
    crop = options.crop_frames // r * r
    rng = np.random.default_rng(options.seed)
    generator = torch.Generator(device=device).manual_seed(options.seed)

    def loss_of(trained: nn.Module) -> Tensor:
        chosen = [_crop(*examples[i], crop, r, rng) for i in rng.integers(0, len(examples), options.batch_size)]
        codes, semantic, lengths = _batch(chosen)
        out = trained(codes.to(device), semantic.to(device), lengths.to(device), generator=generator,
                      cond_drop_prob=options.cond_drop_prob, train_levels=options.train_levels)
        return out.loss

    return loss_of


def _crop(codes: Tensor, semantic: Tensor, frames: int, r: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """At most `frames` frames (a multiple of r) from a random semantic-token boundary."""
    if codes.shape[0] <= frames:
        return codes, semantic
    start = int(rng.integers(0, (codes.shape[0] - frames) // r + 1)) * r
    return codes[start : start + frames], semantic[start // r : (start + frames) // r]


def _batch(examples: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Zero-padded codes [B, T, Q], semantic [B, S] and lengths [B] in frames."""
    T = max(codes.shape[0] for codes, _ in examples)
    S = max(len(semantic) for _, semantic in examples)
    codes = torch.zeros(len(examples), T, examples[0][0].shape[1], dtype=torch.long)
    semantic = torch.zeros(len(examples), S, dtype=torch.long)
    for b, (c, s) in enumerate(examples):
        codes[b, : c.shape[0]], semantic[b, : len(s)] = c, s
    return codes, semantic, torch.tensor([c.shape[0] for c, _ in examples])
