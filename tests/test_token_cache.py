"""The token cache: exact round trip, resume, metadata checks, and multi-process builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from fakes import FakeCodec, FakeSemantic

from soundstorm import SoundStormConfig
from soundstorm.data import cache as cache_format
from soundstorm.data.cache import TokenCache
from soundstorm.data.manifest import ManifestEntry, write_manifest
from soundstorm.data.tokenize import build_token_cache

SAMPLE_RATE = 16000


def make_corpus(root: Path, durations: list[float], sample_rate: int = SAMPLE_RATE, texts: list[str] | None = None) -> Path:
    """Noise-modulated tones of the given durations, and their manifest (transcripts `texts`,
    else "sentence i"). Returns its path."""
    rng = np.random.default_rng(0)
    entries = []
    for i, seconds in enumerate(durations):
        n = int(seconds * sample_rate)
        t = np.arange(n) / sample_rate
        # A slowly moving envelope (what the fake codec's first level follows), a tone, a little noise.
        envelope = 0.05 + 0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * (0.7 + 0.1 * i) * t + i))
        wav = envelope * np.sin(2 * np.pi * (150 + 20 * i) * t) + 0.005 * rng.standard_normal(n)
        path = root / "audio" / f"utt{i:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, wav.astype(np.float32), sample_rate, subtype="PCM_16")
        entries.append(
            ManifestEntry(
                id=f"utt{i:03d}", path=f"audio/utt{i:03d}.wav", duration=seconds, sample_rate=sample_rate,
                speaker=f"spk{i % 3}", text=texts[i] if texts else f"sentence {i}", split="valid" if i % 4 == 0 else "train",
            )
        )
    write_manifest(entries, root / "manifest.jsonl")
    return root / "manifest.jsonl"


def expected_tokens(path: Path, codec: FakeCodec, semantic: FakeSemantic) -> tuple[np.ndarray, np.ndarray]:
    wav, _ = soundfile.read(path, dtype="float32")
    wav = torch.from_numpy(wav)[None, None]
    codes = codec.encode(wav)[0].numpy()
    tokens = cache_format.fit_semantic(semantic.tokenize(wav)[0][0].numpy(), len(codes), codec.describe(), semantic.describe())
    return codes, tokens


def test_round_trip_is_exact(tmp_path: Path) -> None:
    manifest = make_corpus(tmp_path / "corpus", [0.5, 1.23, 0.31, 2.0, 0.77])
    codec, semantic = FakeCodec(), FakeSemantic()
    build_token_cache(manifest, tmp_path / "cache", codec, semantic, shard_size=2)
    cache = TokenCache(tmp_path / "cache")
    assert len(cache) == 5 and len(cache.meta["shards"]) == 3
    assert cache.ratio == 2
    for i, item in enumerate(cache.items):
        codes, tokens = expected_tokens(tmp_path / "corpus" / "audio" / f"{item.id}.wav", codec, semantic)
        assert cache.codes(i).dtype == np.uint16
        np.testing.assert_array_equal(cache.codes(i), codes)
        np.testing.assert_array_equal(cache.semantic(i), tokens)
        assert len(cache.semantic(i)) == -(-len(codes) // 2)
    assert [item.speaker for item in cache.items] == ["spk0", "spk1", "spk2", "spk0", "spk1"]
    assert cache.indices("valid") == [0, 4]
    assert not (tmp_path / "cache" / cache_format.BUILD_NAME).exists()


def test_interrupted_build_resumes_without_redoing_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = make_corpus(tmp_path / "corpus", [0.4] * 6)
    codec = FakeCodec()
    calls = []
    real_write = cache_format.write_shard

    def crash_on_third(root, index, *args, **kwargs):  # type: ignore[no-untyped-def]
        if index == 2:
            raise KeyboardInterrupt
        calls.append(index)
        return real_write(root, index, *args, **kwargs)

    monkeypatch.setattr(cache_format, "write_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        build_token_cache(manifest, tmp_path / "cache", codec, shard_size=2)
    with pytest.raises(FileNotFoundError, match="interrupted"):
        TokenCache(tmp_path / "cache")
    shards = tmp_path / "cache" / cache_format.SHARDS_DIR
    assert sorted(p.name for p in shards.iterdir()) == ["00000", "00001"]  # no staging debris
    mtimes = {p.name: (p / "codes.npy").stat().st_mtime_ns for p in shards.iterdir()}

    monkeypatch.setattr(cache_format, "write_shard", real_write)
    build_token_cache(manifest, tmp_path / "cache", codec, shard_size=2)
    assert {p: (shards / p / "codes.npy").stat().st_mtime_ns for p in mtimes} == mtimes
    cache = TokenCache(tmp_path / "cache")
    assert len(cache) == 6 and cache.semantic(0) is None


def test_a_split_or_a_seeded_sample_of_it_is_tokenized_alone(tmp_path: Path) -> None:
    manifest = make_corpus(tmp_path / "corpus", [0.3 + 0.1 * i for i in range(9)])  # utt000, 004, 008 are valid
    build_token_cache(manifest, tmp_path / "train", FakeCodec(), split="train")
    assert [item.id for item in TokenCache(tmp_path / "train").items] == [f"utt{i:03d}" for i in (1, 2, 3, 5, 6, 7)]
    build_token_cache(manifest, tmp_path / "sample", FakeCodec(), split="train", sample=3)
    sample = [item.id for item in TokenCache(tmp_path / "sample").items]
    assert len(sample) == 3 and sample == sorted(sample) and all(item.split == "train" for item in TokenCache(tmp_path / "sample").items)
    build_token_cache(manifest, tmp_path / "again", FakeCodec(), split="train", sample=3)
    assert [item.id for item in TokenCache(tmp_path / "again").items] == sample  # seeded
    with pytest.raises(ValueError, match="sample = 3.*this run has sample = 4"):
        build_token_cache(manifest, tmp_path / "sample", FakeCodec(), split="train", sample=4)
    with pytest.raises(ValueError, match="no utterances of split 'test'"):
        build_token_cache(manifest, tmp_path / "none", FakeCodec(), split="test")


def test_settings_that_differ_are_refused(tmp_path: Path) -> None:
    manifest = make_corpus(tmp_path / "corpus", [0.4, 0.6])
    build_token_cache(manifest, tmp_path / "cache", FakeCodec())
    with pytest.raises(ValueError, match="codec.num_quantizers = 4.*this run has codec.num_quantizers = 8"):
        build_token_cache(manifest, tmp_path / "cache", FakeCodec(num_quantizers=8))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        build_token_cache(manifest, tmp_path / "other", FakeCodec())
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_incompatible_models_and_codecs_are_refused(tmp_path: Path) -> None:
    manifest = make_corpus(tmp_path / "corpus", [0.4, 0.6])
    build_token_cache(manifest, tmp_path / "cache", FakeCodec(), FakeSemantic())
    cache = TokenCache(tmp_path / "cache")
    good = SoundStormConfig(codebook_size=1024, num_quantizers=4, semantic_vocab_size=100, semantic_rate_ratio=2)
    cache.check_compatible(good, FakeCodec())
    cache.check_compatible(SoundStormConfig(codebook_size=1024, num_quantizers=2, semantic_vocab_size=100))
    bad = [
        (dict(codebook_size=512), "codebook_size 512.*codebook_size 1024"),
        (dict(num_quantizers=8), "8 levels.*only 4"),
        (dict(semantic_vocab_size=50), "semantic_vocab_size 50.*vocab_size 100"),
        (dict(semantic_rate_ratio=4), "semantic_rate_ratio 4.*has 2"),
    ]
    for changes, message in bad:
        with pytest.raises(ValueError, match=message):
            cache.check_compatible(SoundStormConfig(**{**good.to_dict(), **changes}))
    with pytest.raises(ValueError, match="frame_rate 50.0.*frame_rate 75.0"):
        cache.check_compatible(codec=FakeCodec(frame_rate=75.0))


def test_corrupt_or_future_caches_are_refused(tmp_path: Path) -> None:
    manifest = make_corpus(tmp_path / "corpus", [0.4, 0.6])
    build_token_cache(manifest, tmp_path / "cache", FakeCodec())
    meta_file = tmp_path / "cache" / cache_format.META_NAME
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps(dict(meta, format_version=2)))
    with pytest.raises(ValueError, match="format_version 2"):
        TokenCache(tmp_path / "cache")
    meta_file.write_text(json.dumps(meta))
    codes_file = tmp_path / "cache" / "shards" / "00000" / "codes.npy"
    codes_file.write_bytes(codes_file.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot be read|does not match"):
        TokenCache(tmp_path / "cache")


def test_non_integer_rate_ratio_resamples_tokens_to_the_frame_rate(tmp_path: Path) -> None:
    manifest = make_corpus(tmp_path / "corpus", [0.4, 1.1], sample_rate=24000)
    codec, semantic = FakeCodec(sample_rate=24000, frame_rate=75.0), FakeSemantic(sample_rate=24000, rate=50.0)
    cache = TokenCache(build_token_cache(manifest, tmp_path / "cache", codec, semantic))
    assert cache.ratio == 1  # 75 / 50 is not whole: one conditioning token per codec frame
    for i in range(len(cache)):
        wav, _ = soundfile.read(manifest.parent / f"audio/utt{i:03d}.wav", dtype="float32")
        wav = torch.from_numpy(wav)[None, None]
        tokens = semantic.tokenize(wav)[0][0].numpy()
        stored = cache.semantic(i)
        assert len(stored) == len(cache.codes(i))
        # Frame t (centre (t + 0.5) / 75 s) takes the 50 Hz token under its centre.
        expected = tokens[np.minimum((2 * np.arange(len(stored)) + 1) * 50 // 150, len(tokens) - 1)]  # exact
        np.testing.assert_array_equal(stored, expected)


def test_torchrun_build_with_two_processes_equals_one(tmp_path: Path) -> None:
    manifest = make_corpus(tmp_path / "corpus", [0.3, 0.5, 0.7, 0.2, 0.4])
    build_token_cache(manifest, tmp_path / "single", FakeCodec(), FakeSemantic(), shard_size=1)
    tests = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=f"{tests}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "soundstorm.cli", "corpus", "tokenize", str(manifest), str(tmp_path / "multi"),
         "--codec", "python:fakes:make_fake_codec", "--semantic", "python:fakes:make_fake_semantic",
         "--shard-size", "1", "--quiet"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single, multi = TokenCache(tmp_path / "single"), TokenCache(tmp_path / "multi")
    assert single.items == multi.items
    for i in range(len(single)):
        np.testing.assert_array_equal(single.codes(i), multi.codes(i))
        np.testing.assert_array_equal(single.semantic(i), multi.semantic(i))
