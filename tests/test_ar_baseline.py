"""The autoregressive acoustic baseline: KV-cached decoding equals full forward passes, the
teacher-forced losses count exactly the predicted tokens, generation keeps the prompt and makes
one pass per generated token, checkpoints round-trip, and training through the shared loop
reduces the loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm.baselines import ARAcousticConfig, ARAcousticModel
from soundstorm.model.decoder import CausalDecoder, KVCache, decoding_attention

CONFIG = ARAcousticConfig(codebook_size=16, num_quantizers=3, coarse_levels=2, semantic_vocab_size=10,
                          semantic_rate_ratio=2, fine_chunk_frames=4, dim=32, depth=2, heads=2, ff_mult=2.0)


def tiny_model(seed: int = 0) -> ARAcousticModel:
    torch.manual_seed(seed)
    return ARAcousticModel(CONFIG).double().eval()


def random_batch(B: int = 2, T: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(16, (B, T, 3), generator=g), torch.randint(10, (B, -(-T // 2)), generator=g)


@settings(deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=8))
def test_cached_decoding_equals_the_full_forward_pass(splits: list[int]) -> None:
    """Up to 320 positions: the cache's buffers (64 positions at first) grow several times."""
    torch.manual_seed(0)
    decoder = CausalDecoder(dim=16, depth=2, heads=2, ff_dim=32, dropout=0.0).double().eval()
    x = torch.randn(2, sum(splits), 16, dtype=torch.float64)
    full = decoder(x)
    cache, parts, start = KVCache(), [], 0
    for size in splits:  # prefill, then pieces of any size, as generation feeds them
        parts.append(decoder(x[:, start : start + size], cache))
        start += size
    assert cache.length == sum(splits)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-10, atol=1e-10)


def test_cached_decoding_on_a_gpu_leaves_out_cudnn_attention() -> None:
    """cuDNN's attention builds a plan per key length, which a KV cache changes every step; the
    flags are global, so they must come back as they were."""
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with decoding_attention(torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
    with decoding_attention(torch.device("cpu")):  # the CPU's kernel choice is left alone
        assert torch.backends.cuda.cudnn_sdp_enabled() == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cached_bf16_decoding_on_a_gpu_runs_no_cudnn_attention() -> None:
    torch.manual_seed(0)
    decoder = CausalDecoder(dim=128, depth=2, heads=2, ff_dim=256, dropout=0.0).cuda().eval()
    x = torch.randn(1, 12, 128, device="cuda")
    cache = KVCache()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16), torch.profiler.profile() as profile:
        decoder(x[:, :4], cache)
        for t in range(4, 12):
            decoder(x[:, t : t + 1], cache)
    names = {event.key for event in profile.key_averages()}
    assert not any("cudnn_attention" in name for name in names), sorted(names)
    assert any("attention" in name for name in names)


@pytest.mark.parametrize(("dropout", "attention_dropout", "random_in_training"),
                         [(0.0, 0.5, True), (0.0, None, False), (0.5, 0.0, True)])
def test_decoder_attention_dropout_is_its_own_setting(dropout: float, attention_dropout: float | None,
                                                      random_in_training: bool) -> None:
    """attention_dropout drops attention weights, dropout the residual branches; None follows dropout."""
    decoder = CausalDecoder(dim=16, depth=2, heads=2, ff_dim=32, dropout=dropout,
                            attention_dropout=attention_dropout).train()
    assert all(block.attention.dropout == (dropout if attention_dropout is None else attention_dropout)
               for block in decoder.blocks)
    x = torch.randn(2, 9, 16)
    assert (not torch.equal(decoder(x), decoder(x))) == random_in_training


def test_cached_stage_logits_equal_uncached() -> None:
    model = tiny_model()
    ids = torch.randint(0, 10 + 2 * 16 + 1, (2, 12))
    full = model.coarse.level_logits(model.coarse.hidden(ids), 1)
    cache = KVCache()
    steps = [model.coarse.hidden(ids[:, :5], cache)] + [model.coarse.hidden(ids[:, i : i + 1], cache) for i in range(5, 12)]
    torch.testing.assert_close(model.coarse.level_logits(torch.cat(steps, dim=1), 1), full, rtol=1e-10, atol=1e-10)


