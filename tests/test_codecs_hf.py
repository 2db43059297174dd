"""EnCodec, DAC and Mimi through transformers: the real loading code, on tiny random models saved
to a temporary folder (nothing is downloaded: HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")

from soundstorm import SoundStormConfig  # noqa: E402
from soundstorm.codecs import check_codec_matches, load_codec  # noqa: E402
from soundstorm.codecs.hf import TransformersCodec, parse_spec_argument  # noqa: E402

# Tiny configs (a few channels, one layer each) with the released models' layout: 16 kHz at
# 50 frames/s for EnCodec and DAC, Mimi at its 24 kHz / 12.5 frames/s.
TINY: dict[str, dict[str, Any]] = {
    "encodec": dict(
        sampling_rate=16000, upsampling_ratios=[8, 5, 4, 2], num_filters=4, hidden_size=16,
        num_lstm_layers=1, codebook_size=1024, target_bandwidths=[1.0, 2.0, 4.0],  # 2, 4, 8 levels
    ),
    "dac": dict(
        sampling_rate=16000, encoder_hidden_size=4, downsampling_ratios=[2, 4, 5, 8],
        decoder_hidden_size=16, n_codebooks=6,
        codebook_size=64, codebook_dim=4,
    ),
    "mimi": dict(
        sampling_rate=24000, frame_rate=12.5, hidden_size=16, num_filters=4, codebook_size=64,
        codebook_dim=8, vector_quantization_hidden_dimension=8, num_quantizers=4, upsample_groups=16,
        num_hidden_layers=1, intermediate_size=32, num_attention_heads=2, num_key_value_heads=2,
        head_dim=8, sliding_window=16, max_position_embeddings=512,
    ),
}
EXPECTED = {  # sample rate, frame rate, levels, codebook size
    "encodec": (16000, 50.0, 8, 1024),
    "dac": (16000, 50.0, 6, 64),
    "mimi": (24000, 12.5, 4, 64),
}
MODELS = {"encodec": "Encodec", "dac": "Dac", "mimi": "Mimi"}


def save_tiny_model(kind: str, folder: Path, seed: int = 0, **overrides: Any) -> Path:
    """A randomly initialised tiny `kind` model and its feature extractor, saved to `folder`."""
    torch.manual_seed(seed)
    prefix = MODELS[kind]
    config = getattr(transformers, f"{prefix}Config")(**{**TINY[kind], **overrides})
    model = getattr(transformers, f"{prefix}Model")(config).eval()
    if kind == "encodec":
        _unbias(model)
    _fit_codebooks(model, kind, seed)
    if kind == "encodec":
        _scale_output(model, seed)
    model.save_pretrained(folder)
    extractor = getattr(transformers, f"{prefix}FeatureExtractor" if kind != "mimi" else "EncodecFeatureExtractor")
    extractor(sampling_rate=config.sampling_rate).save_pretrained(folder)
    return folder


def _unbias(model: torch.nn.Module) -> None:
    """Zero the convolution biases. At random initialisation they dominate the tiny latents, and
    the decoder would play the same sound whatever the codes: useless for testing chunking."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)) and module.bias is not None:
                module.bias.zero_()


def _scale_output(model: torch.nn.Module, seed: int) -> None:
    """Scale the decoder's last convolution so that the probe decodes at an RMS of 0.1 (an
    unbiased random decoder is very quiet), keeping the output a function of the codes."""
    probe = speechlike(1.0, model.config.sampling_rate, seed=seed)
    with torch.no_grad():
        codes = model.encode(probe, bandwidth=max(model.config.target_bandwidths)).audio_codes
        rms = model.decode(codes, [None]).audio_values.pow(2).mean().sqrt()
        last = model.decoder.layers[-1].conv
        weight = last.parametrizations.weight.original0 if hasattr(last, "parametrizations") else last.weight
        weight.mul_(0.1 / rms)


