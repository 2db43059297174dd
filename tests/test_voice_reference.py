"""A codec decoder that reads a voice reference (SoundStreamConfig.reference_mels): the reference
is the shape of a recording's long-term spectrum, whatever its level; the decoder starts as the
one it was copied from; bad references are refused; training gives each crop another utterance
of its speaker, equalized as the crop, and codes of the crop before its equalization; the
pipeline decodes each voice with its own prompt, adaptation included."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_soundstorm_inputs import VOCOS, run_overrides, write_models
from test_token_cache import make_corpus

from soundstorm.codecs import load_codec
from soundstorm.codecs.soundstream import SoundStream, SoundStreamConfig
from soundstorm.data.audio_dataset import EQ_POINTS, AudioCropDataset, equalize
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline
from soundstorm.train.recipe import Recipe
from soundstorm.train.soundstream_task import load_decoder, load_encoder
from soundstorm.train.trainer import Trainer
from tests.fakes import FakeCodec
from tests.speech_models import needs_flite, write_tiny_models

RECIPE = Path(__file__).parent.parent / "recipes" / "demo" / "codec-reference.toml"
M = 12  # reference mel bands in these tests


def speech_like(seconds: float, seed: int, sample_rate: int = 16000) -> torch.Tensor:
    """float [1, 1, N]: a buzz at 120 Hz with harmonics, in bursts with pauses between them."""
    t = torch.arange(round(seconds * sample_rate)) / sample_rate
    generator = torch.Generator().manual_seed(seed)
    wav = sum(torch.sin(2 * torch.pi * 120 * k * t) / k for k in range(1, 30))
    bursts = (torch.sin(2 * torch.pi * 2 * t) > -0.3).float()  # a third of the time silent
    return (0.1 * wav * bursts + 1e-4 * torch.randn(len(t), generator=generator))[None, None]


def test_the_reference_is_the_shape_of_the_spectrum_not_its_level() -> None:
    model = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS, reference_mels=M)).eval()
    wav = speech_like(3.0, 0)
    spectrum = model.reference_spectrum(wav)  # [1, M]
    assert spectrum.shape == (1, M) and abs(float(spectrum.mean())) < 1e-4  # level removed
    torch.testing.assert_close(model.reference_spectrum(0.1 * wav), spectrum, atol=1e-3, rtol=0)
    # Twice as long with silence after it: pauses are left out of the mean.
    padded = torch.cat([wav, torch.zeros_like(wav)], dim=-1)
    torch.testing.assert_close(model.reference_spectrum(padded), spectrum, atol=0.05, rtol=0)
    # Brighter speech (+12 dB above 3 kHz) has a reference that rises in the top bands, not the low ones.
    gains = [0.0, 0.0, 0.0, 0.0, 12.0, 12.0, 12.0]
    bright = torch.from_numpy(equalize(wav[0, 0].numpy(), 16000, gains))[None, None]
    rise = model.reference_spectrum(bright)[0] - spectrum[0]  # [M], natural log: 12 dB is 2.76
    assert float(rise[-3:].mean()) - float(rise[:3].mean()) > 2.0
    # Silence has no spectrum: zeros, which the decoder reads as "none given".
    assert float(model.reference_spectrum(torch.zeros(1, 1, 16000)).abs().max()) == 0.0


def test_a_copied_decoder_decodes_as_its_source_until_it_learns_the_reference(tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS)).eval()
    plain.save_pretrained(tmp_path / "plain")
    model = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS, reference_mels=M)).eval()
    load_encoder(model, tmp_path / "plain")  # as options.encoder_from and decoder_from do
    load_decoder(model, tmp_path / "plain")
    codes = torch.randint(64, (2, 10, 4), generator=torch.Generator().manual_seed(1))
    reference = model.reference_spectrum(torch.cat([speech_like(2.0, 1), 0.5 * speech_like(2.0, 2)]))  # [2, M]
    with torch.no_grad():
        before = plain.decode(codes)
        torch.testing.assert_close(model.decode(codes, reference=reference), before)  # the projection starts at zero
        model.decoder.reference_projection.weight.normal_(generator=torch.Generator().manual_seed(3))
        heard = model.decode(codes, reference=reference)
        assert not torch.allclose(heard, before, atol=1e-4)
        torch.testing.assert_close(model.decode(codes), before)  # none given: nothing added
        torch.testing.assert_close(model.decode(codes, reference=torch.zeros(2, M)), before)
        # One vector per clip, the same push at every frame: each row of the batch reads its own.
        torch.testing.assert_close(model.decode(codes[:1], reference=reference[:1]), heard[:1])
        probs = torch.nn.functional.one_hot(codes[..., 1:], 64).float()
        torch.testing.assert_close(model.decode_expected(codes[..., :1], probs, reference=reference), heard)
    with pytest.raises(ValueError, match=r"must be float \[B, M\] = \[2, 12\]"):
        model.decode(codes, reference=reference[:, :5])
    with pytest.raises(ValueError, match="reads no voice reference"):
        plain.decode(codes, reference=reference)
    with pytest.raises(ValueError, match="reference_mels must be an integer >= 0"):
        SoundStreamConfig.preset("tiny", **VOCOS, reference_mels=-1)
    with pytest.raises(ValueError, match="only the vocos decoder reads a voice reference"):
        SoundStreamConfig.preset("tiny", reference_mels=M)


def test_every_block_can_read_the_reference_too(tmp_path: Path) -> None:
    torch.manual_seed(0)
    once = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS, reference_mels=M)).eval()
    with torch.no_grad():
        once.decoder.reference_projection.weight.normal_(generator=torch.Generator().manual_seed(3))
    once.save_pretrained(tmp_path / "once")
    model = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS, reference_mels=M, reference_in_blocks=True)).eval()
    load_encoder(model, tmp_path / "once")
    load_decoder(model, tmp_path / "once")  # the blocks' projections are new: they start at zero
    codes = torch.randint(64, (1, 10, 4), generator=torch.Generator().manual_seed(1))
    reference = model.reference_spectrum(speech_like(2.0, 1))
    with torch.no_grad():
        torch.testing.assert_close(model.decode(codes, reference=reference), once.decode(codes, reference=reference))
        for projection in model.decoder.reference_block_projections:
            projection.weight.normal_(generator=torch.Generator().manual_seed(4))
        assert not torch.allclose(model.decode(codes, reference=reference), once.decode(codes, reference=reference), atol=1e-4)
        torch.testing.assert_close(model.decode(codes), once.decode(codes))  # none given: nothing added anywhere
    with pytest.raises(ValueError, match="reference_in_blocks .* needs reference_mels > 0"):
        SoundStreamConfig.preset("tiny", **VOCOS, reference_in_blocks=True)


def test_the_codec_binds_a_voice_s_reference_to_a_view_of_its_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS, reference_mels=M)).eval()
    with torch.no_grad():
        model.decoder.reference_projection.weight.normal_(generator=torch.Generator().manual_seed(3))
    model.save_pretrained(tmp_path / "codec")
    codec = load_codec(f"soundstream:{tmp_path / 'codec'}")
    prefix = codec.with_num_quantizers(2)
    voice = speech_like(2.0, 4)
    bound = codec.with_reference(voice)
    assert bound.model is codec.model and codec.reference is None  # a view: the codec itself unchanged
    codes = codec.encode(speech_like(0.4, 5))
    expected = model.decode(codes, reference=model.reference_spectrum(voice))
    torch.testing.assert_close(bound.decode(codes), expected)
    torch.testing.assert_close(bound.decode_generated(codes, torch.nn.functional.one_hot(codes[..., 1:], 64).float()),
                               expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(codec.decode(codes), expected, atol=1e-4)
    torch.testing.assert_close(prefix.with_reference(voice).decode(codes[..., :2]),
                               model.decode(codes[..., :2], reference=model.reference_spectrum(voice)))
    assert codec.reads_reference and not FakeCodec().reads_reference
    with pytest.raises(ValueError, match="reads no voice reference"):
        FakeCodec().with_reference(voice)
    with pytest.raises(ValueError, match=r"one recording \[1, 1, N\]"):
        codec.with_reference(voice.repeat(2, 1, 1))


def test_each_crop_comes_with_its_clean_self_and_another_utterance_of_its_speaker(tmp_path: Path) -> None:
    manifest = make_corpus(tmp_path / "corpus", [1.0] * 9)
    dataset = AudioCropDataset(manifest, sample_rate=16000, crop_seconds=0.5, split="train", eq_db=10.0,
                               reference_seconds=0.8)
    for position in range(len(dataset)):
        crop = dataset[position]
        assert crop.clean is not None and crop.reference is not None and crop.reference.shape == (1, 12800)
        other = dataset.reference_position(position)
        assert dataset.entries[other].speaker == dataset.entries[position].speaker
        assert other != position or len(dataset.by_speaker[dataset.entries[position].speaker]) == 1
        # The crop is its clean copy equalized (and scaled down if it would clip); its reference too.
        equalized = equalize(crop.clean[0].numpy(), 16000, crop.eq_gains_db)
        np.testing.assert_allclose(crop.wav[0].numpy(), equalized * min(1.0, 0.99 / np.abs(equalized).max()), atol=1e-5)
        assert len(crop.eq_gains_db) == len(EQ_POINTS)
    plain = AudioCropDataset(manifest, sample_rate=16000, crop_seconds=0.5, split="train", reference_seconds=0.8)
    crop = plain[0]
    assert crop.clean is not None and torch.equal(crop.clean, crop.wav)  # no equalization: the same audio
    with pytest.raises(ValueError, match="reference_seconds must be > 0"):
        AudioCropDataset(manifest, sample_rate=16000, crop_seconds=0.5, reference_seconds=0.0)


def reference_overrides(manifest: Path, models: Path, steps: int) -> list[str]:
    return [*run_overrides(manifest, models, steps), "model.semantic_vocab_size=16", "model.semantic_feature_dim=39",
            f"model.reference_mels={M}", f'options.encoder_from="{models / "codec"}"',
            f'options.decoder_from="{models / "codec"}"', "options.soundstorm_inputs.share=0.5",
            "options.reference.seconds=0.5", "options.reference.dropout=0.0"]


def test_training_teaches_the_decoder_the_reference_and_moves_no_token(tmp_path: Path) -> None:
    models = write_models(tmp_path / "models")
    manifest = make_corpus(tmp_path / "corpus", [1.0] * 6)
    trainer = Trainer(Recipe.load(RECIPE, reference_overrides(manifest, models, 3)), tmp_path / "run", progress=False)
    assert trainer.fit()["step"] == 3
    before, after = load_codec(f"soundstream:{models / 'codec'}"), load_codec(f"soundstream:{tmp_path / 'run' / 'model'}")
    assert after.encoder_digest == before.encoder_digest  # the token cache stays valid
    assert after.reads_reference and float(after.model.decoder.reference_projection.weight.detach().abs().max()) > 0
    assert trainer.validate()["mel_soundstorm_inputs"] > 0
    for bad, message in [(["options.reference.share=1.5"], r"options.reference.share must be in \[0, 1\]"),
                         (["options.reference.seconds=0"], "options.reference.seconds must be > 0"),
                         (["options.reference.wet=1"], "options.reference: .*fields: seconds, share, dropout"),
                         (["model.reference_mels=0"], r"is trained with \[options.reference\], and only such")]:
        with pytest.raises(ValueError, match=message):
            Trainer(Recipe.load(RECIPE, [*reference_overrides(manifest, models, 1), *bad]), tmp_path / "bad", progress=False)


def models_with_reference_decoder(root: Path, seed: int | None = None) -> Path:
    """The tiny speech models with a decoder/ that reads a voice reference (the codec's encoder and
    codebooks; a Vocos decoder whose reference projection is random with `seed`, else zero)."""
    models = write_tiny_models(root / "plain")
    folder = root / "models"
    shutil.copytree(models, folder)
    plain = SoundStream.from_pretrained(models / "codec")
    model = SoundStream(SoundStreamConfig.from_dict({**plain.config.to_dict(), **VOCOS, "reference_mels": M}))
    model.load_state_dict({k: v for k, v in plain.state_dict().items() if not k.startswith("decoder.")}, strict=False)
    if seed is not None:
        with torch.no_grad():
            model.decoder.reference_projection.weight.normal_(generator=torch.Generator().manual_seed(seed))
    model.save_pretrained(folder / "decoder")
    return folder


@needs_flite
def test_the_pipeline_decodes_each_voice_with_its_own_prompt(tmp_path: Path) -> None:
    pipeline = SpeechPipeline.from_folder(models_with_reference_decoder(tmp_path, seed=3))
    assert pipeline.decoder.reads_reference and not pipeline.codec.reads_reference
    voice = pipeline.default_voice()
    assert voice.recording is not None
    semantic = torch.arange(12) % 16
    options = DecodingOptions(steps=[2, 1, 1, 1], seed=2, soft_temperature=0.0)
    tokens = pipeline.acoustic(semantic, voice, options)
    wav = pipeline.render([pipeline.plan_speak(semantic, voice, options)])[0]
    expected = pipeline.decoder.with_reference(voice.recording).decode(tokens.codes[None])[0, 0].numpy()
    np.testing.assert_allclose(wav, expected, atol=1e-5)
    # Another recording of the same tokens' voice changes the audio; none decodes as the plain decoder.
    other = type(voice)(voice.name, voice.codes, voice.semantic, recording=0.3 * speech_like(2.0, 7))
    assert not np.allclose(pipeline.decode(tokens, other), wav, atol=1e-4)
    unbound = type(voice)(voice.name, voice.codes, voice.semantic)
    plain_audio = pipeline.decoder.decode(tokens.codes[None])[0, 0].numpy()
    np.testing.assert_allclose(pipeline.decode(tokens, unbound), plain_audio, atol=1e-5)
    # DecodingOptions.voice_reference = False (--no-voice-reference): the prompt is not given.
    off = DecodingOptions(steps=[2, 1, 1, 1], seed=2, soft_temperature=0.0, voice_reference=False)
    np.testing.assert_allclose(pipeline.render([pipeline.plan_speak(semantic, voice, off)])[0], plain_audio, atol=1e-5)
    # Adapting the decoder to the prompt keeps the prompt's reference beside it, as it decodes.
    adapted = pipeline.default_voice(adapt_steps=1).codec
    assert adapted is not None and torch.equal(adapted.reference, pipeline.decoder.with_reference(voice.recording).reference)


def test_codec_eval_gives_each_speaker_s_clips_another_utterance_as_reference(tmp_path: Path) -> None:
    import soundfile as sf

    from soundstorm.codecs.soundstream.adapt import DecoderAdaptation
    from soundstorm.codecs.soundstream.codec import SoundStreamCodec
    from soundstorm.data.manifest import ManifestEntry
    from soundstorm.eval.codec_eval import adapted_decoders

    torch.manual_seed(0)
    model = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS, reference_mels=M)).eval()
    codec = SoundStreamCodec(model, name="soundstream:tiny")
    entries = []
    for i, (speaker, split) in enumerate([("a", "test"), ("a", "train"), ("b", "test")]):
        sf.write(tmp_path / f"{i}.wav", speech_like(1.2, i)[0, 0].numpy() * (i + 1) / 3, 16000)
        entries.append(ManifestEntry(id=f"u{i}", path=f"{i}.wav", duration=1.2, sample_rate=16000, speaker=speaker,
                                     split=split))
    decoder_for = adapted_decoders(codec, entries, [entries[0], entries[2]], tmp_path, DecoderAdaptation(steps=0),
                                   seconds=1.0, reference=True)
    bound = decoder_for("a")
    assert bound.model is codec.model  # nothing trained: the reference alone
    expected = model.reference_spectrum(torch.from_numpy(sf.read(tmp_path / "1.wav", dtype="float32")[0][:16000])[None, None])
    torch.testing.assert_close(bound.reference, expected)  # 1 s of u1, the utterance not scored
    plain = SoundStreamCodec(SoundStream(SoundStreamConfig.preset("tiny", **VOCOS)), name="soundstream:plain")
    with pytest.raises(ValueError, match="reads no voice reference"):
        adapted_decoders(plain, entries, [entries[0]], tmp_path, DecoderAdaptation(steps=0), seconds=1.0, reference=True)


@needs_flite
def test_enrolment_teaches_the_decoder_beside_the_voice_s_reference(tmp_path: Path) -> None:
    from soundstorm.model.adapt import SoundStormAdaptation
    from soundstorm.text.enroll import adapt_to_voice

    pipeline = SpeechPipeline.from_folder(models_with_reference_decoder(tmp_path))
    clips = [0.5 * speech_like(1.0, 8), 0.5 * speech_like(1.5, 9)]
    enrolled = adapt_to_voice(pipeline, clips, steps=1, soundstorm=SoundStormAdaptation(steps=0)).codec
    assert enrolled.reference is not None
    torch.testing.assert_close(enrolled.reference, pipeline.decoder.with_reference(torch.cat(clips, dim=-1)).reference)
