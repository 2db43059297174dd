"""Soft decoding of the finer levels: generate keeps the distribution each token was chosen from,
the codec decodes a distribution as its expected codebook vector, and the pipeline hands one to
the other without changing a token."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm.codecs.base import LevelPrefix
from soundstorm.codecs.soundstream import SoundStream, SoundStreamConfig
from soundstorm.codecs.soundstream.codec import SoundStreamCodec
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline, Trace, Voice
from tests.conftest import tiny_model
from tests.fakes import FakeCodec
from tests.speech_models import needs_flite, write_tiny_models
from tests.test_decoding import decoding_options, random_inputs

K = 16  # tiny_config's codebook


# ---- generate: the kept logits ---------------------------------------------------------------


@settings(max_examples=100)
@given(data=st.data(), B=st.integers(1, 3), T=st.integers(2, 20), options=decoding_options)
def test_kept_logits_are_the_distributions_the_tokens_were_chosen_from(
        data: st.DataObject, B: int, T: int, options: dict) -> None:
    """return_logits_from changes no token; each decoded token is the argmax of its kept logits
    wherever generate took an argmax (temperature 0, or a level's one greedy pass), which fails
    for logits kept at the wrong rows, level or pass, or without the guidance; frames not decoded
    (prompt, padding) are one-hot on the code they hold."""
    model = tiny_model()
    lengths, prompt_lengths, semantic, prompt = random_inputs(data, B, T)
    steps = options["steps"]
    first = data.draw(st.integers(0, len(steps) - 1))

    def run(**extra: object) -> object:
        return model.generate(semantic, num_frames=T, lengths=lengths, prompt_codes=prompt,
                              prompt_lengths=prompt_lengths, generator=torch.Generator().manual_seed(5),
                              **options, **extra)

    plain = run()
    codes, logits = run(return_logits_from=first)
    assert torch.equal(codes, plain)
    assert logits.shape == (B, T, len(steps) - first, K) and logits.dtype == torch.float32

    frames = torch.arange(T)
    to_decode = (frames < lengths[:, None]) & (frames >= prompt_lengths[:, None])  # [B, T]
    fine = codes[:, :, first:]  # [B, T, L - first]
    one_hot = F.one_hot(fine, K).double()
    torch.testing.assert_close(logits[~to_decode].softmax(-1).double(), one_hot[~to_decode], rtol=0, atol=0)
    assert bool(torch.isfinite(logits[to_decode]).all())
    for i, level in enumerate(range(first, len(steps))):
        argmax_taken = options["temperature"] == 0.0 or (steps[level] == 1 and options["greedy_last"])
        if argmax_taken:  # the token's logit is the largest (ties in float32 allowed)
            chosen = logits[:, :, i].gather(-1, fine[:, :, i, None]).squeeze(-1)  # [B, T]
            assert torch.equal(chosen[to_decode], logits[:, :, i].amax(-1)[to_decode])


def test_return_logits_from_must_name_a_decoded_level() -> None:
    model = tiny_model()
    semantic = torch.zeros(1, 3, dtype=torch.long)
    for bad in (-1, 2, True, 1.0):
        with pytest.raises(ValueError, match=r"return_logits_from must be a level in \[0, 2\)"):
            model.generate(semantic, steps=[2, 1], return_logits_from=bad)  # type: ignore[arg-type]


# ---- the codec: expected codebook vectors ------------------------------------------------------


@pytest.fixture(scope="module")
def codec() -> SoundStreamCodec:
    torch.manual_seed(0)
    return SoundStreamCodec(SoundStream(SoundStreamConfig.preset("tiny")), name="soundstream:tiny")


def test_one_hot_distributions_decode_as_their_codes(codec: SoundStreamCodec) -> None:
    codes = torch.randint(codec.codebook_size, (2, 7, 3))
    probs = F.one_hot(codes[..., 1:], codec.codebook_size).float()  # [2, 7, 2, K]
    torch.testing.assert_close(codec.decode_expected(codes[..., :1], probs), codec.decode(codes),
                               rtol=1e-5, atol=1e-6)


def test_a_distribution_decodes_as_the_mean_of_its_codebook_vectors(codec: SoundStreamCodec) -> None:
    """Two codes at 0.3 / 0.7 give the decoder 0.3 e_a + 0.7 e_b: checked on the latents, and
    the waveform differs from either code's."""
    quantizer = codec.model.quantizer
    codes = torch.randint(codec.codebook_size, (1, 5, 1))
    probs = torch.zeros(1, 5, 1, codec.codebook_size)
    probs[..., 3], probs[..., 9] = 0.3, 0.7
    latents = quantizer.decode_expected(codes, probs)  # [1, D, 5]
    embedding = quantizer.levels[1].embedding
    expected = quantizer.decode(codes) + (0.3 * embedding[3] + 0.7 * embedding[9])[None, :, None]
    torch.testing.assert_close(latents, expected)
    soft = codec.decode_expected(codes, probs)
    for code in (3, 9):
        hard = codec.decode(torch.cat([codes, torch.full_like(codes, code)], dim=-1))
        assert not torch.allclose(soft, hard, atol=1e-4)


@pytest.mark.parametrize(("probs", "message"), [
    (torch.full((1, 5, 1, 64), 1 / 64, dtype=torch.float64)[..., :32], r"probs must be \[B, T, L - c, K\]"),
    (torch.full((1, 4, 1, 64), 1 / 64), r"probs must be \[B, T, L - c, K\]"),
    (torch.full((1, 5, 4, 64), 1 / 64), r"at most 3"),
    (torch.full((1, 5, 1, 64), 1.0), "summing to 1"),
    (torch.full((1, 5, 1, 64), float("nan")), "finite"),
    (torch.zeros(1, 5, 64), "float tensor"),
    (torch.full((1, 5, 1, 64), 1, dtype=torch.long), "float tensor"),
])
def test_bad_distributions_are_refused(codec: SoundStreamCodec, probs: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        codec.decode_expected(torch.zeros(1, 5, 1, dtype=torch.long), probs)


def test_a_level_prefix_decodes_softly_through_its_codec_and_a_tokens_only_codec_refuses(
        codec: SoundStreamCodec) -> None:
    prefix = LevelPrefix(codec, 2)  # what Codec.with_num_quantizers wraps a backend in
    assert prefix.decodes_expected
    codes, probs = torch.randint(64, (1, 5, 1)), torch.full((1, 5, 1, 64), 1 / 64)
    torch.testing.assert_close(prefix.decode_expected(codes, probs), codec.decode_expected(codes, probs))
    with pytest.raises(ValueError, match="at most 1"):
        prefix.decode_expected(codes, torch.full((1, 5, 2, 64), 1 / 64))
    tokens_only = FakeCodec(codebook_size=64)
    assert not tokens_only.decodes_expected
    with pytest.raises(NotImplementedError, match="cannot decode distributions"):
        tokens_only.decode_expected(codes, probs)


# ---- the pipeline ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("models"))


@needs_flite
def test_soft_decoding_changes_the_audio_and_not_one_token(models: Path) -> None:
    pipeline = SpeechPipeline.from_folder(models)
    voice = pipeline.default_voice()
    semantic = torch.arange(12) % 16
    hard_options = DecodingOptions(steps=[3, 1, 1, 1], seed=2, soft_temperature=0.0)
    soft_options = DecodingOptions(steps=[3, 1, 1, 1], seed=2, soft_temperature=0.5)
    hard, soft = pipeline.acoustic(semantic, voice, hard_options), pipeline.acoustic(semantic, voice, soft_options)
    assert hard.probs is None and torch.equal(hard.codes, soft.codes)
    assert soft.probs is not None and soft.probs.shape == (24, 3, 64)
    torch.testing.assert_close(soft.probs.sum(-1), torch.ones(24, 3))
    # The probs are the argmax's own distribution, sharpened: the argmax is the token.
    assert torch.equal(soft.probs.argmax(-1), soft.codes[:, 1:])

    traces = [Trace(), Trace()]
    wav_hard, wav_soft = (pipeline.render([pipeline.plan_speak(semantic, voice, o)], traces=[t])[0]
                          for o, t in zip((hard_options, soft_options), traces))
    assert torch.equal(traces[0].codes, traces[1].codes)
    assert wav_hard.shape == wav_soft.shape and np.isfinite(wav_soft).all()
    assert not np.allclose(wav_hard, wav_soft, atol=1e-5)
    np.testing.assert_allclose(wav_soft, pipeline.decode(soft, voice), atol=1e-6)
    # The temperature sharpens SoundStorm's distribution: p_0.5 = p_1^2 / sum p_1^2.
    warm = pipeline.acoustic(semantic, voice, DecodingOptions(steps=[3, 1, 1, 1], seed=2, soft_temperature=1.0))
    assert warm.probs is not None
    squared = warm.probs.double() ** 2
    torch.testing.assert_close(soft.probs.double(), squared / squared.sum(-1, keepdim=True), rtol=1e-4, atol=1e-6)


@needs_flite
def test_the_folder_s_soft_temperature_is_the_default_and_bad_values_are_refused(models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    shutil.copytree(models, folder)
    (folder / "decoding.json").write_text(json.dumps({"steps": [2, 1, 1, 1], "soft_temperature": 0.5}))
    pipeline = SpeechPipeline.from_folder(folder)
    assert pipeline.default_soft_temperature == 0.5
    voice = pipeline.default_voice()
    semantic = torch.arange(8) % 16
    assert pipeline.acoustic(semantic, voice, DecodingOptions()).probs is not None
    assert pipeline.acoustic(semantic, voice, DecodingOptions(soft_temperature=0)).probs is None
    assert pipeline.acoustic(semantic, voice, DecodingOptions(steps=[2])).probs is None  # no finer level
    for bad in (-1, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="soft_temperature must be a number >= 0"):
            pipeline.acoustic(semantic, voice, DecodingOptions(soft_temperature=bad))  # type: ignore[arg-type]
    (folder / "decoding.json").write_text(json.dumps({"soft_temperature": -0.5}))
    with pytest.raises(ValueError, match="default soft temperature must be a number >= 0"):
        SpeechPipeline.from_folder(folder)
    # A codec that decodes tokens only cannot be asked for soft decoding, by default or by request.
    tokens_only = FakeCodec(codebook_size=64)
    plain = SpeechPipeline(tokens_only, pipeline.semantic, pipeline.soundstorm)
    voice = Voice("codes", voice.codes, voice.semantic)
    assert plain.acoustic(semantic, voice, DecodingOptions(steps=[2, 1, 1, 1])).probs is None
    with pytest.raises(ValueError, match="cannot do"):
        plain.acoustic(semantic, voice, DecodingOptions(soft_temperature=0.5))
    with pytest.raises(ValueError, match="cannot do"):
        SpeechPipeline(tokens_only, pipeline.semantic, pipeline.soundstorm, default_soft_temperature=0.5)
