"""An exponential moving average of a module's weights, for evaluation and export."""

from __future__ import annotations

import copy

import torch
from torch import nn


def warmed_up_decay(decay: float, step: int) -> float:
    """The decay used at update `step` (0-based): min(decay, (1 + step) / (10 + step)).

    A fixed decay d keeps d ** n of the starting weights after n updates: at 0.999, 29% of the
    random initialization is still in the average after 1250 steps, 16% after 1850, which is a
    whole CPU-budget run here. The warm-up (as in TensorFlow's ExponentialMovingAverage with
    num_updates, and timm's ModelEmaV2 warmup) follows the weights closely early on and reaches
    d only after about 10 / (1 - d) steps (10,000 at 0.999)."""
    return min(decay, (1.0 + step) / (10.0 + step))


class EMA:
    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        """Fold in the weights after training step `step` (0-based; the trainer's step count,
        which checkpoints keep, so a resumed run averages exactly as an uninterrupted one)."""
        weight = 1.0 - warmed_up_decay(self.decay, step)
        for average, current in zip(self.module.parameters(), module.parameters(), strict=True):
            average.lerp_(current.detach(), weight)
        for average, current in zip(self.module.buffers(), module.buffers(), strict=True):
            average.copy_(current)
