"""CausalDecoder.step, the one-position pass of incremental decoding: the same numbers as
forward over that position, bit for bit, whatever the batch, the prefix, the cache's growth, the
step weights (float16, int8) and autocast; and the text-to-semantic model and the AR baseline,
which decode with it, still generate what a full forward pass over their output predicts.
Left-padded batches of sequences of different lengths (forward's valid): each sequence gets what
it gets alone, and the text-to-semantic model's generate_batch draws what each text draws alone."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm.baselines import ARAcousticConfig, ARAcousticModel
from soundstorm.model.decoder import CausalDecoder, KVCache
from soundstorm.model.step_linear import use_step_weights
from soundstorm.text.model import TextToSemantic, TextToSemanticConfig


def decoder(heads: int = 2, seed: int = 0) -> CausalDecoder:
    torch.manual_seed(seed)
    return CausalDecoder(dim=8 * heads, depth=2, heads=heads, ff_dim=24, dropout=0.1).eval()


@settings(deadline=None, max_examples=30)
@given(batch=st.integers(1, 4), prefix=st.integers(1, 70), steps=st.integers(1, 70), heads=st.sampled_from([1, 2, 4]),
       weights=st.sampled_from([None, torch.float16, torch.int8]), bf16=st.booleans())
def test_a_step_equals_the_forward_pass_over_its_position(batch: int, prefix: int, steps: int, heads: int,
                                                          weights: torch.dtype | None, bf16: bool) -> None:
    """Up to 140 positions: the cache (64 at first) grows on the way, in either path."""
    model = decoder(heads)
    if weights is not None:
        use_step_weights(model, weights)
    x = torch.randn(batch, prefix + steps, model.norm.normalized_shape[0], generator=torch.Generator().manual_seed(prefix))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        by_forward, by_step = KVCache(), KVCache()
        model(x[:, :prefix], by_forward)
        model(x[:, :prefix], by_step)
        for t in range(prefix, prefix + steps):
            expected = model(x[:, t : t + 1], by_forward)[:, 0]  # [B, D]
            got = model.step(x[:, t], by_step)
            assert torch.equal(got, expected), (t, (got - expected).abs().max())
        assert by_step.length == by_forward.length == prefix + steps
        for layer in range(len(model.blocks)):
            assert torch.equal(by_step.keys[layer][:, :, : prefix + steps], by_forward.keys[layer][:, :, : prefix + steps])
            assert torch.equal(by_step.values[layer][:, :, : prefix + steps],
                               by_forward.values[layer][:, :, : prefix + steps])


def test_a_step_with_an_empty_cache_is_the_first_position() -> None:
    model = decoder()
    x = torch.randn(3, 16)
    with torch.inference_mode():
        assert torch.equal(model.step(x, KVCache()), model(x[:, None], KVCache())[:, 0])


def test_a_step_refuses_training_mode_and_a_sequence() -> None:
    model = decoder()
    with pytest.raises(RuntimeError, match="eval"):
        model.train().step(torch.randn(1, 16), KVCache())
    with pytest.raises(ValueError, match=r"x \[B, D\]"):
        model.eval().step(torch.randn(1, 2, 16), KVCache())


def test_text_to_semantic_generation_follows_its_own_greedy_predictions() -> None:
    """Greedy tokens from step-by-step decoding are the argmax of a full forward pass over text,
    separator and those tokens: the steps see what training's teacher-forced pass sees."""
    torch.manual_seed(0)
    model = TextToSemantic(TextToSemanticConfig(semantic_vocab_size=16, dim=32, depth=2, heads=2, dropout=0.0)).eval()
    text = torch.tensor([3, 5, 7, 9, 11, 2])
    prompt = torch.tensor([1, 4, 4, 9])
    out = model.generate(text, prompt, temperature=0.0, max_tokens=20, min_tokens=20)
    sequence = model._sequence(text, torch.cat([prompt, out]), eos=False)
    with torch.inference_mode():
        logits = model.head(model.decoder(model.embedding(sequence[None])))[0].float()  # [L, V + 1]
        logits[:, model.eos] = float("-inf")  # min_tokens: EOS is never drawn
    first = len(text) + len(prompt)  # the position that predicts the first new token
    assert torch.equal(logits[first : first + len(out)].argmax(-1), out)


def test_the_ar_baseline_generates_what_its_full_forward_pass_predicts() -> None:
    torch.manual_seed(0)
    config = ARAcousticConfig(codebook_size=16, num_quantizers=2, coarse_levels=1, semantic_vocab_size=10,
                              semantic_rate_ratio=2, fine_chunk_frames=8, dim=32, depth=2, heads=2, ff_mult=2.0)
    model = ARAcousticModel(config).double().eval()
    semantic = torch.randint(10, (2, 4), generator=torch.Generator().manual_seed(1))
    codes = model.generate(semantic, num_frames=8, temperature=0).codes  # [B, T, Q]
    stage = model.coarse
    prefix = torch.cat([semantic, semantic.new_full((2, 1), model.coarse_sep)], dim=1)
    ids = torch.cat([prefix, codes[:, :, 0] + config.semantic_vocab_size], dim=1)
    with torch.inference_mode():
        hidden = stage.hidden(ids)  # [B, L, D]
        predicted = stage.level_logits(hidden[:, prefix.shape[1] - 1 : -1], 0).argmax(-1)  # [B, T]
    assert torch.equal(predicted, codes[:, :, 0])


