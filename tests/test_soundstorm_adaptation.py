"""SoundStorm adaptation to one voice: the copy learns the voice's tokens, the original is left
as it was, crops keep codes and semantic tokens aligned, and the pipeline generates an enrolled
voice's tokens with its own model, batched apart from the others."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from soundstorm import SoundStorm, SoundStormConfig
from soundstorm.model.adapt import SoundStormAdaptation, _crop, adapt_soundstorm
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline
from tests.speech_models import needs_flite, write_tiny_models


def voice_examples(config: SoundStormConfig, count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A 'voice' whose tokens follow a rule (each level's code a function of the semantic token),
    which a model can learn and a random model does not know."""
    rng = np.random.default_rng(0)
    r, examples = config.semantic_rate_ratio, []
    for _ in range(count):
        semantic = torch.from_numpy(rng.integers(0, config.semantic_vocab_size, 20))
        frames = semantic.repeat_interleave(r)  # [T]
        codes = torch.stack([(frames * (q + 3) + q) % config.codebook_size for q in range(config.num_quantizers)], -1)
        examples.append((codes.long(), semantic.long()))
    return examples


def masked_loss(model: SoundStorm, examples: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    codes = torch.stack([c for c, _ in examples])
    semantic = torch.stack([s for _, s in examples])
    with torch.no_grad():
        return float(np.mean([model.eval()(codes, semantic, generator=torch.Generator().manual_seed(d)).loss
                              for d in range(4)]))


def test_the_copy_learns_the_voice_and_the_original_stays() -> None:
    torch.manual_seed(0)
    config = SoundStormConfig(codebook_size=64, num_quantizers=4, semantic_vocab_size=16, dim=32, depth=1, heads=2)
    model = SoundStorm(config).eval()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    examples = voice_examples(config)
    adapted = adapt_soundstorm(model, examples, SoundStormAdaptation(steps=40, lr=3e-3, batch_size=4))
    assert masked_loss(adapted, examples) < 0.8 * masked_loss(model, examples)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())
    assert adapted.config == config and not adapted.training
    unchanged = adapt_soundstorm(model, examples, SoundStormAdaptation(steps=0))
    assert all(torch.equal(v, original[k]) for k, v in unchanged.state_dict().items())

    codes, semantic = examples[0]
    with pytest.raises(ValueError, match=r"codes must be \[T, 4\]"):
        adapt_soundstorm(model, [(codes[:, :2], semantic)])
    with pytest.raises(ValueError, match=r"ceil\(T / 2\)"):
        adapt_soundstorm(model, [(codes, semantic[:-3])])
    with pytest.raises(ValueError, match="at least one"):
        adapt_soundstorm(model, [])
    with pytest.raises(ValueError, match="steps must be >= 0"):
        SoundStormAdaptation(steps=-1)


def test_crops_keep_codes_and_semantic_tokens_aligned() -> None:
    rng = np.random.default_rng(1)
    for r in (1, 2, 3):
        for length in (5, 17, 40):
            semantic = torch.arange(-(-length // r))
            codes = (torch.arange(length) // r)[:, None].repeat(1, 2)  # each frame names its semantic token
            for frames in (r * 2, r * 5, 100 // r * r):
                crop_codes, crop_semantic = _crop(codes, semantic, frames, r, rng)
                assert crop_codes.shape[0] == (length if length <= frames else frames)
                assert len(crop_semantic) == -(-crop_codes.shape[0] // r)
                assert torch.equal(crop_codes[::r, 0], crop_semantic)  # frame t belongs to token t // r


@needs_flite
def test_pipeline_generates_an_enrolled_voice_with_its_own_model(tmp_path: Path) -> None:
    models = write_tiny_models(tmp_path / "models")
    pipeline = SpeechPipeline.from_folder(models)
    plain = pipeline.voice(models / "voices" / "awb.wav")
    adapted = adapt_soundstorm(pipeline.soundstorm, [(plain.codes, plain.semantic)],
                               SoundStormAdaptation(steps=10, lr=1e-2, batch_size=2))
    enrolled = dataclasses.replace(plain, soundstorm=adapted)
    semantic = plain.semantic[:12]
    options = DecodingOptions(steps=[4, 1, 1, 1], seed=3)
    own, shared = pipeline.acoustic(semantic, enrolled, options).codes, pipeline.acoustic(semantic, plain, options).codes
    assert own.shape == shared.shape and not torch.equal(own, shared)

    # A dialogue mixes them: each turn decoded by its voice's model, as it would be alone.
    turns = [("A", "Hello there."), ("B", "Good morning."), ("A", "How are you?")]
    plans = [pipeline.plan_dialogue(turns, {"A": enrolled, "B": plain}, options)]
    wav = pipeline.render(plans)[0]
    assert len(wav) > 0 and np.isfinite(wav).all()
    segment = plans[0].segments[0]
    alone = pipeline.acoustic_batch([segment], options)[0].codes
    with_plain = pipeline.acoustic_batch([dataclasses.replace(segment, voice=plain)], options)[0].codes
    assert not torch.equal(alone, with_plain)
    with pytest.raises(ValueError, match="share a SoundStorm"):
        pipeline.acoustic_batch(plans[0].segments[:2], options)
