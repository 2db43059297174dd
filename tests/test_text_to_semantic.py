"""The text-to-semantic model: its EOS-weighted loss, the length bounds of its decoding, and
KV-cached generation against an uncached forward pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from soundstorm.text.model import TextToSemantic, TextToSemanticConfig

V = 16


def tiny(**overrides: object) -> TextToSemantic:
    torch.manual_seed(0)
    values = {"semantic_vocab_size": V, "dim": 32, "depth": 1, "heads": 2, "dropout": 0.0}
    return TextToSemantic(TextToSemanticConfig(**{**values, **overrides})).eval()  # type: ignore[arg-type]


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    text = torch.randint(0, 30, (3, 7), generator=g)
    semantic = torch.randint(0, V, (3, 11), generator=g)
    return text, torch.tensor([7, 4, 5]), semantic, torch.tensor([11, 6, 9])


def per_target_losses(model: TextToSemantic, text, text_lengths, semantic, semantic_lengths) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of each target of each sequence, by a plain uncached forward pass per
    sequence, and whether the target is EOS."""
    losses, at_eos = [], []
    for b in range(len(text)):
        s = semantic[b, : int(semantic_lengths[b])]
        ids = model._sequence(text[b, : int(text_lengths[b])], s, eos=True)
        logits = model.head(model.decoder(model.embedding(ids[None])))[0].float()
        start = int(text_lengths[b])
        wanted = torch.cat([s, torch.tensor([model.eos])])
        losses.append(F.cross_entropy(logits[start:-1], wanted, reduction="none"))
        at_eos.append(wanted == model.eos)
    return torch.cat(losses), torch.cat(at_eos)


@pytest.mark.parametrize("eos_weight", [1.0, 10.0])
def test_the_loss_is_the_eos_weighted_mean_over_every_target(eos_weight: float) -> None:
    model = tiny()
    inputs = batch()
    out = model(*inputs, eos_weight=eos_weight)
    losses, at_eos = per_target_losses(model, *inputs)
    weights = 1.0 + (eos_weight - 1.0) * at_eos.float()
    assert int(out.count) == len(losses) == 26 + 3 and int(at_eos.sum()) == 3
    assert torch.allclose(out.loss, (losses * weights).sum() / weights.sum(), atol=1e-5)
    assert 0 < float(out.eos_probability) < 3 and 0 <= int(out.eos_correct) <= 3


def test_eos_metrics_see_a_model_that_always_stops_and_one_that_never_does() -> None:
    model = tiny()
    inputs = batch()
    with torch.no_grad():
        model.head.bias[model.eos] = 100.0
    out = model(*inputs)
    assert int(out.eos_correct) == 3 and float(out.eos_probability) == pytest.approx(3.0)
    with torch.no_grad():
        model.head.bias[model.eos] = -100.0
    out = model(*inputs)
    assert int(out.eos_correct) == 0 and float(out.eos_probability) == pytest.approx(0.0, abs=1e-6)


def test_length_bounds_apply_the_training_rates_to_the_whole_text_less_the_prompt() -> None:
    assert tiny().config.length_bounds(10) == (1, 130)  # unmeasured: the old fixed bounds
    config = tiny(min_tokens_per_symbol=1.25, max_tokens_per_symbol=3.1).config
    assert config.length_bounds(10) == (12, 31)
    assert config.length_bounds(10, prompt_tokens=20) == (1, 11)
    assert config.length_bounds(10, prompt_tokens=40) == (1, 1)  # a prompt past the bound: one token still
    for low, high in ((-1.0, 2.0), (3.0, 2.0), (None, 0.0)):
        with pytest.raises(ValueError, match="tokens per symbol"):
            tiny(min_tokens_per_symbol=low, max_tokens_per_symbol=high)


@pytest.mark.parametrize("eos_bias, expected", [(100.0, 12), (-100.0, 31)])
def test_generation_stops_within_the_measured_bounds(eos_bias: float, expected: int) -> None:
    """A model that would stop at once runs to the lower bound; one that never stops, to the upper."""
    model = tiny(min_tokens_per_symbol=1.25, max_tokens_per_symbol=3.1)
    with torch.no_grad():
        model.head.bias[model.eos] = eos_bias
    text = torch.arange(10)
    assert len(model.generate(text, temperature=0)) == expected
    assert len(model.generate(text, temperature=1.0, generator=torch.Generator().manual_seed(0))) == expected
    assert len(model.generate(text, temperature=0, max_tokens=5)) == 5  # explicit bounds win
    if eos_bias > 0:
        assert len(model.generate(text, temperature=0, min_tokens=3)) == 3