def _fit_codebooks(model: torch.nn.Module, kind: str, seed: int) -> None:
    """Draw each level's codebook from the vectors that level quantizes (its residuals on a probe
    signal, plus a little noise), as the k-means initialisation of a real RVQ does.

    EnCodec and Mimi start their codebooks at zero, which would give every frame the same codes and
    make the tests vacuous. DAC's are random already and compared by cosine, so they stay."""
    if kind == "dac":
        return
    generator = torch.Generator().manual_seed(seed)
    probe = speechlike(1.0, model.config.sampling_rate, seed=seed)
    books = [m for m in model.modules() if type(m).__name__ in ("EncodecEuclideanCodebook", "MimiEuclideanCodebook")]
    for book in books:  # in level order: each level's input depends on the levels before it
        seen: list[torch.Tensor] = []
        quantize = book.quantize
        book.quantize = lambda x, quantize=quantize: (seen.append(x.detach().clone()), quantize(x))[1]
        with torch.no_grad():
            if kind == "encodec":
                model.encode(probe, bandwidth=max(model.config.target_bandwidths))
            else:
                model.encode(probe)
        del book.quantize
        vectors = seen[0]  # [frames, dim]
        picks = torch.randint(len(vectors), (book.codebook_size,), generator=generator)
        noise = torch.randn(book.codebook_size, vectors.shape[1], generator=generator)
        entries = vectors[picks] + 0.3 * vectors.std() * noise  # [K, dim]
        with torch.no_grad():
            if kind == "encodec":
                book.embed.copy_(entries)
            else:  # Mimi keeps sums and usage counts, and caches their ratio
                book.embed_sum.copy_(entries)
                book.cluster_usage.fill_(1.0)
                book._embed = None


