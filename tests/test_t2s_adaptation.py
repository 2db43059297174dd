"""The text-to-semantic model adapted to one voice: the copy learns the voice's tokens for its
texts, the original stays, and a converted model's float16 step weights follow the new weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soundstorm.model.step_linear import use_step_weights
from soundstorm.text.adapt import T2SAdaptation, _batch, adapt_t2s
from soundstorm.text.model import TextToSemantic, TextToSemanticConfig

V = 16


def tiny() -> TextToSemantic:
    torch.manual_seed(0)
    return TextToSemantic(TextToSemanticConfig(semantic_vocab_size=V, dim=32, depth=1, heads=2, dropout=0.0)).eval()


def voice_examples(count: int = 6) -> list[tuple[list[int], torch.Tensor]]:
    """A 'voice' that says each text symbol as two tokens that follow a rule."""
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(count):
        text = rng.integers(3, 30, 6)
        semantic = torch.from_numpy(np.stack([text % V, (3 * text + 1) % V], axis=1).reshape(-1)).long()
        examples.append(([int(t) for t in text], semantic))
    return examples


def loss(model: TextToSemantic, examples: list[tuple[list[int], torch.Tensor]]) -> float:
    with torch.no_grad():
        return float(model.eval()(*_batch(examples)).loss)


def test_the_copy_learns_the_voice_and_the_original_stays() -> None:
    model = tiny()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    examples = voice_examples()
    adapted = adapt_t2s(model, examples, T2SAdaptation(steps=60, lr=3e-3, batch_size=4))
    assert loss(adapted, examples) < 0.7 * loss(model, examples)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())
    assert not adapted.training and adapted.config == model.config
    unchanged = adapt_t2s(model, examples, T2SAdaptation(steps=0))
    assert all(torch.equal(v, original[k]) for k, v in unchanged.state_dict().items())
    with pytest.raises(ValueError, match="at least one"):
        adapt_t2s(model, [])
    with pytest.raises(ValueError, match="semantic tokens must be"):
        adapt_t2s(model, [([3, 4], torch.tensor([V]))])
    with pytest.raises(ValueError, match="text ids must be"):
        adapt_t2s(model, [([], torch.tensor([1]))])


def test_a_converted_model_steps_with_its_adapted_weights() -> None:
    model = tiny()
    use_step_weights(model)  # as the pipeline holds its own
    adapted = adapt_t2s(model, voice_examples(), T2SAdaptation(steps=20, lr=3e-3, batch_size=4))
    text = torch.tensor(voice_examples(1)[0][0])
    plain = tiny()
    plain.load_state_dict(adapted.state_dict())  # the adapted weights, no step copies
    use_step_weights(adapted)  # makes the copies anew from the adapted weights
    generate = {"temperature": 0.0, "max_tokens": 12, "min_tokens": 12}
    assert torch.equal(adapted.generate(text, **generate), plain.generate(text, **generate))
