"""Decoder adaptation to a voice prompt: it fits the prompt, leaves every token (and the
original codec) as it was, and the pipeline decodes that voice's speech with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundstorm.cli import main
from soundstorm.codecs.soundstream import SoundStream, SoundStreamConfig
from soundstorm.codecs.soundstream.adapt import DecoderAdaptation, adapt_decoder
from soundstorm.codecs.soundstream.training import SoundStreamLossConfig, SoundStreamObjective
from soundstorm.text.pipeline import SpeechPipeline
from tests.speech_models import needs_flite, write_tiny_models


def voice_like(seconds: float = 2.0, sample_rate: int = 16000) -> torch.Tensor:
    """A buzz of harmonics under a slow formant-like envelope: [1, 1, N]."""
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 20 * torch.sin(2 * torch.pi * 1.5 * t)
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / sample_rate
    wav = sum(torch.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t) ** 2)
    return (0.2 * wav / wav.abs().max())[None, None].float()


def mel_error(model: SoundStream, wav: torch.Tensor) -> float:
    objective = SoundStreamObjective(SoundStreamLossConfig(), model.sample_rate)
    with torch.no_grad():
        decoded = model.decode(model.encode(wav))[..., : wav.shape[-1]]
        return float(objective.reconstruction_losses(decoded, wav)["mel"])


def test_adaptation_fits_the_prompt_and_changes_no_token() -> None:
    torch.manual_seed(0)
    model = SoundStream(SoundStreamConfig.preset("tiny")).eval()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    wav = voice_like()
    adapted = adapt_decoder(model, wav, DecoderAdaptation(steps=30, lr=1e-3, crop_seconds=0.5))

    assert mel_error(adapted, wav) < 0.8 * mel_error(model, wav)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())  # the original is untouched
    for name, value in adapted.state_dict().items():
        if not name.startswith("decoder."):
            assert torch.equal(value, original[name].float()), name  # encoder and codebooks as they were
    other = voice_like(1.0) * 0.5
    assert torch.equal(adapted.encode(other), model.encode(other))  # so every token is the same
    assert not adapted.training and not adapted.decoder.training

    unchanged = adapt_decoder(model, wav, DecoderAdaptation(steps=0))
    assert all(torch.equal(v, original[k].float()) for k, v in unchanged.state_dict().items())
    with pytest.raises(ValueError, match="one voice"):
        adapt_decoder(model, wav.repeat(2, 1, 1))
    with pytest.raises(ValueError, match="steps must be >= 0"):
        DecoderAdaptation(steps=-1)

    # A blend keeps that share of the change, and still no token moves.
    half = adapt_decoder(model, wav, DecoderAdaptation(steps=30, lr=1e-3, crop_seconds=0.5, blend=0.5))
    for name, value in half.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (original[name].float() + adapted.state_dict()[name]) / 2)
    assert torch.equal(half.encode(other), model.encode(other))
    assert mel_error(adapted, wav) < mel_error(half, wav) < mel_error(model, wav)
    with pytest.raises(ValueError, match=r"blend must be in \[0, 1\]"):
        DecoderAdaptation(blend=-0.1)


@needs_flite
def test_pipeline_decodes_an_adapted_voice_with_its_own_decoder(tmp_path: Path) -> None:
    models = write_tiny_models(tmp_path / "models")
    pipeline = SpeechPipeline.from_folder(models)
    prompt = models / "voices" / "default.wav"
    plain, adapted = pipeline.voice(prompt), pipeline.voice(prompt, adapt_steps=3)
    assert plain.codec is None and adapted.codec is not None and adapted.codec is not pipeline.codec
    assert torch.equal(plain.codes, adapted.codes)  # the prompt's tokens come from the shared encoder
    codes = plain.codes[:50, : len(pipeline.default_steps)]
    assert not np.allclose(pipeline.decode(codes, adapted), pipeline.decode(codes))
    assert np.array_equal(pipeline.decode(codes, plain), pipeline.decode(codes))

    out = tmp_path / "tts.wav"
    assert main(["tts", "Hello there.", "--models", str(models), "-o", str(out), "--adapt-decoder", "2",
                 "--steps", "2", "1", "1", "1", "--t2s-eos-threshold", "0.3"]) == 0
    wav, rate = sf.read(out)
    assert rate == 16000 and len(wav) > 0 and np.isfinite(wav).all()


def test_codec_eval_adapts_on_an_utterance_it_does_not_score(tmp_path: Path) -> None:
    from soundstorm.codecs.soundstream.codec import SoundStreamCodec
    from soundstorm.data.manifest import ManifestEntry
    from soundstorm.eval.codec_eval import adapted_decoders

    torch.manual_seed(0)
    codec = SoundStreamCodec(SoundStream(SoundStreamConfig.preset("tiny")), name="soundstream:tiny")
    entries = []
    for i, (speaker, split) in enumerate([("a", "test"), ("a", "train"), ("b", "test")]):
        sf.write(tmp_path / f"{i}.wav", voice_like(1.2)[0, 0].numpy() * (i + 1) / 3, 16000)
        entries.append(ManifestEntry(id=f"u{i}", path=f"{i}.wav", duration=1.2, sample_rate=16000, speaker=speaker,
                                     split=split))
    evaluated = [entries[0], entries[2]]
    decoder_for = adapted_decoders(codec, entries, evaluated, tmp_path, DecoderAdaptation(steps=2), seconds=1.0)
    adapted = decoder_for("a")
    assert decoder_for("a") is adapted and adapted.model is not codec.model  # adapted once, on u1
    before, after = codec.model.decoder.state_dict(), adapted.model.decoder.state_dict()
    assert any(not torch.equal(after[name], before[name].float()) for name in before)
    assert torch.equal(adapted.encode(voice_like(0.5)), codec.encode(voice_like(0.5)))
    with pytest.raises(ValueError, match="utterances of b outside the evaluated ones last 0.0 s"):
        decoder_for("b")  # its one utterance is scored: nothing left to adapt on
    enrolled = adapted_decoders(codec, entries, [entries[2]], tmp_path, DecoderAdaptation(steps=1), seconds=2.0)("a")
    assert enrolled.model is not codec.model  # 2 s from two utterances of 1.2 s
    with pytest.raises(ValueError, match="last 2.4 s, not 3 s"):
        adapted_decoders(codec, entries, [entries[2]], tmp_path, DecoderAdaptation(steps=1), seconds=3.0)("a")
