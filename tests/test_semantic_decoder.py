"""A codec decoder that also reads semantic tokens (SoundStreamConfig.semantic_vocab_size): it
starts as the decoder it was copied from, the tokens then change its audio, none given means the
null token, bad tokens are refused, the codec and the pipeline hand SoundStorm's conditioning to
it, and a training run or a voice's adaptation teaches it without moving a token."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_soundstorm_inputs import VOCOS, run_overrides, write_models
from test_token_cache import make_corpus

from soundstorm.codecs import load_codec
from soundstorm.codecs.base import LevelPrefix
from soundstorm.codecs.soundstream import SoundStream, SoundStreamConfig
from soundstorm.codecs.soundstream.adapt import DecoderAdaptation, adapt_decoder
from soundstorm.data.audio import load_audio
from soundstorm.model.adapt import SoundStormAdaptation
from soundstorm.semantic.kmeans_tokenizer import load_kmeans_tokenizer
from soundstorm.text.enroll import adapt_to_voice
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline
from soundstorm.train.recipe import Recipe
from soundstorm.train.soundstream_task import load_decoder, load_encoder
from soundstorm.train.trainer import Trainer
from tests.fakes import FakeCodec
from tests.speech_models import needs_flite, write_tiny_models

RECIPE = Path(__file__).parent.parent / "recipes" / "demo" / "codec-semantic.toml"
V = 16  # the tiny models' semantic vocabulary (write_models, write_tiny_models)


def conditioned(source: Path, root: Path) -> Path:
    """The SoundStream folder at `source` with a decoder that reads V semantic tokens at half its
    frame rate, its weights copied (load_decoder) and a random semantic embedding."""
    plain = SoundStream.from_pretrained(source)
    model = SoundStream(SoundStreamConfig.from_dict({**plain.config.to_dict(), "semantic_vocab_size": V,
                                                     "semantic_rate_ratio": 2}))
    model.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        model.decoder.semantic.weight.normal_(generator=torch.Generator().manual_seed(3))
    model.save_pretrained(root)
    return root


def test_a_copied_decoder_decodes_as_its_source_until_it_learns_the_tokens(tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS)).eval()
    plain.save_pretrained(tmp_path / "plain")
    model = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS, semantic_vocab_size=V)).eval()
    load_encoder(model, tmp_path / "plain")  # as options.encoder_from and decoder_from do
    load_decoder(model, tmp_path / "plain")
    codes = torch.randint(64, (2, 10, 4), generator=torch.Generator().manual_seed(1))
    semantic = torch.randint(V, (2, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = plain.decode(codes)
        # The embedding starts at zero: with tokens or without, the source's audio.
        torch.testing.assert_close(model.decode(codes, semantic), before)
        torch.testing.assert_close(model.decode(codes), before)
        model.decoder.semantic.weight.normal_(generator=torch.Generator().manual_seed(3))
        heard = model.decode(codes, semantic)
        assert not torch.allclose(heard, before, atol=1e-4)
        # None given is the null token V at every frame; extra tokens past ceil(T / 2) are cut.
        torch.testing.assert_close(model.decode(codes), model.decode(codes, torch.full((2, 5), V)))
        torch.testing.assert_close(model.decode(codes, torch.cat([semantic, semantic], dim=1)), heard)
        # Token s is read at frames 2s and 2s + 1: over 20 frames, changing the last token moves
        # only audio within the decoder's reach (3 frames a ConvNeXt block, 2 for the iSTFT) of them.
        long_codes, long_semantic = codes.repeat(1, 2, 1), semantic.repeat(1, 2)  # [2, 20, 4], [2, 10]
        changed = long_semantic.clone()
        changed[:, -1] = (changed[:, -1] + 1) % V
        moved = (model.decode(long_codes, changed) - model.decode(long_codes, long_semantic)).abs().amax(dim=(0, 1))
        hop = model.hop_length
        assert float(moved[: 8 * hop].max()) < 1e-6 < float(moved[18 * hop:].max())
        # Soft decoding reads the same tokens: one-hot distributions decode as their codes.
        probs = torch.nn.functional.one_hot(codes[..., 1:], 64).float()
        torch.testing.assert_close(model.decode_expected(codes[..., :1], probs, semantic), heard)


def test_bad_semantic_tokens_and_configs_are_refused(tmp_path: Path) -> None:
    model = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS, semantic_vocab_size=V)).eval()
    codes = torch.zeros(1, 10, 4, dtype=torch.long)
    for bad, message in [(torch.zeros(1, 4, dtype=torch.long), r"\[B, S\] = \[1, >= 5\]"),
                         (torch.zeros(2, 5, dtype=torch.long), r"\[B, S\] = \[1, >= 5\]"),
                         (torch.zeros(1, 5), "int64"), (torch.full((1, 5), V + 1), r"in \[0, 16\)")]:
        with pytest.raises(ValueError, match=message):
            model.decode(codes, bad)
    plain = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS)).eval()
    with pytest.raises(ValueError, match="reads no semantic tokens"):
        plain.decode(codes, torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="only the vocos decoder"):
        SoundStreamConfig.preset("tiny", semantic_vocab_size=V)
    with pytest.raises(ValueError, match="semantic_vocab_size must be an integer >= 0"):
        SoundStreamConfig.preset("tiny", **VOCOS, semantic_vocab_size=-1)
    plain.save_pretrained(tmp_path / "plain")
    wider = SoundStream(SoundStreamConfig.preset("tiny", **{**VOCOS, "vocos_dim": 48}, semantic_vocab_size=V))
    with pytest.raises(ValueError, match=r"decoder differs from this recipe's in \['vocos_dim'\]"):
        load_decoder(wider, tmp_path / "plain")


def test_the_codec_interface_hands_the_tokens_to_the_decoder(tmp_path: Path) -> None:
    models = write_models(tmp_path / "models")
    codec = load_codec(f"soundstream:{conditioned(models / 'codec', tmp_path / 'conditioned')}")
    assert (codec.semantic_vocab_size, codec.semantic_rate_ratio) == (V, 2)
    codes = torch.randint(64, (1, 10, 4), generator=torch.Generator().manual_seed(1))
    semantic = torch.randint(V, (1, 5), generator=torch.Generator().manual_seed(2))
    probs = torch.softmax(torch.randn(1, 10, 3, 64, generator=torch.Generator().manual_seed(4)), dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(codec.decode_with_semantic(codes, semantic), codec.model.decode(codes, semantic))
        torch.testing.assert_close(codec.decode_with_semantic(codes[..., :1], semantic, probs),
                                   codec.model.decode_expected(codes[..., :1], probs, semantic))
    prefix = codec.with_num_quantizers(2)
    assert isinstance(prefix, LevelPrefix) or prefix.semantic_vocab_size == V
    torch.testing.assert_close(LevelPrefix(codec, 2).decode_with_semantic(codes[..., :2], semantic),
                               codec.decode_with_semantic(codes[..., :2], semantic))
    with pytest.raises(ValueError, match="levels"):
        LevelPrefix(codec, 2).decode_with_semantic(codes, semantic)
    plain = load_codec(f"soundstream:{models / 'codec'}")
    for other in (plain, FakeCodec(codebook_size=64)):
        assert other.semantic_vocab_size == 0
        with pytest.raises(NotImplementedError, match="reads no semantic tokens"):
            other.decode_with_semantic(codes, semantic)


@needs_flite
def test_the_pipeline_decodes_each_segment_with_its_own_semantic_tokens(tmp_path: Path) -> None:
    models = write_tiny_models(tmp_path / "plain")
    folder = tmp_path / "models"
    shutil.copytree(models, folder)
    shutil.rmtree(folder / "codec")
    plain = SoundStream.from_pretrained(models / "codec")
    # The tiny pipeline's codec is a SEANet one: give the conditioned folder a Vocos decoder.
    model = SoundStream(SoundStreamConfig.from_dict({**plain.config.to_dict(), **VOCOS, "semantic_vocab_size": V}))
    model.load_state_dict({k: v for k, v in plain.state_dict().items() if not k.startswith("decoder.")}, strict=False)
    with torch.no_grad():
        model.decoder.semantic.weight.normal_(generator=torch.Generator().manual_seed(3))
    model.save_pretrained(folder / "codec")
    pipeline = SpeechPipeline.from_folder(folder)
    voice = pipeline.default_voice()
    first, second = torch.arange(12) % V, (torch.arange(12) * 5) % V
    for soft in (0.0, 0.5):
        options = DecodingOptions(steps=[2, 1, 1, 1], seed=2, soft_temperature=soft)
        plans = [pipeline.plan_speak(first, voice, options), pipeline.plan_speak(second, voice, options)]
        audio = pipeline.render(plans)
        for semantic, wav in zip((first, second), audio):
            tokens = pipeline.acoustic(semantic, voice, options)
            expected = pipeline.codec.decode_with_semantic(
                tokens.codes[None] if tokens.probs is None else tokens.codes[None, :, :1], semantic[None],
                None if tokens.probs is None else tokens.probs[None])[0, 0].numpy()
            np.testing.assert_allclose(wav, expected, atol=1e-5)
            assert not np.allclose(wav, pipeline.decode(tokens, voice), atol=1e-4)  # the codes alone differ
    # The same decoder as the folder's decoder/, beside the codec: it decodes SoundStorm's tokens,
    # the codec still encodes, and the audio is the same.
    shutil.copytree(models / "codec", tmp_path / "split" / "codec")
    for name in ("semantic", "soundstorm", "t2s", "voices"):
        shutil.copytree(folder / name, tmp_path / "split" / name)
    shutil.copytree(folder / "codec", tmp_path / "split" / "decoder")
    split = SpeechPipeline.from_folder(tmp_path / "split")
    assert split.codec.semantic_vocab_size == 0 and split.decoder.semantic_vocab_size == V
    options = DecodingOptions(steps=[2, 1, 1, 1], seed=2, soft_temperature=0.5)
    np.testing.assert_allclose(split.render([split.plan_speak(first, split.default_voice(), options)])[0],
                               pipeline.render([pipeline.plan_speak(first, voice, options)])[0], atol=1e-5)
    # Adapting it to a voice (a prompt's --adapt-decoder, enrolment) teaches it beside the clip's own
    # semantic tokens: what it learns is the rows of the tokens heard in the clip (and the null one).
    samples, _ = load_audio(tmp_path / "split" / "voices" / "default.wav", sample_rate=split.sample_rate, resample=True)
    voice_wav = torch.from_numpy(samples)[None, None]
    heard = set(split.tokens(voice_wav)[1].tolist())
    for adapted in (split.default_voice(adapt_steps=2).codec,
                    adapt_to_voice(split, [voice_wav], steps=2, soundstorm=SoundStormAdaptation(steps=0)).codec):
        moved = (adapted.model.decoder.semantic.weight - split.decoder.model.decoder.semantic.weight).abs().sum(-1) > 0
        learned = set(torch.nonzero(moved).flatten().tolist()) - {V}
        assert learned and learned <= heard
    # A decoder/ behind other codebooks would read other tokens: refused.
    stranger = SoundStream(SoundStreamConfig.from_dict(model.config.to_dict()))
    stranger.save_pretrained(tmp_path / "split" / "decoder")
    with pytest.raises(ValueError, match="does not decode the codec .*'s tokens: encoder and codebooks"):
        SpeechPipeline.from_folder(tmp_path / "split")
    # A decoder that reads another vocabulary than the tokenizer's is refused when the folder loads.
    other = SoundStream(SoundStreamConfig.from_dict({**model.config.to_dict(), "semantic_vocab_size": V + 1}))
    other.save_pretrained(folder / "codec")
    with pytest.raises(ValueError, match="reads 17 semantic tokens, one per 2 frames; the semantic tokenizer"):
        SpeechPipeline.from_folder(folder)
    # A decoder that reads each token through its centroid loads beside the tokenizer it was trained
    # with, in float16 as bundled, and is refused beside another one of the same vocabulary.
    described = SoundStream(SoundStreamConfig.from_dict({**model.config.to_dict(), "semantic_feature_dim": 39}))
    described.load_state_dict(model.state_dict(), strict=False)
    described.decoder.set_semantic_features(load_kmeans_tokenizer(folder / "semantic").centroids)
    described.half().save_pretrained(folder / "codec")
    assert SpeechPipeline.from_folder(folder).decoder.semantic_features().shape == (V, 39)
    described.decoder.set_semantic_features(torch.randn(V, 39, generator=torch.Generator().manual_seed(5)))
    described.save_pretrained(folder / "codec")
    with pytest.raises(ValueError, match="k-means centroids of the tokenizer it was trained with"):
        SpeechPipeline.from_folder(folder)


def semantic_overrides(manifest: Path, models: Path, steps: int) -> list[str]:
    return [*run_overrides(manifest, models, steps), f"model.semantic_vocab_size={V}",
            f'options.encoder_from="{models / "codec"}"', f'options.decoder_from="{models / "codec"}"',
            "options.soundstorm_inputs.share=0.5"]


def test_training_teaches_the_decoder_the_tokens_and_moves_no_token(tmp_path: Path) -> None:
    models = write_models(tmp_path / "models")
    manifest = make_corpus(tmp_path / "corpus", [1.0] * 6)
    trainer = Trainer(Recipe.load(RECIPE, [*semantic_overrides(manifest, models, 3), "options.semantic_dropout=0.0"]),
                      tmp_path / "run", progress=False)
    assert trainer.fit()["step"] == 3
    before, after = load_codec(f"soundstream:{models / 'codec'}"), load_codec(f"soundstream:{tmp_path / 'run' / 'model'}")
    assert after.encoder_digest == before.encoder_digest  # the token cache stays valid
    assert after.semantic_vocab_size == V
    embedding = after.model.decoder.semantic.weight.detach()  # [V + 1, C]
    assert float(embedding[:V].abs().max()) > 0  # learned from zero
    assert float(embedding[V].abs().max()) == 0  # the null token: never given without dropout
    assert trainer.validate()["mel_soundstorm_inputs"] > 0

    for bad, message in [([f"model.semantic_vocab_size={V + 1}"], "semantic_vocab_size / semantic_rate_ratio are 17 / 2"),
                         (["options.semantic_dropout=1.5"], r"semantic_dropout must be in \[0, 1\]")]:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            Trainer(Recipe.load(RECIPE, [*semantic_overrides(manifest, models, 1), *bad]), tmp_path / "bad", progress=False)
    # The tokens come from options.soundstorm_inputs' tokenizer: a recipe without it is refused.
    plain = Path(__file__).parent.parent / "recipes" / "demo" / "codec-eq.toml"
    with pytest.raises(ValueError, match=r"is trained with \[options.soundstorm_inputs\]"):
        Trainer(Recipe.load(plain, [f'data.cache="{manifest}"', 'model.preset="tiny"', "model.vocos_dim=32",
                                    "model.vocos_depth=2", f"model.semantic_vocab_size={V}"]), tmp_path / "bad", progress=False)


def test_adaptation_learns_the_clips_own_tokens_and_nothing_else(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS, semantic_vocab_size=V, semantic_rate_ratio=2)).eval()
    rate = model.sample_rate
    clips = [torch.randn(1, 1, rate, generator=torch.Generator().manual_seed(s)) * 0.1 for s in (1, 2)]
    frames = [model.encode(clip).shape[1] for clip in clips]
    # Each clip hears only some of the vocabulary: tokens 1-3 and 5-6; crops must read no other.
    semantic = [torch.tensor([1, 2, 3] * (-(-T // 6)))[: T // 2] for T in frames[:1]]
    semantic += [torch.tensor([5, 6] * (-(-frames[1] // 4)))[: frames[1] // 2]]
    options = DecoderAdaptation(steps=4, batch_size=4, crop_seconds=0.2, semantic_dropout=0.5)
    adapted = adapt_decoder(model, clips, options, semantic)
    moved = (adapted.decoder.semantic.weight - model.decoder.semantic.weight).abs().sum(-1) > 0  # [V + 1]
    assert set(torch.nonzero(moved).flatten().tolist()) == {1, 2, 3, 5, 6, V}  # heard tokens and the null one
    for name in ("encoder", "quantizer"):
        for (key, before), after in zip(getattr(model, name).state_dict().items(), getattr(adapted, name).state_dict().values()):
            torch.testing.assert_close(after, before, msg=key)
    # Without the clips' tokens only the null token is learned; with none dropped it is never read.
    plain = adapt_decoder(model, clips, DecoderAdaptation(steps=2, batch_size=2, crop_seconds=0.2))
    moved = (plain.decoder.semantic.weight - model.decoder.semantic.weight).abs().sum(-1) > 0
    assert torch.nonzero(moved).flatten().tolist() == [V]
    kept = adapt_decoder(model, clips, DecoderAdaptation(steps=2, batch_size=2, crop_seconds=0.2, semantic_dropout=0.0),
                         semantic)
    assert not bool(((kept.decoder.semantic.weight - model.decoder.semantic.weight)[V]).abs().sum() > 0)


def test_adaptation_refuses_tokens_it_cannot_read(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reads = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS, semantic_vocab_size=V)).eval()
    plain = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS)).eval()
    clip = torch.randn(1, 1, reads.sample_rate) * 0.1
    tokens = torch.zeros(10, dtype=torch.long)
    options = DecoderAdaptation(steps=1, batch_size=1)
    with pytest.raises(ValueError, match="reads no semantic tokens"):
        adapt_decoder(plain, clip, options, [tokens])
    with pytest.raises(ValueError, match="one semantic token sequence per clip: 1 clips, 2"):
        adapt_decoder(reads, clip, options, [tokens, tokens])
    with pytest.raises(ValueError, match=rf"must be in \[0, {V}\)"):
        adapt_decoder(reads, clip, options, [tokens + V])  # the null token is the adaptation's to choose
    with pytest.raises(ValueError, match="int64 \\[S\\]"):
        adapt_decoder(reads, clip, options, [tokens[None]])
    with pytest.raises(ValueError, match="semantic_dropout"):
        DecoderAdaptation(semantic_dropout=1.5)


def test_token_features_are_the_tokenizers_centroids_read_through_one_projection(tmp_path: Path) -> None:
    models = write_models(tmp_path / "models")  # a k-means tokenizer of 16 MFCC centroids [16, 39]
    manifest = make_corpus(tmp_path / "corpus", [1.0] * 6)
    conditioned(models / "codec", tmp_path / "reader")  # a decoder that reads tokens, without features
    overrides = [*semantic_overrides(manifest, models, 3), "model.semantic_feature_dim=39",
                 f'options.decoder_from="{tmp_path / "reader"}"']
    trainer = Trainer(Recipe.load(RECIPE, overrides), tmp_path / "run", progress=False)
    decoder = trainer.modules["model"].decoder
    source = SoundStream.from_pretrained(tmp_path / "reader").decoder
    # It starts as the folder it was copied from: its embedding, and a projection at zero.
    torch.testing.assert_close(decoder.semantic.weight, source.semantic.weight)
    assert float(decoder.semantic_projection.weight.detach().abs().max()) == 0
    # Each token is described by its centroid, centred and scaled; the null token by zeros.
    centroids = load_kmeans_tokenizer(models / "semantic").centroids
    features = decoder.semantic_features  # [V + 1, 39]
    standardized = (centroids - centroids.mean(dim=0)) / (centroids - centroids.mean(dim=0)).std()
    torch.testing.assert_close(features[:V], standardized)
    assert float(features[V].abs().max()) == 0
    assert trainer.fit()["step"] == 3
    after = SoundStream.from_pretrained(tmp_path / "run" / "model").decoder
    assert float(after.semantic_projection.weight.abs().max()) > 0  # learned from zero
    torch.testing.assert_close(after.semantic_features, features)  # saved with the weights, unchanged
    # Tokens with the same features are pushed alike by the projection: only their rows differ.
    tokens = torch.tensor([[0, V]])
    with torch.no_grad():
        pushed = after.semantic_embedding(tokens) - after.semantic(tokens)  # [1, 2, C]
    torch.testing.assert_close(pushed[0, 1], torch.zeros_like(pushed[0, 1]))
    assert float(pushed[0, 0].abs().max()) > 0

    with pytest.raises(ValueError, match="needs semantic_vocab_size > 0"):
        SoundStreamConfig.preset("tiny", **VOCOS, semantic_feature_dim=4)
    with pytest.raises(ValueError, match=r"semantic features must be \[V, E\] = \[16, 39\]"):
        after.set_semantic_features(torch.zeros(16, 38))
    plain = SoundStream(SoundStreamConfig.preset("tiny", **VOCOS, semantic_vocab_size=V))
    with pytest.raises(ValueError, match="has no semantic features"):
        plain.decoder.set_semantic_features(centroids)
    with pytest.raises(ValueError, match=r"\[V, E\] = \[16, 38\]"):
        Trainer(Recipe.load(RECIPE, [*overrides, "model.semantic_feature_dim=38"]), tmp_path / "bad", progress=False)
