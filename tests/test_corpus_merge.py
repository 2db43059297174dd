"""`soundstorm corpus merge`: paths rewritten so the merged manifest reads the same files, ids
kept and checked, inputs untouched, the output written whole or not at all."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundstorm.cli import main
from soundstorm.data.audio_dataset import AudioCropDataset
from soundstorm.data.manifest import ManifestEntry, read_manifest, write_manifest
from soundstorm.data.merge import merge_manifests


def corpus(root: Path, speaker: str, count: int, frequency: float) -> Path:
    """A manifest of `count` one-second tones of `speaker`, paths relative to `root`."""
    entries = []
    for index in range(count):
        path = root / "audio" / speaker / f"{index}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(16000) / 16000
        sf.write(path, (0.3 * np.sin(2 * np.pi * frequency * (index + 1) * t)).astype(np.float32), 16000)
        entries.append(ManifestEntry(id=f"{speaker}/{index}", path=f"audio/{speaker}/{index}.wav", duration=1.0,
                                     sample_rate=16000, speaker=speaker, text="a tone", split="train"))
    write_manifest(entries, root / "manifest.jsonl")
    return root / "manifest.jsonl"


def test_merged_manifest_reads_the_same_audio(tmp_path: Path) -> None:
    first = corpus(tmp_path / "a", "alto", 2, 220.0)
    second = corpus(tmp_path / "deep" / "b", "bass", 3, 110.0)
    before = [first.read_bytes(), second.read_bytes()]
    out = tmp_path / "mix" / "manifest.jsonl"
    assert main(["corpus", "merge", str(first), str(second), "--out", str(out)]) == 0

    merged = read_manifest(out)
    assert [e.id for e in merged] == ["alto/0", "alto/1", "bass/0", "bass/1", "bass/2"]
    assert all(not Path(e.path).is_absolute() for e in merged)  # the folders move together
    sources = {e.id: e.audio_path(first.parent) for e in read_manifest(first)}
    sources |= {e.id: e.audio_path(second.parent) for e in read_manifest(second)}
    for entry in merged:
        assert entry.audio_path(out.parent).resolve() == sources[entry.id].resolve()
    assert [first.read_bytes(), second.read_bytes()] == before

    # The codec's training data reads every file through it: one crop per utterance.
    crops = AudioCropDataset(out, sample_rate=16000, crop_seconds=0.5, split="train")
    assert len(crops) == 5 and all(float(crops[i].wav.abs().max()) > 0.2 for i in range(5))


def test_merge_refuses_clashing_ids_and_keeps_the_old_output(tmp_path: Path) -> None:
    first = corpus(tmp_path / "a", "alto", 2, 220.0)
    again = corpus(tmp_path / "b", "alto", 1, 330.0)  # alto/0 once more
    out = tmp_path / "mix.jsonl"
    merge_manifests([first], out)
    kept = out.read_bytes()
    with pytest.raises(ValueError, match=r"'alto/0' is in both .*a/manifest.jsonl and .*b/manifest.jsonl"):
        merge_manifests([first, again], out)
    assert out.read_bytes() == kept
    with pytest.raises(ValueError, match="also an input"):
        merge_manifests([first, out], out)
    with pytest.raises(FileNotFoundError, match="no manifest"):
        merge_manifests([tmp_path / "missing.jsonl"], tmp_path / "other.jsonl")


def test_train_only_adds_voices_without_touching_the_first_corpus_evaluation(tmp_path: Path) -> None:
    first = corpus(tmp_path / "a", "alto", 4, 220.0)
    entries = read_manifest(first)
    texts = ["one", "two", "three", "four"]
    splits = ["train", "valid", "test", "test-unseen-speaker"]
    write_manifest([replace(e, text=t, split=s) for e, t, s in zip(entries, texts, splits)], first)
    second = corpus(tmp_path / "b", "bass", 5, 110.0)
    entries = read_manifest(second)
    texts = ["one", "two", "three", "four", "five"]  # four of them speak the first corpus's sentences
    splits = ["valid", "train", "train", "test", "valid"]
    write_manifest([replace(e, text=t, split=s) for e, t, s in zip(entries, texts, splits)], second)
    out = tmp_path / "mix.jsonl"

    assert main(["corpus", "merge", str(first), str(second), "--out", str(out), "--train-only"]) == 0
    merged = read_manifest(out)
    # The first corpus as it was; of the second, what speaks a training sentence or a new one, as train.
    assert [(e.id, e.text, e.split) for e in merged] == [
        ("alto/0", "one", "train"), ("alto/1", "two", "valid"), ("alto/2", "three", "test"),
        ("alto/3", "four", "test-unseen-speaker"), ("bass/0", "one", "train"), ("bass/4", "five", "train"),
    ]
    # Without the flag every entry is kept as it was.
    assert [e.split for e in merge_manifests([first, second], out)][4:] == splits