def test_losses_count_the_predicted_tokens_and_ignore_padding() -> None:
    model = tiny_model()
    codes, semantic = random_batch(2, 7)
    lengths = torch.tensor([7, 5])
    out = model(codes, semantic, lengths, generator=torch.Generator().manual_seed(0))
    assert out.level_count.tolist() == [12, 12, 8]  # coarse: every frame; fine: a 4-frame chunk of each
    garbage = codes.clone()
    garbage[1, 5:] = 3
    semantic_garbage = semantic.clone()
    semantic_garbage[1, 3:] = 9
    again = model(garbage, semantic_garbage, lengths, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.loss, out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_generation_keeps_the_prompt_and_makes_one_pass_per_token() -> None:
    model = tiny_model()
    codes, semantic = random_batch(2, 9)
    result = model.generate(semantic, num_frames=9, temperature=0)
    assert result.codes.shape == (2, 9, 3) and result.forward_passes == 9 * 3
    prompted = model.generate(semantic, num_frames=9, prompt_codes=codes[:, :5], temperature=1.0,
                              generator=torch.Generator().manual_seed(0))
    assert torch.equal(prompted.codes[:, :5], codes[:, :5])
    assert prompted.forward_passes == (9 - 5) * 3
    assert int(prompted.codes.min()) >= 0 and int(prompted.codes.max()) < 16


def test_greedy_generation_is_deterministic_and_batched_equals_alone() -> None:
    model = tiny_model()
    _, semantic = random_batch(2, 8)
    batched = model.generate(semantic, num_frames=8, temperature=0).codes
    alone = model.generate(semantic[1:], num_frames=8, temperature=0).codes
    assert torch.equal(batched[1:], alone)
    assert torch.equal(model.generate(semantic, num_frames=8, temperature=0).codes, batched)


def test_generation_rejects_bad_input() -> None:
    model = tiny_model()
    codes, semantic = random_batch(1, 6)
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        model.generate(semantic + 10, num_frames=6)
    with pytest.raises(ValueError, match="shorter than the output"):
        model.generate(semantic, num_frames=6, prompt_codes=codes)
    with pytest.raises(ValueError, match="ceil"):
        model.generate(semantic, num_frames=20)
    with pytest.raises(ValueError, match="coarse_levels"):
        ARAcousticConfig(num_quantizers=4, coarse_levels=4)


def test_round_trip(tmp_path: Path) -> None:
    model = tiny_model().float()
    model.save_pretrained(tmp_path / "ar")
    loaded = ARAcousticModel.from_pretrained(tmp_path / "ar")
    assert loaded.config == CONFIG
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)


def test_training_through_the_shared_loop_reduces_the_loss(tmp_path: Path) -> None:
    from fakes import FakeCodec, FakeSemantic
    from test_token_cache import make_corpus

    from soundstorm.data.tokenize import build_token_cache
    from soundstorm.train.recipe import Recipe
    from soundstorm.train.trainer import Trainer

    manifest = make_corpus(tmp_path / "corpus", [0.4 + 0.13 * (i % 9) for i in range(24)])
    build_token_cache(manifest, tmp_path / "cache", FakeCodec(codebook_size=64), FakeSemantic(vocab_size=32), shard_size=16)
    recipe = Recipe.load("recipes/ar-small.toml", [
        f'data.cache="{tmp_path / "cache"}"', "model.dim=32", "model.depth=2", "model.heads=2", "model.coarse_levels=2",
        "model.fine_chunk_frames=10", "model.dropout=0.0", "data.max_frames=30", "data.batch_size=4",
        "optimizer.warmup_steps=10", "optimizer.max_steps=150", "optimizer.lr=3e-3", "optimizer.bf16=false",
        "optimizer.ema_decay=0.0", "schedule.log_every=50", "schedule.valid_every=150", "schedule.checkpoint_every=75",
        "schedule.valid_batches=4",
    ])
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    first = trainer.validate()
    assert trainer.fit()["step"] == 150
    last = trainer.validate()
    # Level 1 of the stand-in codec follows the envelope that the semantic tokens carry.
    assert last["accuracy/level_1"] > first["accuracy/level_1"] + 0.1 and last["loss"] < first["loss"], (first, last)
    model = ARAcousticModel.from_pretrained(tmp_path / "run" / "model")
    assert model.config.codebook_size == 64 and model.config.semantic_vocab_size == 32
