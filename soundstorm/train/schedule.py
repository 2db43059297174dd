"""The learning-rate schedule: linear warmup, then cosine decay to a floor."""

from __future__ import annotations

import math
from dataclasses import dataclass


def warmup_cosine(step: int, *, warmup_steps: int, max_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at `step` (0-based): (step + 1) / warmup during
    warmup, then a half cosine from 1 down to min_ratio at max_steps, and min_ratio after."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class LearningRateSchedule:
    """warmup_cosine as a LambdaLR multiplier, with a second warm-up where a run was continued
    from its model's weights alone (`soundstorm train --init-from MODEL --start-step N`: a run
    carried to a new machine as a committed model folder, without its optimizer state). The
    step goes on where the run was, so the cosine and max_steps are the run's own; Adam's moments
    start afresh, and Adam's first updates are full-size whatever the gradient, so the rate is
    ramped again from near zero over warmup_steps. A dataclass, so that LambdaLR's state_dict
    (which saves a callable's __dict__) keeps restart_step through a resume."""

    warmup_steps: int
    max_steps: int
    min_ratio: float
    restart_step: int | None = None  # the step a continued run started at; None: a run from its start

    def __call__(self, step: int) -> float:
        value = warmup_cosine(step, warmup_steps=self.warmup_steps, max_steps=self.max_steps, min_ratio=self.min_ratio)
        if self.restart_step is not None and step >= self.restart_step:
            value *= min(1.0, (step - self.restart_step + 1) / max(1, self.warmup_steps))
        return value