@settings(deadline=None, max_examples=25)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=4), steps=st.integers(0, 30), heads=st.sampled_from([1, 2]))
def test_a_left_padded_batch_gets_what_each_sequence_gets_alone(lengths: list[int], steps: int, heads: int) -> None:
    model = decoder(heads).double()
    D, L = model.norm.normalized_shape[0], max(lengths)
    g = torch.Generator().manual_seed(sum(lengths))
    sequences = [torch.randn(n + steps, D, generator=g, dtype=torch.float64) for n in lengths]
    x = torch.zeros(len(lengths), L, D, dtype=torch.float64)
    valid = torch.zeros(len(lengths), L, dtype=torch.bool)
    for b, (n, sequence) in enumerate(zip(lengths, sequences)):
        x[b, L - n :], valid[b, L - n :] = sequence[:n], True
    with torch.inference_mode():
        cache = KVCache()
        batched = [model(x, cache, valid=valid)[:, -1]]
        for t in range(steps):
            batched.append(model.step(torch.stack([s[n + t] for n, s in zip(lengths, sequences)]), cache))
        for b, (n, sequence) in enumerate(zip(lengths, sequences)):
            alone_cache = KVCache()
            alone = [model(sequence[None, :n], alone_cache)[0, -1]]
            alone += [model.step(sequence[None, n + t], alone_cache)[0] for t in range(steps)]
            torch.testing.assert_close(torch.stack([out[b] for out in batched]), torch.stack(alone), rtol=1e-10, atol=1e-10)


@settings(deadline=None, max_examples=15)
@given(texts=st.lists(st.lists(st.integers(0, 29), min_size=1, max_size=12), min_size=1, max_size=5),
       prompted=st.lists(st.booleans(), min_size=5, max_size=5), temperature=st.sampled_from([0.0, 0.7]),
       eos_threshold=st.sampled_from([None, 0.2]), bounded=st.lists(st.booleans(), min_size=5, max_size=5))
def test_generate_batch_draws_what_each_text_draws_alone(texts: list[list[int]], prompted: list[bool], temperature: float,
                                                         eos_threshold: float | None, bounded: list[bool]) -> None:
    """Each row as `generate` draws it alone: its own prompt, stream and, where given, its own
    length bounds (a dialogue turn after another keeps its text's own)."""
    torch.manual_seed(0)
    config = TextToSemanticConfig(semantic_vocab_size=16, dim=32, depth=2, heads=2, dropout=0.0,
                                  min_tokens_per_symbol=0.5, max_tokens_per_symbol=2.0)
    model = TextToSemantic(config).double().eval()
    ids = [torch.tensor(text) for text in texts]
    prompts = [torch.arange(len(text) % 5 + 1) % 16 if prompted[i] else None for i, text in enumerate(texts)]
    generators = [torch.Generator().manual_seed(7 * i) for i in range(len(texts))]
    bounds = [(i % 3, 2 + i) if bounded[i] else None for i in range(len(texts))]
    batched = model.generate_batch(ids, prompts, temperature=temperature, eos_threshold=eos_threshold, generators=generators,
                                   bounds=bounds)
    for i, (text, prompt) in enumerate(zip(ids, prompts)):
        own = {"min_tokens": bounds[i][0], "max_tokens": bounds[i][1]} if bounds[i] else {}
        alone = model.generate(text, prompt, temperature=temperature, eos_threshold=eos_threshold,
                               generator=torch.Generator().manual_seed(7 * i), **own)
        assert torch.equal(batched[i], alone)
        fewest, most = bounds[i] or config.length_bounds(len(text), 0 if prompt is None else len(prompt))
        assert len(alone) <= most and (len(alone) >= fewest or eos_threshold is not None)


def test_generate_batch_refuses_mismatched_prompts_and_generators() -> None:
    model = TextToSemantic(TextToSemanticConfig(semantic_vocab_size=16, dim=32, depth=2, heads=2)).eval()
    with pytest.raises(ValueError, match="one prompt"):
        model.generate_batch([torch.tensor([1, 2])], [None, None])
    with pytest.raises(ValueError, match="one generator"):
        model.generate_batch([torch.tensor([1, 2])], generators=[])
    with pytest.raises(ValueError, match="one bounds"):
        model.generate_batch([torch.tensor([1, 2])], bounds=[None, (1, 2)])
    assert model.generate_batch([]) == []
