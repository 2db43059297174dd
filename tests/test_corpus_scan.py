"""`soundstorm corpus scan`: layouts, validation with reasons, splits, alignment, the command."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundstorm.data.manifest import ManifestEntry, read_manifest
from soundstorm.data.scan import Checks, ScanReport, _split, add_arguments, detect_layout, run, scan_corpus


def write_tone(path: Path, seconds: float = 1.0, sample_rate: int = 16000, channels: int = 1, seed: int = 0) -> Path:
    """A tone with a little noise: passes every check at the default thresholds."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wav = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + rng.normal(0, 0.02, len(t))  # [N]
    data = np.repeat(wav[:, None], channels, axis=1) if channels > 1 else wav
    path.parent.mkdir(parents=True, exist_ok=True)
    lossless = path.suffix in (".wav", ".flac")
    sf.write(path, data.astype(np.float32), sample_rate, subtype="PCM_16" if lossless else None)
    return path


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file: the scan must change none of them."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def scan(root: Path, out: Path, **kwargs: object) -> ScanReport:
    report = scan_corpus(root, out, **kwargs)  # type: ignore[arg-type]
    assert read_manifest(out) == list(report.entries)  # the schema holds and what is written is reported
    return report


# ---------------------------------------------------------------- layouts


def test_ljspeech(tmp_path: Path) -> None:
    root = tmp_path / "LJSpeech-1.1"
    for i in range(3):
        write_tone(root / "wavs" / f"LJ001-000{i}.wav", seed=i)
    (root / "metadata.csv").write_text(
        'LJ001-0000|Printing, in 1 sense|Printing, in one sense\n'
        'LJ001-0001|He said "yes|He said "yes\n'  # an unbalanced quote, as LJSpeech has
        'LJ001-0002|Plain text\n'  # no normalized column
        'LJ001-0009|No audio for this one|No audio for this one\n'
        'not a metadata line\n'
    )
    assert detect_layout(root) == "ljspeech"
    report = scan(root, tmp_path / "lj.jsonl")
    assert report.layout == "ljspeech"
    by_id = {e.id: e for e in report.entries}
    assert sorted(by_id) == ["LJ001-0000", "LJ001-0001", "LJ001-0002"]
    assert by_id["LJ001-0000"].text == "Printing, in one sense"
    assert by_id["LJ001-0000"].extra == {"original_text": "Printing, in 1 sense"}
    assert by_id["LJ001-0001"].text == 'He said "yes'
    assert by_id["LJ001-0002"].text == "Plain text"
    assert {e.speaker for e in report.entries} == {"LJSpeech-1.1"}
    assert by_id["LJ001-0000"].path == "LJSpeech-1.1/wavs/LJ001-0000.wav"
    assert by_id["LJ001-0000"].audio_path(tmp_path).is_file()
    assert report.reject_counts() == {"missing audio": 1, "bad metadata line": 1}
    assert all(e.split is None and e.phones is None for e in report.entries)


def test_libritts(tmp_path: Path) -> None:
    root = tmp_path / "LibriTTS"
    write_tone(root / "84" / "121123" / "84_121123_000007_000001.wav")
    (root / "84" / "121123" / "84_121123_000007_000001.normalized.txt").write_text("Normalized text.")
    (root / "84" / "121123" / "84_121123_000007_000001.original.txt").write_text("Original  text!")
    write_tone(root / "174" / "50561" / "174_50561_000012_000000.flac", seed=1)
    (root / "174" / "50561" / "174_50561_000012_000000.original.txt").write_text("Only the\noriginal.\n")
    write_tone(root / "174" / "50561" / "174_50561_000013_000000.wav", seed=2)  # no transcript
    assert detect_layout(root) == "libritts"
    report = scan(root, root / "manifest.jsonl")
    by_id = {e.id: e for e in report.entries}
    assert by_id["84/121123/84_121123_000007_000001"].text == "Normalized text."
    assert by_id["174/50561/174_50561_000012_000000"].text == "Only the original."
    assert by_id["174/50561/174_50561_000013_000000"].text is None
    assert {e.id.split("/")[0]: e.speaker for e in report.entries} == {"84": "84", "174": "174"}
    assert by_id["84/121123/84_121123_000007_000001"].path == "84/121123/84_121123_000007_000001.wav"
    assert not report.rejects and report.rejects_path.read_text() == ""