def test_cached_greedy_generation_equals_an_uncached_argmax_loop() -> None:
    model = tiny()
    text, prompt = torch.tensor([3, 1, 4, 1, 5]), torch.tensor([2, 7])
    generated = model.generate(text, prompt_semantic=prompt, temperature=0, max_tokens=12)
    tokens: list[int] = []
    with torch.no_grad():
        for _ in range(12):
            ids = model._sequence(text, torch.cat([prompt, torch.tensor(tokens, dtype=torch.long)]), eos=False)
            logits = model.head(model.decoder(model.embedding(ids[None])))[0, -1].float()
            token = int(logits.argmax())
            if token == model.eos:
                break
            tokens.append(token)
    assert generated.tolist() == tokens


def eos_probabilities_along(model: TextToSemantic, text: torch.Tensor, tokens: list[int]) -> list[float]:
    """p(EOS) before each of tokens and after the last, by uncached forward passes."""
    probabilities = []
    with torch.no_grad():
        for k in range(len(tokens) + 1):
            ids = model._sequence(text, torch.tensor(tokens[:k], dtype=torch.long), eos=False)
            logits = model.head(model.decoder(model.embedding(ids[None])))[0, -1].float()
            probabilities.append(float(logits.softmax(dim=-1)[model.eos]))
    return probabilities


def test_an_eos_threshold_stops_at_the_first_step_past_min_tokens_where_p_eos_reaches_it() -> None:
    model = tiny()
    with torch.no_grad():
        model.head.bias[model.eos] = -1.0  # EOS never the argmax here, but never negligible either
    text = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    path = model.generate(text, temperature=0, min_tokens=2, max_tokens=12).tolist()
    assert len(path) == 12  # without a threshold it runs to the bound
    p_eos = eos_probabilities_along(model, text, path)
    stop = max(range(2, 12), key=lambda k: p_eos[k])  # the most likely stopping point after min_tokens
    # A hair below it: the cached passes of generate and the uncached ones here agree to float
    # rounding only (which moves with the thread count), and >= at the exact value would hang on it.
    threshold = p_eos[stop] * (1 - 1e-4)
    thresholded = model.generate(text, temperature=0, min_tokens=2, max_tokens=12, eos_threshold=threshold)
    first = next(k for k in range(2, 12) if p_eos[k] >= threshold)
    assert thresholded.tolist() == path[:first]  # the same tokens, cut where p(EOS) first reached it
    # min_tokens still wins over any threshold, sampled as greedy; 1.0 never stops an uncertain model.
    sampled = model.generate(text, temperature=1.0, min_tokens=3, max_tokens=12, eos_threshold=1e-9,
                             generator=torch.Generator().manual_seed(0))
    assert len(sampled) == 3
    assert len(model.generate(text, temperature=0, min_tokens=2, max_tokens=12, eos_threshold=1.0)) == 12
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="eos_threshold"):
            model.generate(text, eos_threshold=bad)


def test_samples_drawn_as_one_batch_are_each_a_path_of_their_own() -> None:
    """generate_many's rows share a KV cache's batch, not their histories: each row is a path
    the model could draw alone (every token within the top-k of its own uncached logits), and
    stops where its own p(EOS) first reaches the threshold, whenever the other rows stop."""
    model = tiny()
    with torch.no_grad():
        model.head.bias[model.eos] = -1.0
    text, prompt = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6]), torch.tensor([2, 7, 1])
    greedy = model.generate(text, prompt_semantic=prompt, temperature=0, max_tokens=12)
    assert all(torch.equal(row, greedy) for row in
               model.generate_many(text, 3, prompt_semantic=prompt, temperature=0, max_tokens=12))
    threshold, top_k = 0.08, 5
    rows = model.generate_many(text, 6, prompt_semantic=prompt, temperature=1.5, top_k=top_k, min_tokens=2,
                               max_tokens=12, eos_threshold=threshold, generator=torch.Generator().manual_seed(0))
    assert len({tuple(r.tolist()) for r in rows}) > 1 and len({len(r) for r in rows}) > 1  # they went their ways
    for row in rows:
        tokens = row.tolist()
        with torch.no_grad():
            for k in range(len(tokens) + 1):
                ids = model._sequence(text, torch.cat([prompt, torch.tensor(tokens[:k], dtype=torch.long)]), eos=False)
                logits = model.head(model.decoder(model.embedding(ids[None])))[0, -1].float()
                p_eos = float(logits.softmax(dim=-1)[model.eos])
                if k < len(tokens):
                    assert tokens[k] in logits.topk(top_k).indices.tolist()
                    assert k < 2 or p_eos < threshold * (1 + 1e-4)  # it did not run past its stop
                elif k < 12:  # it stopped: by the threshold, or by drawing EOS
                    assert p_eos >= threshold * (1 - 1e-4) or model.eos in logits.topk(top_k).indices.tolist()
    with pytest.raises(ValueError, match="num_samples"):
        model.generate_many(text, 0)
