"""Semantic tokens: features, phone targets, the content encoder, k-means tokenizers (content,
MFCC, HuBERT through transformers), rate matching, the probes, and a real training run of the
content encoder on a tiny synthesized corpus followed by `semantic kmeans` and `semantic eval`."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from soundstorm.cli import main
from soundstorm.data.manifest import Phone
from soundstorm.eval.probe import phone_mutual_information, phone_purity, speaker_probe, token_histograms
from soundstorm.model.config import SoundStormConfig
from soundstorm.semantic import load_semantic_tokenizer
from soundstorm.semantic.content import ContentEncoder, ContentEncoderConfig, phone_loss
from soundstorm.semantic.extractors import ContentFeatures, MfccFeatures
from soundstorm.semantic.features import MFCC, LogMel
from soundstorm.semantic.kmeans_tokenizer import KMeansTokenizer, collect_features, fit_kmeans, load_kmeans_tokenizer
from soundstorm.semantic.phones import IGNORE, build_inventory, frame_targets, normalize_phone
from soundstorm.semantic.rate import check_semantic_matches, conditioning_ratio, match_rate

PHONES = ("sil", "aa", "b", "k")


def tiny_encoder(seed: int = 0) -> ContentEncoder:
    torch.manual_seed(seed)
    config = ContentEncoderConfig(phones=PHONES, dim=32, depth=2, heads=2, ff_mult=2.0, conv_kernel_size=5,
                                  feature_dim=8, dropout=0.0)
    return ContentEncoder(config).eval()


def noise(batch: int = 2, samples: int = 16000, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, 1, samples, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ features, phones

@pytest.mark.parametrize("samples", [1, 159, 160, 161, 16000, 16001])
def test_feature_frames_follow_the_hop(samples: int) -> None:
    wav = noise(1, samples)
    assert LogMel(16000, 160)(wav).shape == (1, math.ceil(samples / 160), 80)
    assert MFCC(16000, 640)(wav).shape == (1, math.ceil(samples / 640), 39)


def test_phone_names_are_normalised() -> None:
    assert [normalize_phone(p) for p in ("AH0", "pau", "SIL", "h#", "ey1", "ng")] == ["ah", "sil", "sil", "sil", "ey", "ng"]
    phones = [(Phone("pau", 0, 1), Phone("AA1", 1, 2)), None, (Phone("b", 0, 1), Phone("aa", 1, 2))]
    assert build_inventory(phones) == ("sil", "aa", "b")
    assert build_inventory(phones, min_count=2) == ("sil", "aa")


def test_frame_targets_take_the_phone_under_each_frame_centre() -> None:
    phones = (Phone("pau", 0.0, 0.1), Phone("b", 0.1, 0.15), Phone("zz", 0.15, 0.2), Phone("aa", 0.25, 0.3))
    # Frames of 40 ms: centres 0.02, 0.06, 0.10, 0.14, 0.18, 0.22, 0.26, 0.30 s.
    targets = frame_targets(phones, PHONES, 8, 0.04)
    assert targets.tolist() == [0, 0, 2, 2, IGNORE, IGNORE, 1, IGNORE]  # zz unknown, 0.2-0.25 s a gap
    shifted = frame_targets(phones, PHONES, 2, 0.04, offset_seconds=0.08)  # a crop starting at 0.08 s
    assert shifted.tolist() == [2, 2]
    assert frame_targets(None, PHONES, 3, 0.04).tolist() == [IGNORE] * 3


# ------------------------------------------------------------------------------ content encoder

def test_content_encoder_shapes_rate_and_gradients() -> None:
    encoder = tiny_encoder().train()
    assert encoder.config.rate == 25.0 and encoder.config.hop_length == 640
    wav, lengths = noise(2, 16000), torch.tensor([16000, 7000])
    out = encoder(wav, lengths)
    assert out.features.shape == (2, 25, 8) and out.logits.shape == (2, 25, len(PHONES))
    assert out.valid.sum(dim=1).tolist() == [25, math.ceil(7000 / 640)]
    targets = torch.randint(len(PHONES), (2, 25))
    loss, correct, counted = phone_loss(out, targets)
    loss.backward()
    assert int(counted) == 25 + 11 and 0 <= int(correct) <= int(counted)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_content_encoder_padding_changes_nothing() -> None:
    encoder = tiny_encoder()
    wav = noise(2, 16000)
    batched = encoder(wav, torch.tensor([16000, 7000]))
    alone = encoder(wav[1:, :, :7000])
    torch.testing.assert_close(batched.features[1, :11], alone.features[0], atol=1e-5, rtol=1e-4)
    garbage = wav.clone()
    garbage[1, :, 7000:] = 5.0  # whatever sits in the padding
    again = encoder(garbage, torch.tensor([16000, 7000]))
    torch.testing.assert_close(again.features[1, :11], batched.features[1, :11])


def test_content_encoder_round_trip(tmp_path: Path) -> None:
    encoder = tiny_encoder()
    encoder.save_pretrained(tmp_path / "encoder")
    loaded = ContentEncoder.from_pretrained(tmp_path / "encoder").eval()
    assert loaded.config == encoder.config
    wav = noise(1, 8000)
    torch.testing.assert_close(loaded(wav).features, encoder(wav).features, rtol=0, atol=0)


# ------------------------------------------------------------------------------ k-means tokenizers

def test_kmeans_finds_separated_clusters() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.1 * torch.randn(200, 2, generator=generator) for c in centres])
    found = fit_kmeans(points, 3, iters=20)
    distances = torch.cdist(found, centres)
    assert sorted(distances.argmin(dim=1).tolist()) == [0, 1, 2] and distances.min(dim=1).values.max() < 0.1


@pytest.mark.parametrize("kind", ["content", "content-posteriors", "mfcc"])
def test_tokenizer_round_trip_and_lengths(kind: str, tmp_path: Path) -> None:
    extractor = {"content": lambda: ContentFeatures(tiny_encoder()), "mfcc": MfccFeatures,
                 "content-posteriors": lambda: ContentFeatures(tiny_encoder(), output="posteriors")}[kind]()
    wav, lengths = noise(3, 16000), torch.tensor([16000, 9000, 700])
    tokenizer = KMeansTokenizer(extractor, fit_kmeans(collect_features(extractor, [(wav, lengths)], 1000), 16))
    tokens, token_lengths = tokenizer.tokenize(wav, lengths)
    assert tokens.shape == (3, 25) and token_lengths.tolist() == [25, 15, 2]
    assert tokens.dtype == torch.long and 0 <= int(tokens.min()) and int(tokens.max()) < 16
    assert token_lengths.tolist() == tokenizer.token_lengths(lengths).tolist()  # the interface's own count
    tokenizer.save(tmp_path / kind)
    loaded = load_semantic_tokenizer(f"{extractor.kind}:{tmp_path / kind}")
    assert loaded.name == tokenizer.name and loaded.vocab_size == 16 and loaded.rate == 25.0
    assert torch.equal(loaded.tokenize(wav, lengths)[0], tokens)
    other = KMeansTokenizer(extractor, tokenizer.centroids + 1.0)
    assert other.name != tokenizer.name  # a cache made with one refuses the other


def test_tokenizer_folder_errors(tmp_path: Path) -> None:
    tokenizer = KMeansTokenizer(MfccFeatures(), torch.randn(8, 39))
    tokenizer.save(tmp_path / "mfcc")
    with pytest.raises(ValueError, match="holds a 'mfcc' tokenizer, expected 'content'"):
        load_semantic_tokenizer(f"content:{tmp_path / 'mfcc'}")
    with pytest.raises(FileNotFoundError, match="no semantic tokenizer"):
        load_kmeans_tokenizer(tmp_path / "missing")
    (tmp_path / "mfcc" / "kmeans.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="cannot be read"):
        load_kmeans_tokenizer(tmp_path / "mfcc")
    with pytest.raises(ValueError, match=r"centroids must be \[V, 39\]"):
        KMeansTokenizer(MfccFeatures(), torch.randn(8, 5))


def test_tokenizer_rejects_bad_audio() -> None:
    tokenizer = KMeansTokenizer(MfccFeatures(), torch.randn(8, 39))
    with pytest.raises(ValueError, match="mono"):
        tokenizer.tokenize(noise(1, 1000).expand(1, 2, 1000).contiguous())
    with pytest.raises(ValueError, match="at least one sample"):
        tokenizer.tokenize(torch.zeros(1, 1, 0))
    with pytest.raises(ValueError, match="NaN"):
        tokenizer.tokenize(torch.full((1, 1, 100), float("nan")))
    with pytest.raises(ValueError, match="float audio"):
        tokenizer.tokenize(torch.zeros(1, 100, dtype=torch.long))
    with pytest.raises(ValueError, match="lengths must be in"):
        tokenizer.tokenize(noise(1, 100), torch.tensor([101]))


def test_hubert_kmeans_with_a_tiny_random_model(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from soundstorm.semantic.hubert import HubertFeatures, parse_hubert_spec

    config = transformers.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                       conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    transformers.HubertModel(config).eval().save_pretrained(tmp_path / "hubert")
    extractor = parse_hubert_spec(f"{tmp_path / 'hubert'}?layer=1")
    assert extractor.rate == 50.0 and extractor.feature_dim == 32 and extractor.layer == 1
    wav, lengths = noise(2, 8000), torch.tensor([8000, 3300])
    features, valid = extractor.features(wav, lengths)
    assert features.shape == (2, 25, 32) and valid.sum(dim=1).tolist() == [25, 11]
    alone, _ = extractor.features(wav[1:, :, :3300], torch.tensor([3300]))
    torch.testing.assert_close(features[1, :11], alone[0])  # one utterance at a time: padding never leaks
    tokenizer = KMeansTokenizer(extractor, fit_kmeans(collect_features(extractor, [(wav, lengths)], 1000), 4))
    tokenizer.save(tmp_path / "hubert-km4")
    shutil.rmtree(tmp_path / "hubert")  # the tokenizer folder keeps its own copy of the model
    loaded = load_semantic_tokenizer(f"hubert:{tmp_path / 'hubert-km4'}")
    assert torch.equal(loaded.tokenize(wav, lengths)[0], tokenizer.tokenize(wav, lengths)[0])
    with pytest.raises(ValueError, match="layer must be in"):
        HubertFeatures.from_pretrained(str(tmp_path / "hubert-km4" / "encoder"), layer=7)
    with pytest.raises(ValueError, match="cannot load"):
        HubertFeatures.from_pretrained(str(tmp_path / "nothing-here"))


# ------------------------------------------------------------------------------ rate matching

def test_conditioning_ratio_and_nearest_index_resampling() -> None:
    assert conditioning_ratio(50, 25) == 2 and conditioning_ratio(75, 25) == 3 and conditioning_ratio(50, 50) == 1
    assert conditioning_ratio(75, 50) == 1 and conditioning_ratio(12.5, 50) == 1  # resampled instead
    tokens = np.arange(10)
    assert match_rate(tokens, 25, 50, 20).tolist() == list(range(10))  # whole ratio: kept
    assert match_rate(tokens, 25, 50, 23).tolist() == list(range(10)) + [9, 9]  # extended by the last token
    # 50 Hz tokens at a 12.5 Hz codec: frame t's centre (t + 0.5) * 80 ms lies in token 4 t + 2.
    assert match_rate(np.arange(40), 50, 12.5, 10).tolist() == [4 * t + 2 for t in range(10)]
    # 50 Hz tokens at 75 Hz: frame centres 6.7, 20, 33.3, 46.7 ms -> tokens 0, 1, 1, 2.
    assert match_rate(np.arange(3), 50, 75, 4).tolist() == [0, 1, 1, 2]


def test_check_semantic_matches_names_the_mismatch() -> None:
    config = SoundStormConfig(semantic_vocab_size=512, semantic_rate_ratio=2)
    check_semantic_matches(512, 25.0, 50.0, config)
    with pytest.raises(ValueError, match="512 tokens, the model was trained on 500"):
        check_semantic_matches(512, 25.0, 50.0, SoundStormConfig(semantic_vocab_size=500))
    with pytest.raises(ValueError, match="semantic_rate_ratio 2"):
        check_semantic_matches(512, 50.0, 50.0, config)
    with pytest.raises(ValueError, match="unconditional"):
        check_semantic_matches(512, 25.0, 50.0, SoundStormConfig(semantic_vocab_size=0))


# ------------------------------------------------------------------------------ probes

def test_speaker_probe_on_known_cases() -> None:
    generator = torch.Generator().manual_seed(0)
    speakers = [f"s{i % 4}" for i in range(80)]
    # Each speaker uses its own tokens: perfectly identifiable.
    revealing = [torch.randint(0, 5, (50,), generator=generator) + 5 * (i % 4) for i in range(80)]
    result = speaker_probe(token_histograms(revealing, 20), speakers)
    assert result.accuracy == 1.0 and result.chance == 0.25 and result.num_classes == 4
    # Every speaker draws from the same distribution: no better than chance.
    blind = [torch.randint(0, 20, (50,), generator=generator) for _ in range(80)]
    assert speaker_probe(token_histograms(blind, 20), speakers).accuracy < 0.45
    # Classes are balanced: chance stays 1 / speakers when one speaker has most utterances.
    skewed = ["s0"] * 60 + [f"s{1 + i % 3}" for i in range(30)]
    histograms = token_histograms([torch.randint(0, 20, (50,), generator=generator) for _ in range(90)], 20)
    result = speaker_probe(histograms, skewed)
    assert result.chance == 0.25 and result.num_utterances == 40 and result.accuracy < 0.5


def test_phone_information_and_purity() -> None:
    phones = torch.randint(0, 5, (5000,), generator=torch.Generator().manual_seed(0))
    assert phone_mutual_information(phones, phones, 5, 5) == pytest.approx(1.0)
    assert phone_mutual_information((phones + 2) % 5 * 2, phones, 10, 5) == pytest.approx(1.0)  # any relabelling
    random = torch.randint(0, 8, (5000,), generator=torch.Generator().manual_seed(1))
    assert phone_mutual_information(random, phones, 8, 5) < 0.01
    assert phone_purity(phones, phones, 5, 5) == 1.0 and phone_purity(random, phones, 8, 5) < 0.35


# ------------------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("flite") is None or not Path("/usr/share/games/fortunes").is_dir():
        pytest.skip("flite or fortunes missing: make system-deps")
    from soundstorm.data.synth import synthesize_corpus

    return synthesize_corpus(tmp_path_factory.mktemp("corpus") / "synth", hours=0.04,
                             voices=("flite-slt", "flite-awb", "flite-kal16"), held_out=("flite-kal16",),
                             sources=("fortunes",), seed=3, workers=1, valid_fraction=0.15, test_fraction=0.45,
                             progress=False)


def test_train_fit_and_evaluate_the_content_tokenizer(corpus: Path, tmp_path: Path) -> None:
    from soundstorm.train.recipe import Recipe
    from soundstorm.train.trainer import Trainer

    run = tmp_path / "run"
    recipe = Recipe.load("recipes/semantic-small.toml", [
        f'data.cache="{corpus}"', "model.dim=32", "model.depth=1", "model.heads=2", "model.feature_dim=16",
        "data.batch_size=4", "data.max_frames=50", "data.num_workers=0", "optimizer.warmup_steps=5",
        "optimizer.max_steps=60", "optimizer.lr=3e-3", "optimizer.bf16=false", "schedule.valid_every=30",
        "schedule.checkpoint_every=30", "schedule.log_every=10",
    ])
    trainer = Trainer(recipe, run, progress=False)
    first = trainer.validate()
    assert trainer.fit()["step"] == 60
    last = trainer.validate()
    assert last["loss"] < 0.85 * first["loss"] and last["phone_accuracy"] > first["phone_accuracy"] + 0.1, (first, last)
    encoder = ContentEncoder.from_pretrained(run / "model")
    assert encoder.config.phones[0] == "sil" and len(encoder.config.phones) > 20  # flite's phone set

    tokenizer_dir = tmp_path / "tokenizer"
    assert main(["semantic", "kmeans", "--features", f"content:{run / 'model'}", "--manifest", str(corpus),
                 "--clusters", "16", "--out", str(tokenizer_dir), "--quiet"]) == 0
    assert main(["semantic", "kmeans", "--features", "mfcc:25", "--manifest", str(corpus),
                 "--clusters", "16", "--out", str(tmp_path / "mfcc"), "--quiet"]) == 0
    tokenizer = load_semantic_tokenizer(f"content:{tokenizer_dir}")
    assert tokenizer.vocab_size == 16 and tokenizer.rate == 25.0

    out_json = tmp_path / "semantic.json"
    assert main(["semantic", "eval", "--manifest", str(corpus), "--tokenizer", f"content:{tokenizer_dir}",
                 "--tokenizer", f"mfcc:{tmp_path / 'mfcc'}", "--encoder", str(run / "model"),
                 "--json", str(out_json), "--markdown", str(tmp_path / "semantic.md")]) == 0
    result = json.loads(out_json.read_text())
    assert [row["tokens"] for row in result["rows"]] == [f"content:{tokenizer_dir}", f"mfcc:{tmp_path / 'mfcc'}"]
    for row in result["rows"]:
        assert 0.0 <= row["speaker_probe_accuracy"] <= 1.0 and 0.0 <= row["pnmi"] <= 1.0
    assert 0.0 <= result["encoder_phone_accuracy"] <= 1.0
    assert "speaker probe accuracy" in (tmp_path / "semantic.md").read_text()
