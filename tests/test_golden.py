"""Golden outputs: a seeded tiny model's initialisation, training mask, loss and decoded tokens,
pinned in tests/golden/core.json. A change here means numerics changed: if on purpose, say
why in the commit and regenerate with

    SOUNDSTORM_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from soundstorm import SoundStorm, SoundStormConfig

GOLDEN = Path(__file__).parent / "golden" / "core.json"
CONFIG = SoundStormConfig(
    codebook_size=16, num_quantizers=3, semantic_vocab_size=10, semantic_rate_ratio=2,
    dim=32, depth=2, heads=4, ff_mult=2.0,
)


def compute() -> dict[str, Any]:
    torch.manual_seed(1234)
    model = SoundStorm(CONFIG).double()
    with torch.no_grad():
        parameter_sum = float(sum(p.sum() for p in model.parameters()))
    generator = torch.Generator().manual_seed(99)
    codes = torch.randint(0, 16, (3, 12, 3), generator=generator)  # [B, T, Q]
    semantic = torch.randint(0, 10, (3, 6), generator=generator)  # [B, S]
    lengths = torch.tensor([12, 9, 5])
    out = model(codes, semantic, lengths, generator=torch.Generator().manual_seed(7))

    model.eval()
    with torch.no_grad():
        model.head_weight.mul_(40.0)  # peaked predictions, so that ranking matters
        greedy = model.generate(semantic, lengths=lengths, temperature=0.0)
        sampled = model.generate(
            semantic, lengths=lengths, prompt_codes=codes[:, :3], temperature=1.0, top_k=8,
            gumbel_scale=1.0, generator=torch.Generator().manual_seed(3),
        )
    return {
        "parameter_sum": parameter_sum,
        "mask_levels": out.mask.levels.tolist(),
        "mask_delimiters": out.mask.delimiters.tolist(),
        "loss_frames": int(out.mask.loss.sum()),
        "masked_tokens": int(out.mask.masked.sum()),
        "loss": out.loss.item(),
        "greedy_codes": greedy.tolist(),
        "sampled_codes": sampled.tolist(),
    }


def test_outputs_match_the_golden_file() -> None:
    actual = compute()
    if os.environ.get("SOUNDSTORM_REGENERATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(actual) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert actual.keys() == expected.keys()
    for key in ("parameter_sum", "loss"):
        assert abs(actual[key] - expected[key]) <= 1e-9 * max(1.0, abs(expected[key])), key
    for key in actual.keys() - {"parameter_sum", "loss"}:
        assert actual[key] == expected[key], key