def speechlike(seconds: float, sample_rate: int, seed: int = 0) -> torch.Tensor:
    """[1, 1, N]: harmonics with a wandering pitch under a syllable-rate envelope, plus a little
    noise: varied enough that every frame gets its own codes."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    pitch = 140 + 30 * torch.sin(2 * torch.pi * 0.7 * t)
    phase = 2 * torch.pi * torch.cumsum(pitch, 0) / sample_rate
    voice = sum(torch.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * torch.sin(2 * torch.pi * 4 * t) ** 2
    noise = 0.02 * torch.randn(t.shape, generator=generator, dtype=torch.float64)
    return (0.3 * envelope * voice + noise).float()[None, None]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-codecs")
    return {kind: save_tiny_model(kind, root / kind) for kind in TINY}


@pytest.mark.parametrize("kind", sorted(TINY))
def test_loads_from_a_folder_with_the_config_values(kind: str, folders: dict[str, Path]) -> None:
    codec = load_codec(f"{kind}:{folders[kind]}")
    assert isinstance(codec, TransformersCodec)
    sample_rate, frame_rate, levels, codebook = EXPECTED[kind]
    assert (codec.sample_rate, codec.frame_rate, codec.num_quantizers, codec.codebook_size) == (
        sample_rate, frame_rate, levels, codebook,
    )
    assert codec.describe() == {
        "name": f"{kind}:{folders[kind]}", "sample_rate": sample_rate, "frame_rate": frame_rate,
        "num_quantizers": levels, "codebook_size": codebook,
    }


@pytest.mark.parametrize("kind", sorted(TINY))
def test_round_trip_shapes_and_prefix_decoding(kind: str, folders: dict[str, Path]) -> None:
    codec = load_codec(f"{kind}:{folders[kind]}")
    N = int(0.33 * codec.sample_rate) + 7  # not a whole number of frames
    wav = speechlike(0.5, codec.sample_rate)[..., :N].repeat(2, 1, 1)  # [2, 1, N]
    codes = codec.encode(wav)
    T = codec.num_frames(N)
    assert codes.shape == (2, T, codec.num_quantizers) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < codec.codebook_size
    assert torch.equal(codes[0], codes[1])
    assert codes[..., 0].unique().numel() > 1, "codes should vary over time"
    out = codec.decode(codes)
    assert out.shape == (2, 1, T * codec.samples_per_frame) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # Any prefix of levels decodes; the first levels do not depend on how many were asked for.
    fewer = codec.with_num_quantizers(2)
    assert torch.equal(fewer.encode(wav), codes[..., :2])
    assert codec.decode(codes[..., :2]).shape == out.shape


@pytest.mark.parametrize(
    ("suffix", "levels"), [("?num_quantizers=3", 3), ("?bandwidth=2.0", 4), ("?bandwidth=2.9", 5)]
)
def test_level_choice_from_the_spec(suffix: str, levels: int, folders: dict[str, Path]) -> None:
    codec = load_codec(f"encodec:{folders['encodec']}{suffix}")
    assert codec.num_quantizers == levels
    assert codec.bitrate_kbps == pytest.approx(levels * 10 * 50 / 1000)
    assert codec.name == f"encodec:{folders['encodec']}?num_quantizers={levels}"
    assert load_codec(codec.name).num_quantizers == levels  # the name is a spec
    wav = speechlike(0.4, 16000)
    assert torch.equal(codec.encode(wav), load_codec(f"encodec:{folders['encodec']}").encode(wav)[..., :levels])


def test_bad_specs_and_folders_are_refused(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = folders["encodec"]
    with pytest.raises(ValueError, match=r"num_quantizers must be in \[1, 8\], got 9"):
        load_codec(f"encodec:{folder}?num_quantizers=9")
    with pytest.raises(ValueError, match="reaches at most 4 kbit/s"):
        load_codec(f"encodec:{folder}?bandwidth=6")
    with pytest.raises(ValueError, match="needs at least 0.5 kbit/s"):
        load_codec(f"encodec:{folder}?bandwidth=0.3")
    with pytest.raises(ValueError, match="not both"):
        load_codec(f"encodec:{folder}?bandwidth=2&num_quantizers=2")
    with pytest.raises(ValueError, match="unknown option 'levels'"):
        load_codec(f"encodec:{folder}?levels=2")
    with pytest.raises(ValueError, match="holds a 'encodec' model, not 'dac': use the spec encodec:"):
        load_codec(f"dac:{folder}")
    with pytest.raises(ValueError, match="no model folder"):
        load_codec(f"mimi:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="not in the Hugging Face cache"):
        load_codec("encodec:no-such-user/no-such-codec")


def test_parse_spec_argument() -> None:
    source, options = parse_spec_argument("facebook/encodec_24khz?bandwidth=6&device=cpu")
    assert source == "facebook/encodec_24khz" and options.bandwidth == 6.0 and options.device == "cpu"
    assert parse_spec_argument("models/dac")[1].num_quantizers is None


def test_inconsistent_and_stereo_checkpoints_are_refused(tmp_path: Path) -> None:
    folder = save_tiny_model("encodec", tmp_path / "bad-rate")
    transformers.EncodecFeatureExtractor(sampling_rate=24000).save_pretrained(folder)
    with pytest.raises(ValueError, match=r"feature extractor's sampling_rate \(24000 Hz\) differs"):
        load_codec(f"encodec:{folder}")
    folder = save_tiny_model("encodec", tmp_path / "chunked", normalize=True, chunk_length_s=1.0, overlap=0.01)
    with pytest.raises(ValueError, match="loudness scale per chunk"):
        load_codec(f"encodec:{folder}")


def test_a_codec_that_does_not_fit_the_model_is_refused(folders: dict[str, Path]) -> None:
    codec = load_codec(f"dac:{folders['dac']}")  # 6 levels of 64 codes
    check_codec_matches(codec.with_num_quantizers(4), SoundStormConfig(codebook_size=64, num_quantizers=4))
    with pytest.raises(ValueError, match=r"num_quantizers differs.*\?num_quantizers=4"):
        check_codec_matches(codec, SoundStormConfig(codebook_size=64, num_quantizers=4))
    with pytest.raises(ValueError, match="codebook_size differs.*1024.*64"):
        check_codec_matches(codec, SoundStormConfig(codebook_size=1024, num_quantizers=6))


@pytest.mark.parametrize("kind", sorted(TINY))
def test_soft_decoding_of_one_hot_distributions_is_decoding(kind: str, folders: dict[str, Path]) -> None:
    """decode_expected's per-level increments reproduce each backend's own dequantizer: one-hot
    distributions decode as their codes, after one coarse level or several; a 50/50 mix of two
    codes decodes as the mean of their latents."""
    codec = load_codec(f"{kind}:{folders[kind]}")
    assert isinstance(codec, TransformersCodec) and codec.decodes_expected
    torch.manual_seed(0)
    K, Q = codec.codebook_size, codec.num_quantizers
    codes = torch.randint(K, (2, 6, Q))
    for coarse in (1, Q - 1):
        probs = torch.nn.functional.one_hot(codes[..., coarse:], K).float()
        torch.testing.assert_close(codec.decode_expected(codes[..., :coarse], probs), codec.decode(codes),
                                   rtol=1e-4, atol=1e-5)
    probs = torch.zeros(2, 6, 1, K)
    probs[..., 3], probs[..., 5] = 0.5, 0.5
    latents = [codec.backend.dequantize(codec.model, torch.cat([codes[..., :1], torch.full_like(codes[..., :1], k)],
                                                               dim=-1).transpose(1, 2)) for k in (3, 5)]
    mean = codec.backend.synthesize(codec.model, (latents[0] + latents[1]) / 2)
    soft = codec.decode_expected(codes[..., :1], probs)
    torch.testing.assert_close(soft[..., : mean.shape[-1]], mean.reshape(soft.shape[0], 1, -1)[..., : soft.shape[-1]],
                               rtol=1e-4, atol=1e-5)
