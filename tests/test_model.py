"""Tier 1: the model's shapes, gradients, loss, padding, config and input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from soundstorm import PRESETS, SoundStorm, SoundStormConfig, masking
from tests.conftest import tiny_config, tiny_model


def batch(B: int = 3, T: int = 12, seed: int = 0, config: SoundStormConfig | None = None):
    config = config or tiny_config()
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(config.codebook_size, (B, T, config.num_quantizers), generator=g)
    semantic = torch.randint(config.semantic_vocab_size, (B, -(-T // config.semantic_rate_ratio)), generator=g)
    return codes, semantic


def test_forward_shapes_and_gradients() -> None:
    model = tiny_model(double=False).train()
    codes, semantic = batch()
    lengths = torch.tensor([12, 9, 4])
    out = model(codes, semantic, lengths, generator=torch.Generator().manual_seed(0))
    B, T, K, Q = 3, 12, 16, 3
    assert out.logits.shape == (B, T, K) and out.targets.shape == (B, T)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.level_correct.shape == out.level_count.shape == (Q,)
    assert int(out.level_count.sum()) == int(out.mask.loss.sum())
    out.loss.backward()
    trained_levels = set(out.mask.levels.tolist())
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
    for level in range(Q):
        has_grad = bool(model.head_weight.grad[level].abs().sum() > 0)
        assert has_grad == (level in trained_levels), "only the trained levels' heads get gradients"


def test_loss_is_cross_entropy_on_masked_tokens_of_the_level_only() -> None:
    model = tiny_model()
    codes, semantic = batch(B=4, T=16)
    lengths = torch.tensor([16, 11, 7, 16])
    out = model(codes, semantic, lengths, generator=torch.Generator().manual_seed(1))
    m = out.mask
    level_codes = codes.gather(2, m.levels[:, None, None].expand(4, 16, 1)).squeeze(2)
    expected = F.cross_entropy(out.logits[m.loss], level_codes[m.loss])
    torch.testing.assert_close(out.loss, expected)
    # Changing targets where there is no loss changes nothing: the same mask, other codes at
    # unmasked positions of level q would change the inputs, so change only masked ones
    # outside the loss (levels above q) -- they are MASK in the input and carry no loss.
    above = m.masked & (torch.arange(3) > m.levels[:, None, None])
    changed = torch.where(above, (codes + 1) % 16, codes)
    torch.testing.assert_close(model(changed, semantic, lengths, mask=m).loss, out.loss)


def test_per_level_accuracy_counts() -> None:
    model = tiny_model()
    codes, semantic = batch(B=8, T=10)
    out = model(codes, semantic, generator=torch.Generator().manual_seed(2))
    for level in range(3):
        rows = out.mask.levels == level
        loss = out.mask.loss[rows]
        correct = (out.logits[rows].argmax(-1) == out.targets[rows]) & loss
        assert int(out.level_count[level]) == int(loss.sum())
        assert int(out.level_correct[level]) == int(correct.sum())


def test_padding_changes_nothing_in_training() -> None:
    model = tiny_model()
    codes, semantic = batch(B=3, T=14)
    lengths = torch.tensor([14, 9, 3])
    out = model(codes, semantic, lengths, generator=torch.Generator().manual_seed(0))
    garbage_codes, garbage_semantic = codes.clone(), semantic.clone()
    for b, L in enumerate(lengths.tolist()):
        garbage_codes[b, L:] = -7  # anything, even out-of-range ids
        garbage_semantic[b, -(-L // 2) :] = 10_000
    again = model(garbage_codes, garbage_semantic, lengths, mask=out.mask)
    torch.testing.assert_close(again.loss, out.loss, rtol=0, atol=0)
    valid = torch.arange(14) < lengths[:, None]
    torch.testing.assert_close(again.logits[valid], out.logits[valid], rtol=0, atol=0)


def test_padded_example_equals_the_example_alone_in_training() -> None:
    model = tiny_model()
    codes, semantic = batch(B=2, T=15)
    lengths = torch.tensor([15, 8])
    out = model(codes, semantic, lengths, generator=torch.Generator().manual_seed(4))
    m = out.mask
    alone_mask = masking.TrainingMask(
        masked=m.masked[1:, :8], loss=m.loss[1:, :8], levels=m.levels[1:],
        delimiters=m.delimiters[1:], ratios=m.ratios[1:],
    )
    alone = model(codes[1:, :8], semantic[1:, :4], mask=alone_mask)
    torch.testing.assert_close(alone.logits[0], out.logits[1, :8], rtol=1e-10, atol=1e-10)


def test_condition_dropout_uses_the_null_condition() -> None:
    model = tiny_model()
    codes, semantic = batch(B=2, T=10)
    m = model(codes, semantic, generator=torch.Generator().manual_seed(0)).mask
    dropped = model(codes, semantic, mask=m, cond_drop_prob=1.0)
    other = model(codes, (semantic + 1) % 10, mask=m, cond_drop_prob=1.0)
    torch.testing.assert_close(dropped.logits, other.logits, rtol=0, atol=0)
    kept = model(codes, semantic, mask=m, cond_drop_prob=0.0)
    assert not torch.allclose(kept.logits, dropped.logits)


def test_semantic_tokens_are_repeated_to_the_frame_rate() -> None:
    model = tiny_model(semantic_rate_ratio=3)
    semantic = torch.tensor([[1, 2, 3]])
    condition = model.embed_condition(semantic, 8)  # [1, 8, D]
    table = model.semantic_embedding.weight
    expected_ids = torch.tensor([1, 1, 1, 2, 2, 2, 3, 3])
    torch.testing.assert_close(condition[0], table[expected_ids])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(codes=torch.zeros(2, 5, 3)), "must be int64"),
        (dict(codes=torch.zeros(2, 5, dtype=torch.long)), r"shape \[B, T, Q\]"),
        (dict(codes=torch.zeros(2, 5, 4, dtype=torch.long)), "4 quantizer levels but the model generates num_quantizers=3"),
        (dict(codes=torch.full((2, 6, 3), 16)), r"ids in \[0, 16\)"),
        (dict(codes=torch.full((2, 6, 3), -1)), r"ids in \[0, 16\)"),
        (dict(lengths=torch.tensor([6, 7])), r"every one of lengths must be in \[1, 6\]"),
        (dict(lengths=torch.tensor([6, 0])), r"every one of lengths must be in \[1, 6\]"),
        (dict(lengths=torch.tensor([6])), r"lengths must have shape \[B\]=\[2\]"),
        (dict(lengths=torch.tensor([6.0, 6.0])), "lengths must be int64"),
        (dict(semantic_tokens=torch.zeros(2, 4, dtype=torch.long)), r"\[B, ceil\(T / 2\)\] = \[2, 3\]"),
        (dict(semantic_tokens=torch.full((2, 3), 10)), r"semantic_tokens must hold ids in \[0, 10\)"),
        (dict(semantic_tokens=None), "conditioned on semantic tokens"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs: dict, message: str) -> None:
    model = tiny_model()
    arguments = dict(
        codes=torch.zeros(2, 6, 3, dtype=torch.long),
        semantic_tokens=torch.zeros(2, 3, dtype=torch.long),
        lengths=None,
    )
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        model(**arguments)


def test_unconditional_model_refuses_semantic_tokens() -> None:
    model = tiny_model(semantic_vocab_size=0)
    codes = torch.zeros(1, 4, 3, dtype=torch.long)
    model(codes)
    with pytest.raises(ValueError, match="unconditional"):
        model(codes, torch.zeros(1, 2, dtype=torch.long))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dim", 30, "divisible by heads"),
        ("heads", 0, "positive integer"),
        ("conv_kernel_size", 4, "odd"),
        ("semantic_vocab_size", -1, ">= 0"),
        ("dropout", 1.0, r"\[0, 1\)"),
        ("attention_dropout", -0.1, r"attention_dropout must be in \[0, 1\)"),
    ],
)
def test_config_validation(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_config(**{field: value})


@pytest.mark.parametrize(("dropout", "attention_dropout", "random_in_training"),
                         [(0.0, 0.5, True), (0.0, None, False), (0.0, 0.0, False)])
def test_attention_dropout_is_its_own_setting(dropout: float, attention_dropout: float | None,
                                               random_in_training: bool) -> None:
    """Only the attention weights drop here (every other dropout is 0): two training-mode passes
    differ exactly when attention_dropout > 0, and None follows `dropout`."""
    model = SoundStorm(tiny_config(dropout=dropout, attention_dropout=attention_dropout)).train()
    codes, semantic = batch()
    mask = masking.sample_training_mask(torch.full((codes.shape[0],), codes.shape[1]), codes.shape[1], codes.shape[2],
                                        generator=torch.Generator().manual_seed(0))
    first, second = (model(codes, semantic, mask=mask).logits for _ in range(2))
    assert (not torch.equal(first, second)) == random_in_training
    model.eval()
    assert torch.equal(model(codes, semantic, mask=mask).logits, model(codes, semantic, mask=mask).logits)


def test_config_dict_round_trip_and_unknown_fields() -> None:
    config = tiny_config()
    assert SoundStormConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown SoundStormConfig fields"):
        SoundStormConfig.from_dict({**config.to_dict(), "depht": 3})
    with pytest.raises(ValueError, match="unknown preset"):
        SoundStormConfig.preset("huge")


def test_paper_preset_matches_the_paper() -> None:
    config = PRESETS["paper"]
    assert (config.depth, config.heads, config.dim, config.ff_dim, config.conv_kernel_size) == (12, 16, 1024, 4096, 5)
    assert (config.num_quantizers, config.codebook_size) == (12, 1024)
    with torch.device("meta"):
        model = SoundStorm(config)
    assert 300e6 < model.num_parameters() < 360e6, "about 350M parameters"


def test_runs_under_bf16_autocast() -> None:
    model = tiny_model(double=False)
    codes, semantic = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(codes, semantic, generator=torch.Generator().manual_seed(0))
        generated = model.generate(semantic, temperature=0)
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.loss)
    assert generated.shape == codes.shape


def test_rotary_is_rotate_half_and_its_offset_tables_are_slices_of_the_full_table() -> None:
    from soundstorm.model.conformer import RotaryEmbedding, apply_rotary

    rotary = RotaryEmbedding(head_dim=8, base=10000.0)
    cos, sin = rotary(12)  # [T, Dh]
    x = torch.randn(2, 3, 12, 8)  # [B, H, T, Dh]
    # The textbook rotate-half form, with the plain (unsigned) sin table.
    angles = torch.outer(torch.arange(12, dtype=torch.float32), rotary.inv_freq)
    plain_cos, plain_sin = torch.cat([angles.cos()] * 2, dim=-1), torch.cat([angles.sin()] * 2, dim=-1)
    first, second = x.chunk(2, dim=-1)
    expected = x * plain_cos + torch.cat([-second, first], dim=-1) * plain_sin
    assert torch.equal(apply_rotary(x, cos, sin), expected)
    # Incremental decoding asks for positions offset..offset+T-1 only.
    offset_cos, offset_sin = rotary(4, offset=7)
    assert torch.equal(offset_cos, cos[7:11]) and torch.equal(offset_sin, sin[7:11])
    # A rotation: norms are kept, and q . k depends only on the distance between positions.
    rotated = apply_rotary(x, cos, sin)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    q, k = torch.randn(8), torch.randn(8)
    same = apply_rotary(q.expand(12, 8), cos, sin), apply_rotary(k.expand(12, 8), cos, sin)
    torch.testing.assert_close((same[0][5] * same[1][2]).sum(), (same[0][9] * same[1][6]).sum())