def test_plain_and_forced_layout(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    write_tone(root / "alice" / "one.wav")
    (root / "alice" / "one.txt").write_text("Hello from Alice.\n")
    write_tone(root / "bob" / "two.ogg", seed=1)
    write_tone(root / "top.wav", seed=2)
    (root / ".hidden" / "x.wav").parent.mkdir()
    (root / ".hidden" / "x.wav").write_bytes(b"")  # hidden folders are skipped, not rejected
    assert detect_layout(root) == "plain"
    report = scan(root, tmp_path / "m.jsonl")
    assert {e.id: (e.speaker, e.text) for e in report.entries} == {
        "alice/one": ("alice", "Hello from Alice."), "bob/two": ("bob", None), "top": ("mine", None),
    }
    assert not report.rejects
    report = scan(root, tmp_path / "m.jsonl", speaker="narrator")
    assert {e.speaker for e in report.entries} == {"narrator"}
    # Forced: a libritts scan of this tree reads no .txt transcripts (it wants .normalized.txt).
    report = scan(root, tmp_path / "m.jsonl", layout="libritts")
    assert all(e.text is None for e in report.entries)
    with pytest.raises(ValueError, match="unknown layout"):
        scan_corpus(root, tmp_path / "m.jsonl", layout="vctk")
    with pytest.raises(FileNotFoundError, match="needs .*metadata.csv"):
        scan_corpus(root, tmp_path / "m.jsonl", layout="ljspeech")


def test_empty_folder_and_duplicate_ids(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        scan_corpus(tmp_path / "empty", tmp_path / "m.jsonl")
    with pytest.raises(FileNotFoundError):
        scan_corpus(tmp_path / "nowhere", tmp_path / "m.jsonl")
    write_tone(tmp_path / "dup" / "a.wav")
    write_tone(tmp_path / "dup" / "a.flac")
    report = scan(tmp_path / "dup", tmp_path / "m.jsonl")
    assert [e.path for e in report.entries] == ["dup/a.flac"]  # sorted walk: the first name wins
    assert report.reject_counts() == {"duplicate id": 1}


# ---------------------------------------------------------------- validation


def make_bad_corpus(root: Path) -> dict[str, str]:
    """A plain corpus with good files and bad ones; returns each bad file's expected reason."""
    write_tone(root / "spk" / "good1.wav")
    write_tone(root / "spk" / "good2.flac", seed=1)
    (root / "spk" / "good1.txt").write_text("a transcript")
    good = (root / "spk" / "good1.wav").read_bytes()
    (root / "spk" / "empty.wav").write_bytes(b"")
    (root / "spk" / "truncated.wav").write_bytes(good[: len(good) // 3])
    (root / "spk" / "notaudio.wav").write_text("RIFF? no, just text\n" * 10)
    sf.write(root / "spk" / "silent.wav", np.zeros(16000, np.float32), 16000)
    write_tone(root / "spk" / "short.wav", seconds=0.1)
    write_tone(root / "spk" / "stereo.wav", channels=2)
    write_tone(root / "spk" / "rate.wav", sample_rate=22050)
    return {
        "spk/empty.wav": "empty", "spk/truncated.wav": "truncated", "spk/notaudio.wav": "undecodable",
        "spk/silent.wav": "silent", "spk/short.wav": "too short", "spk/stereo.wav": "multi-channel",
        "spk/rate.wav": "wrong sample rate",
    }


def test_bad_files_rejected_with_reasons(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    expected = make_bad_corpus(root)
    before = snapshot(root)
    out = tmp_path / "out" / "manifest.jsonl"
    report = scan(root, out, checks=Checks(sample_rate=16000))
    assert snapshot(root) == before  # nothing in the corpus was touched
    assert sorted(e.id for e in report.entries) == ["spk/good1", "spk/good2"]
    assert {Path(r.path).relative_to("../corpus").as_posix(): r.reason for r in report.rejects} == expected
    rows = [json.loads(line) for line in (tmp_path / "out" / "manifest.rejects.jsonl").read_text().splitlines()]
    assert {row["reason"] for row in rows} == set(expected.values())
    assert all(row["detail"] for row in rows)
    assert "rejected 7" in report.summary() and "1 wrong sample rate" in report.summary()
    for entry in report.entries:
        assert entry.audio_path(out.parent).is_file()
        assert entry.sample_rate == 16000 and entry.duration == pytest.approx(1.0)


def test_downmix_and_resample_keep_files(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    make_bad_corpus(root)
    report = scan(root, tmp_path / "m.jsonl", checks=Checks(sample_rate=16000, resample=True, downmix=True))
    by_id = {e.id: e for e in report.entries}
    assert by_id["spk/stereo"].extra == {"channels": 2}
    assert by_id["spk/rate"].sample_rate == 22050  # the file's own rate; loaders resample
    assert report.reject_counts().keys() == {"empty", "truncated", "undecodable", "silent", "too short"}
    # Thresholds are options too.
    report = scan(root, tmp_path / "m.jsonl", checks=Checks(min_seconds=0.05, max_seconds=0.5))
    assert [e.id for e in report.entries] == ["spk/short"]


def test_parallel_scan_equals_serial(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    make_bad_corpus(root)
    serial = scan(root, tmp_path / "serial.jsonl", workers=1)
    parallel = scan(root, tmp_path / "parallel.jsonl", workers=2)
    assert parallel.entries == serial.entries and parallel.rejects == serial.rejects


# ---------------------------------------------------------------- splits


def entry(id: str, speaker: str = "s") -> ManifestEntry:
    return ManifestEntry(id=id, path=f"{id}.wav", duration=1.0, sample_rate=16000, speaker=speaker)


def test_splits_are_stable_hashes_of_ids() -> None:
    ids = [f"utt{i:04d}" for i in range(2000)]
    splits = [_split(entry(i), 0.1, 0.05, set(), seed=0) for i in ids]
    counts = {name: splits.count(name) for name in ("train", "valid", "test")}
    assert abs(counts["valid"] - 200) < 45 and abs(counts["test"] - 100) < 35
    # Each id's split depends on that id alone: a corpus that grows keeps its old assignments.
    assert [_split(entry(i), 0.1, 0.05, set(), seed=0) for i in ids[:100]] == splits[:100]
    assert [_split(entry(i), 0.1, 0.05, set(), seed=1) for i in ids] != splits
    assert _split(entry("a"), 0.0, 0.0, set(), seed=0) is None
    assert _split(entry("a", speaker="held"), 0.1, 0.1, {"held"}, seed=0) == "test-unseen-speaker"
    assert _split(entry("a"), 0.0, 0.0, {"held"}, seed=0) == "train"


def test_scan_writes_splits(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for speaker in ("a", "b"):
        for i in range(6):
            write_tone(root / speaker / f"{i}.wav", seconds=0.6, seed=i)
    report = scan(root, tmp_path / "m.jsonl", valid_fraction=0.3, test_fraction=0.3, test_speakers=["b"])
    assert {e.split for e in report.entries if e.speaker == "b"} == {"test-unseen-speaker"}
    assert {e.split for e in report.entries if e.speaker == "a"} <= {"train", "valid", "test"}
    with pytest.raises(ValueError, match="have no files"):
        scan_corpus(root, tmp_path / "m.jsonl", test_speakers=["nobody"])
    with pytest.raises(ValueError, match="sum to less than 1"):
        scan_corpus(root, tmp_path / "m.jsonl", valid_fraction=0.5, test_fraction=0.5)


# ---------------------------------------------------------------- alignment and the command


def test_scan_with_alignment(tmp_path: Path) -> None:
    pytest.importorskip("pocketsphinx")
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (apt-get install flite, or make system-deps)")
    root = tmp_path / "corpus"
    (root / "slt").mkdir(parents=True)
    sentences = {"one": "The birch canoe slid on the smooth planks.", "two": "Glue the sheet to the dark blue background."}
    for name, text in sentences.items():
        subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(root / "slt" / f"{name}.wav")], check=True)
        (root / "slt" / f"{name}.txt").write_text(text)
    (root / "slt" / "wrong.txt").write_text("This transcript belongs to some other recording entirely, I am afraid.")
    shutil.copy(root / "slt" / "one.wav", root / "slt" / "wrong.wav")
    write_tone(root / "slt" / "untranscribed.wav")
    report = scan(root, tmp_path / "m.jsonl", checks=Checks(align=True))
    by_id = {e.id: e for e in report.entries}
    assert sorted(by_id) == ["slt/one", "slt/two", "slt/untranscribed"]
    assert by_id["slt/untranscribed"].phones is None
    for name in sentences:
        phones = by_id[f"slt/{name}"].phones
        assert phones and phones[-1].end <= by_id[f"slt/{name}"].duration + 1e-6
        assert [p.start for p in phones] == sorted(p.start for p in phones)
    assert report.reject_counts() == {"alignment failed": 1}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "corpus"
    make_bad_corpus(root)
    out = tmp_path / "m.jsonl"
    assert run(parse(str(root), "--out", str(out), "--sample-rate", "16000", "--workers", "1", "--json")) == 0
    captured = capsys.readouterr()
    assert "kept 2 of 9 files" in captured.err
    summary = json.loads(captured.out)
    assert summary["kept"] == 2 and summary["reject_counts"]["wrong sample rate"] == 1
    assert len(read_manifest(out)) == 2
    # Every file rejected: exit 1; no corpus at all: exit 2 with the reason.
    assert run(parse(str(root), "--out", str(out), "--min-seconds", "100", "--workers", "1")) == 1
    assert run(parse(str(tmp_path / "nowhere"), "--out", str(out))) == 2
    assert "no corpus folder" in capsys.readouterr().err
