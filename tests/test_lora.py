"""Low-rank adapters: a wrapped model starts as the model, only the adapters learn, the merged
copy computes what the wrapped one does, and an adapter refuses a model it was not trained on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from soundstorm import SoundStorm, SoundStormConfig
from soundstorm.checkpoint import weights_digest
from soundstorm.model.adapt import SoundStormAdaptation, adapt_soundstorm, soundstorm_adapter
from soundstorm.model.lora import CONFORMER_LINEARS, LoRAAdapter, LoRAConfig, LoRALinear, add_lora
from tests.test_soundstorm_adaptation import masked_loss, voice_examples

CONFIG = SoundStormConfig(codebook_size=64, num_quantizers=4, semantic_vocab_size=16, dim=32, depth=2, heads=2)


def tiny(seed: int = 0) -> SoundStorm:
    torch.manual_seed(seed)
    return SoundStorm(CONFIG).eval()


def logits(model: torch.nn.Module, codes: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(codes, semantic, generator=torch.Generator().manual_seed(5)).logits


def test_wrapping_starts_as_the_model_and_freezes_all_but_the_adapters() -> None:
    model = tiny()
    codes, semantic = (torch.stack(t) for t in zip(*voice_examples(CONFIG, 2)))
    before = logits(model, codes, semantic)
    wrapped = add_lora(model, LoRAConfig(rank=4))
    # Every linear layer of each Conformer block, and nothing outside the Conformer.
    assert len(wrapped) == CONFIG.depth * 8
    assert {path.split(".")[-1] for path in wrapped} == set(CONFORMER_LINEARS)
    assert all(path.startswith("conformer.") for path in wrapped)
    assert torch.equal(logits(model, codes, semantic), before)  # B = 0: the same function, bit for bit
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{path}.{ab}" for path in wrapped for ab in ("lora_a", "lora_b")}
    with pytest.raises(ValueError, match="no nn.Linear named"):
        add_lora(tiny(), LoRAConfig(targets=("nothing",)))
    with pytest.raises(ValueError, match="rank >= 1"):
        LoRAConfig(rank=0)


def test_the_merged_copy_computes_what_the_adapters_do() -> None:
    model = tiny()
    config = LoRAConfig(rank=2, alpha=4.0)
    wrapped_model = tiny()
    wrapped = add_lora(wrapped_model, config)
    with torch.no_grad():  # an adapter that has learned something: B no longer zero
        for wrapper in wrapped.values():
            wrapper.lora_b.normal_(std=0.05)
    tensors = {f"{p}.{ab}": getattr(w, ab).detach().clone() for p, w in wrapped.items() for ab in ("lora_a", "lora_b")}
    adapter = LoRAAdapter(config, tensors, weights_digest(model))
    merged = adapter.merged_into(model)
    assert type(merged) is SoundStorm and all(type(m) is not LoRALinear for m in merged.modules())
    codes, semantic = (torch.stack(t) for t in zip(*voice_examples(CONFIG, 2)))
    assert not torch.allclose(logits(merged, codes, semantic), logits(model, codes, semantic), atol=1e-3)
    torch.testing.assert_close(logits(merged, codes, semantic), logits(wrapped_model, codes, semantic),
                               atol=1e-4, rtol=1e-4)
    # The delta of each layer has the adapter's rank, and the scale is alpha / rank.
    layer = adapter.layers[0]
    delta = dict(merged.named_parameters())[f"{layer}.weight"] - dict(model.named_parameters())[f"{layer}.weight"]
    assert torch.linalg.matrix_rank(delta.detach()) == 2
    torch.testing.assert_close(delta.detach(), wrapped[layer].delta().detach(), atol=1e-6, rtol=1e-5)
    assert wrapped[layer].scale == 2.0


def test_lora_adaptation_learns_a_new_voice_leaves_the_model_and_saves_small(tmp_path: Path) -> None:
    # A model that knows one voice (trained on its rule), then adapted to another whose codes
    # are the first's shifted: the adapters must learn what differs.
    known = voice_examples(CONFIG)
    model = adapt_soundstorm(tiny(), known, SoundStormAdaptation(steps=60, lr=3e-3, batch_size=4))
    examples = [((codes + 5) % CONFIG.codebook_size, semantic) for codes, semantic in voice_examples(CONFIG)]
    original = {k: v.clone() for k, v in model.state_dict().items()}
    options = SoundStormAdaptation(steps=40, lr=1e-2, batch_size=4, rank=4)
    adapter = soundstorm_adapter(model, examples, options)
    adapted = adapt_soundstorm(model, examples, options)  # the same seed: the same adapter, merged
    assert masked_loss(adapted, examples) < 0.8 * masked_loss(model, examples)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())
    assert not adapted.training and adapted.config == CONFIG
    # Only the Conformer's linear weights moved (biases, norms, embeddings and heads are frozen).
    moved = {k for k, v in adapted.state_dict().items() if not torch.equal(v, original[k])}
    assert moved and moved <= {f"{layer}.weight" for layer in adapter.layers}
    torch.testing.assert_close(adapted.state_dict(), adapter.merged_into(model).state_dict())

    adapter.save(tmp_path / "adapter")
    loaded = LoRAAdapter.load(tmp_path / "adapter")
    assert loaded.config == adapter.config and loaded.base_weights == weights_digest(model)
    assert loaded.num_parameters() == adapter.num_parameters() < 0.2 * model.num_parameters()
    codes, semantic = (torch.stack(t) for t in zip(*examples[:2]))
    # Stored in float16: the merged model within float16's rounding of A and B.
    torch.testing.assert_close(logits(loaded.merged_into(model), codes, semantic), logits(adapted, codes, semantic),
                               atol=2e-2, rtol=1e-2)

    with pytest.raises(ValueError, match="trained on a model with weights"):
        loaded.merged_into(tiny(seed=1))
    with pytest.raises(FileNotFoundError, match="lacks adapter.json"):
        LoRAAdapter.load(tmp_path)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        SoundStormAdaptation(rank=0)



def test_blend_keeps_that_share_of_the_fine_tunes_change() -> None:
    model = tiny()
    examples = voice_examples(CONFIG)
    original = model.state_dict()
    for rank in (None, 4):
        options = SoundStormAdaptation(steps=5, lr=1e-2, batch_size=2, rank=rank)
        whole = adapt_soundstorm(model, examples, options).state_dict()
        half = adapt_soundstorm(model, examples, dataclasses.replace(options, blend=0.5)).state_dict()
        none = adapt_soundstorm(model, examples, dataclasses.replace(options, blend=0.0)).state_dict()
        for name, value in original.items():
            torch.testing.assert_close(half[name], (value + whole[name]) / 2, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(none[name], value, atol=1e-6, rtol=1e-5)
        assert any(not torch.equal(whole[name], value) for name, value in original.items())
    with pytest.raises(ValueError, match=r"blend must be in \[0, 1\]"):
        SoundStormAdaptation(blend=1.5)
