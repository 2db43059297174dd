"""Merging token caches: the same tokens as tokenizing the merged manifest, and refusals that change nothing."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeCodec, FakeSemantic
from test_token_cache import make_corpus

from soundstorm.cli import main
from soundstorm.data.cache import TokenCache
from soundstorm.data.cache_merge import merge_token_caches
from soundstorm.data.manifest import read_manifest, write_manifest
from soundstorm.data.merge import merge_manifests
from soundstorm.data.tokenize import build_token_cache


def renamed_corpus(root: Path, durations: list[float], prefix: str) -> Path:
    """make_corpus with ids and speakers of its own, so that two corpora can be merged."""
    manifest = make_corpus(root, durations)
    entries = [replace(e, id=f"{prefix}-{e.id}", speaker=f"{prefix}-{e.speaker}") for e in read_manifest(manifest)]
    write_manifest(entries, manifest)
    return manifest


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def two_caches(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    a = renamed_corpus(tmp_path / "a", [0.5, 1.2, 0.3, 0.9, 0.7], "a")
    b = renamed_corpus(tmp_path / "b", [0.8, 0.4, 1.1], "b")
    codec, semantic = FakeCodec(), FakeSemantic()
    build_token_cache(a, tmp_path / "cache-a", codec, semantic, shard_size=2)
    build_token_cache(b, tmp_path / "cache-b", codec, semantic, shard_size=2)
    return a, b, tmp_path / "cache-a", tmp_path / "cache-b"


def test_merged_caches_equal_the_merged_manifest_tokenized(tmp_path: Path, two_caches: tuple[Path, Path, Path, Path]) -> None:
    a, b, cache_a, cache_b = two_caches
    merged = merge_token_caches([cache_a, cache_b], tmp_path / "merged")
    merge_manifests([a, b], tmp_path / "mix" / "manifest.jsonl")
    build_token_cache(tmp_path / "mix" / "manifest.jsonl", tmp_path / "direct", FakeCodec(), FakeSemantic(), shard_size=2)
    direct = TokenCache(tmp_path / "direct")

    assert [item.id for item in merged.items] == [item.id for item in direct.items]
    assert merged.items == direct.items  # speakers, texts, splits and durations kept
    for i in range(len(direct)):
        np.testing.assert_array_equal(merged.codes(i), direct.codes(i))
        np.testing.assert_array_equal(merged.semantic(i), direct.semantic(i))
    assert merged.indices("valid") == direct.indices("valid")
    assert merged.meta["num_frames"] == direct.meta["num_frames"] == int(direct.num_frames.sum())
    assert [source["num_items"] for source in merged.meta["merged_from"]] == [5, 3]
    merged.check_compatible(codec=FakeCodec())


def test_a_cache_of_another_codec_or_tokenizer_is_refused_naming_the_field(
        tmp_path: Path, two_caches: tuple[Path, Path, Path, Path]) -> None:
    a, _, cache_a, _ = two_caches
    build_token_cache(a, tmp_path / "eight-levels", FakeCodec(num_quantizers=8), FakeSemantic(), shard_size=2)
    with pytest.raises(ValueError, match="codec num_quantizers.*4.*8"):
        merge_token_caches([cache_a, tmp_path / "eight-levels"], tmp_path / "out")
    build_token_cache(a, tmp_path / "vocab", FakeCodec(), FakeSemantic(vocab_size=50), shard_size=2)
    with pytest.raises(ValueError, match="semantic tokenizer vocab_size"):
        merge_token_caches([cache_a, tmp_path / "vocab"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no staging left


def test_clashing_ids_an_existing_output_and_a_missing_input_are_refused_and_nothing_changes(
        tmp_path: Path, two_caches: tuple[Path, Path, Path, Path]) -> None:
    _, _, cache_a, cache_b = two_caches
    before = {root: tree_digest(root) for root in (cache_a, cache_b)}
    with pytest.raises(ValueError, match="'a-utt000' is in both"):
        merge_token_caches([cache_a, cache_b, cache_a], tmp_path / "out")
    assert not (tmp_path / "out").exists()

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists"):
        merge_token_caches([cache_a, cache_b], tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="also an input"):
        merge_token_caches([cache_a, cache_b], cache_a)
    with pytest.raises(FileNotFoundError, match="no token cache"):
        merge_token_caches([cache_a, tmp_path / "nowhere"], tmp_path / "out")

    merge_token_caches([cache_a, cache_b], tmp_path / "out")
    assert {root: tree_digest(root) for root in (cache_a, cache_b)} == before  # inputs never modified


def test_cli_merges_and_reports(tmp_path: Path, two_caches: tuple[Path, Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, _, cache_a, cache_b = two_caches
    assert main(["corpus", "merge-caches", str(cache_a), str(cache_b), "--out", str(tmp_path / "cli")]) == 0
    assert "8 utterances of 6 speakers" in capsys.readouterr().out
    assert len(TokenCache(tmp_path / "cli")) == 8
