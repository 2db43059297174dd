"""End to end: a tiny model trained on CPU learns the toy task, where the frames of a sequence
must agree with each other, and iterative decoding beats one-shot decoding on it clearly."""

from __future__ import annotations

import pytest
import torch

from soundstorm.toy import ToyTask, train_toy_model


@pytest.mark.slow
def test_iterative_decoding_beats_one_shot_on_the_toy_task() -> None:
    task = ToyTask()
    # A fixed number of steps, not a time budget: on a loaded machine a time budget trains too
    # little, and an undertrained model collapses to one voice in both decodings (1.0 and 1.0).
    model, losses = train_toy_model(task, max_seconds=float("inf"), max_steps=1500, seed=0)
    assert len(losses) == 1500
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20, "training did not reduce the loss"

    _, semantic, _ = task.sample(64, torch.Generator().manual_seed(1))
    Q = task.num_quantizers
    scores = {}
    for name, steps in {"iterative": [16] + [1] * (Q - 1), "one-shot": [1] * Q}.items():
        with torch.inference_mode():
            codes = model.generate(semantic, steps=steps, generator=torch.Generator().manual_seed(2))
        scores[name] = task.consistency(codes, semantic).mean().item()
    assert scores["iterative"] >= 0.95, scores
    assert scores["iterative"] - scores["one-shot"] >= 0.2, scores
