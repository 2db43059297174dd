"""The Vocos-style decoder of our SoundStream: its inverse STFT inverts an STFT, it gives the
SEANet decoder's lengths for any prefix of levels, and a new one trains behind another codec's
encoder and codebooks without changing a token (options.encoder_from)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_token_cache import make_corpus

from soundstorm.codecs import load_codec
from soundstorm.codecs.soundstream import SoundStream, SoundStreamConfig
from soundstorm.codecs.soundstream.config import DECODER_FIELDS
from soundstorm.codecs.soundstream.vocos import InverseSTFT
from soundstorm.train.recipe import Recipe
from soundstorm.train.trainer import Trainer

RECIPES = Path(__file__).parent.parent / "recipes"
VOCOS = dict(decoder="vocos", vocos_dim=32, vocos_depth=2, vocos_n_fft=1280)


def tiny_run(manifest: Path, steps: int) -> list[str]:
    """Recipe overrides for a few steps of a tiny codec on the corpus at `manifest`."""
    return [f'data.cache="{manifest}"', 'model.preset="tiny"', "data.batch_size=2", "data.max_frames=10",
            "data.num_workers=0", "optimizer.warmup_steps=1", f"schedule.valid_every={steps}",
            f"schedule.checkpoint_every={steps}", "schedule.valid_batches=1", "optimizer.bf16=false",
            f"optimizer.max_steps={steps}"]


def tiny_vocos(seed: int = 0) -> SoundStream:
    torch.manual_seed(seed)
    return SoundStream(SoundStreamConfig.preset("tiny", **VOCOS))


@pytest.mark.parametrize("n_fft, hop", [(1280, 320), (640, 320), (16, 4), (10, 4)])
def test_inverse_stft_inverts_an_stft_with_the_same_framing(n_fft: int, hop: int) -> None:
    # Frame t of the analysis is centred on samples [t * hop, (t + 1) * hop): pad (n_fft - hop) / 2.
    T = 9
    signal = torch.randn(2, T * hop, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pad = (n_fft - hop) // 2
    inverse = InverseSTFT(n_fft, hop).double()
    spectra = torch.stft(torch.nn.functional.pad(signal, (pad, pad)), n_fft, hop, window=inverse.window, center=False,
                         return_complex=True)  # [B, F, T]
    assert spectra.shape == (2, n_fft // 2 + 1, T)
    torch.testing.assert_close(inverse(spectra), signal, rtol=1e-9, atol=1e-9)


def test_inverse_stft_refuses_framings_it_cannot_centre() -> None:
    with pytest.raises(ValueError, match="n_fft"):
        InverseSTFT(320, 320)  # no overlap: the Hann window's zeros would divide by 0
    with pytest.raises(ValueError, match="even"):
        InverseSTFT(321, 320)


@pytest.mark.parametrize("samples", [1, 319, 320, 321, 1000])
def test_lengths_and_level_prefixes_match_the_seanet_decoder(samples: int) -> None:
    model = tiny_vocos().eval()
    wav = 0.1 * torch.randn(2, 1, samples, generator=torch.Generator().manual_seed(1))
    T = math.ceil(samples / 320)
    codes = model.encode(wav)
    with torch.no_grad():
        for levels in range(1, model.config.num_quantizers + 1):
            audio = model.decode(codes[..., :levels])
            assert audio.shape == (2, 1, T * 320) and audio.dtype == torch.float32
            assert bool(torch.isfinite(audio).all())
        assert model(wav).reconstruction.shape == (2, 1, samples)


def test_gradients_reach_every_decoder_parameter_and_bf16_autocast_returns_float32() -> None:
    model = tiny_vocos().train()
    wav = 0.1 * torch.randn(2, 1, 1600, generator=torch.Generator().manual_seed(2))
    model(wav).reconstruction.square().mean().backward()
    for name, parameter in model.decoder.named_parameters():
        assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0), name
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        audio = model.eval()(wav).reconstruction
    assert audio.dtype == torch.float32 and bool(torch.isfinite(audio).all())


def test_config_names_its_decoder_and_old_configs_keep_seanet() -> None:
    config = SoundStreamConfig.preset("tiny", **VOCOS)
    assert SoundStreamConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    old = SoundStreamConfig.preset("tiny").to_dict()
    for name in DECODER_FIELDS:
        old.pop(name)  # a config.json written before the field existed
    assert SoundStreamConfig.from_dict(old).decoder == "seanet"
    with pytest.raises(ValueError, match="decoder must be one of"):
        SoundStreamConfig(decoder="wavenet")
    with pytest.raises(ValueError, match="vocos_n_fft"):
        SoundStreamConfig(decoder="vocos", vocos_n_fft=641)  # 321 more than the hop: not split evenly
    with pytest.raises(ValueError, match="vocos_n_fft"):
        SoundStreamConfig(decoder="vocos", vocos_n_fft=320)
    with pytest.raises(ValueError, match="vocos_depth"):
        SoundStreamConfig(decoder="vocos", vocos_depth=0)


def test_a_vocos_decoder_trains_behind_another_codecs_encoder_keeping_every_token(tmp_path: Path) -> None:
    common = tiny_run(make_corpus(tmp_path / "corpus", [1.0] * 6), steps=3)
    first = Trainer(Recipe.load(RECIPES / "soundstream-small.toml", common), tmp_path / "first", progress=False)
    first.fit()
    source = tmp_path / "first" / "model"
    vocos = [*common, "model.vocos_dim=32", "model.vocos_depth=2", f'options.encoder_from="{source}"']
    second = Trainer(Recipe.load(RECIPES / "demo" / "codec-vocos.toml", vocos), tmp_path / "second", progress=False)
    assert second.fit()["step"] == 3
    before, after = load_codec(f"soundstream:{source}"), load_codec(f"soundstream:{tmp_path / 'second' / 'model'}")
    assert after.model.config.decoder == "vocos" and before.model.config.decoder == "seanet"
    assert after.encoder_digest == before.encoder_digest  # a token cache made with the first stays valid
    wav = 0.1 * torch.randn(1, 1, 16000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(before.encode(wav), after.encode(wav))
    assert after.decode(after.encode(wav)).shape == (1, 1, 16000)

    with pytest.raises(ValueError, match="decoder_only = true"):
        Trainer(Recipe.load(RECIPES / "demo" / "codec-vocos.toml", [*vocos, "options.decoder_only=false"]),
                tmp_path / "third", progress=False)
    with pytest.raises(ValueError, match=r"differs from this recipe's in \['latent_dim'\]"):
        Trainer(Recipe.load(RECIPES / "demo" / "codec-vocos.toml", [*vocos, "model.latent_dim=8"]),
                tmp_path / "fourth", progress=False)


def test_init_from_a_folder_saved_before_a_config_field_existed(tmp_path: Path) -> None:
    # The bundled codec's config.json predates `decoder`: fine-tuning it must still work.
    common = tiny_run(make_corpus(tmp_path / "corpus", [1.0] * 4), steps=2)
    Trainer(Recipe.load(RECIPES / "soundstream-small.toml", common), tmp_path / "first", progress=False).fit()
    config_file = tmp_path / "first" / "model" / "config.json"
    document = json.loads(config_file.read_text())
    for name in DECODER_FIELDS:
        del document["config"][name]
    config_file.write_text(json.dumps(document))
    again = Trainer(Recipe.load(RECIPES / "soundstream-small.toml", common), tmp_path / "again", progress=False,
                    init_from=tmp_path / "first" / "model")
    again.initialize_from(tmp_path / "first" / "model")
    assert again.fit()["step"] == 2


def test_chunked_decoding_equals_one_shot_where_the_receptive_field_fits_the_overlap() -> None:
    # Two ConvNeXt blocks and the embedding (kernel 7 each: +-9 frames) and the inverse STFT's
    # 4-hop windows (+-2 frames) see 0.22 s either side; 1 s of overlap leaves 0.5 s of warm-up
    # past each crossfade, so chunks and crossfades reproduce the one-shot audio.
    from soundstorm.codecs.soundstream import SoundStreamCodec

    codec = SoundStreamCodec(tiny_vocos(), name="tiny-vocos")
    codes = codec.encode(0.1 * torch.randn(1, 1, 16000 * 5, generator=torch.Generator().manual_seed(4)))
    whole = codec.decode(codes)
    chunked = codec.decode_long(codes, chunk_seconds=1.0, overlap_seconds=1.0)
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5 * float(whole.abs().max()))
