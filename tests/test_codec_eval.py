"""Codec metrics, the Opus baseline, and `soundstorm codec eval` end to end on a tiny manifest."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from soundstorm.codecs.opus import opus_available, opus_roundtrip
from soundstorm.data.audio import load_audio, save_audio
from soundstorm.data.manifest import ManifestEntry, write_manifest
from soundstorm.eval import codec_eval
from soundstorm.eval.asr import error_rates
from soundstorm.eval.codec_metrics import align, mel_distance, pesq_wb, stoi

os.environ["HF_HUB_OFFLINE"] = "1"
RATE = 16000
needs_opus = pytest.mark.skipif(not opus_available(), reason="opus-tools not installed (make system-deps)")


def _flite(text: str, path: Path, voice: str = "slt") -> np.ndarray:
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
    wav, _ = load_audio(path, sample_rate=RATE, resample=True)
    save_audio(path, wav, RATE)
    return wav


def _synthetic_speech(seconds: float, seed: int) -> np.ndarray:
    """Voiced harmonics under a syllable envelope: what PESQ's voice detector accepts."""
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.5 * t + seed)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    return (0.3 * envelope * voice).astype(np.float32)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    if shutil.which("flite"):
        return _flite("The quick brown fox jumps over the lazy dog, twice.", tmp_path_factory.mktemp("flite") / "a.wav")
    return _synthetic_speech(2.5, seed=0)


def test_metrics_are_best_for_identical_signals_and_monotone_in_noise(speech: np.ndarray) -> None:
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    noise = np.random.default_rng(0).standard_normal(len(speech)).astype(np.float32)
    scale = np.sqrt(np.mean(speech**2))
    assert pesq_wb(speech, speech, RATE) > 4.5
    assert stoi(speech, speech, RATE) > 0.999
    assert mel_distance(speech, speech, RATE) == 0.0
    scores = []
    for snr_db in (30, 15, 5, -5):
        noisy = speech + noise * scale * 10 ** (-snr_db / 20)
        scores.append((pesq_wb(speech, noisy, RATE), stoi(speech, noisy, RATE), mel_distance(speech, noisy, RATE)))
    pesq_scores, stoi_scores, mel_scores = zip(*scores)
    assert all(a > b for a, b in zip(pesq_scores, pesq_scores[1:])), pesq_scores
    assert all(a > b for a, b in zip(stoi_scores, stoi_scores[1:])), stoi_scores
    assert all(a < b for a, b in zip(mel_scores, mel_scores[1:])), mel_scores


def test_metrics_align_lengths_and_resample_for_pesq(speech: np.ndarray) -> None:
    pytest.importorskip("pesq")
    reference, degraded = align(speech, np.concatenate([speech, np.zeros(123, np.float32)]))
    assert len(reference) == len(degraded) == len(speech)
    assert mel_distance(speech, speech[:-50], RATE) == 0.0
    from soundstorm.data.audio import resample_audio

    upsampled = resample_audio(speech, RATE, 24000)
    assert pesq_wb(upsampled, upsampled, 24000) > 4.5
    with pytest.raises(ValueError, match="NaN"):
        mel_distance(speech, np.full_like(speech, np.nan), RATE)
    with pytest.raises(ValueError, match="PESQ cannot score digital silence"):
        pesq_wb(np.zeros(RATE, np.float32), np.zeros(RATE, np.float32), RATE)
    with pytest.raises(ValueError, match="PESQ cannot score this pair"):
        pesq_wb(speech[:1000], speech[:1000], RATE)  # 60 ms: too short to find an utterance


@needs_opus
def test_opus_round_trip_keeps_length_and_gets_better_with_bitrate(speech: np.ndarray) -> None:
    low = opus_roundtrip(speech, RATE, 6.0)
    high = opus_roundtrip(speech, RATE, 32.0)
    assert low.shape == high.shape == speech.shape and low.dtype == np.float32
    assert mel_distance(speech, high, RATE) < mel_distance(speech, low, RATE)
    odd = opus_roundtrip(speech[:22050], 22050, 12.0)  # a rate Opus does not run at natively
    assert odd.shape == (22050,)
    with pytest.raises(ValueError, match="6 to 256 kbit/s, got 1.5"):
        opus_roundtrip(speech, RATE, 1.5)


@needs_opus
def test_codec_eval_end_to_end(tmp_path: Path, speech: np.ndarray) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    from test_codecs_hf import save_tiny_model

    corpus = tmp_path / "corpus"
    (corpus / "audio").mkdir(parents=True)
    sentences = ["Never trust a cat.", "The rain in Spain stays mainly in the plain."]
    entries = []
    for i, (split, voice) in enumerate([("test", "slt"), ("test-unseen-speaker", "kal"), ("train", "slt")]):
        path = corpus / "audio" / f"{i}.wav"
        if shutil.which("flite"):
            wav = _flite(sentences[i % 2], path, voice)
        else:
            wav = _synthetic_speech(1.5, seed=i)
            save_audio(path, wav, RATE)
        entries.append(ManifestEntry(
            id=f"u{i}", path=f"audio/{i}.wav", duration=len(wav) / RATE, sample_rate=RATE,
            speaker=voice, text=sentences[i % 2], split=split,
        ))
    write_manifest(entries, corpus / "manifest.jsonl")
    # target_bandwidths up to 6 kbit/s: 12 levels of 10 bits at 50 frames/s. Two levels make 1 kbit/s,
    # below Opus's minimum, and twelve its 6 kbit/s minimum: one row with an Opus column, one without.
    folder = save_tiny_model("encodec", tmp_path / "codec", target_bandwidths=[1.0, 2.0, 6.0])

    parser = argparse.ArgumentParser()
    codec_eval.add_arguments(parser)
    out = tmp_path / "eval"
    args = parser.parse_args([
        "--codec", f"encodec:{folder}", "--manifest", str(corpus / "manifest.jsonl"),
        "--levels", "2,12", "--out", str(out), "--quiet", "--threads", "1",
    ])
    assert codec_eval.run(args) == 0
    report = json.loads((out / "codec_eval.json").read_text())
    assert report["codec"]["num_quantizers"] == 12
    assert [s["split"] for s in report["splits"]] == ["test", "test-unseen-speaker"]
    assert all(s["num_items"] == 1 for s in report["splits"])
    rows = report["splits"][0]["rows"]
    assert [r["levels"] for r in rows] == [2, 12] and [r["kbps"] for r in rows] == [1.0, 6.0]
    assert rows[0]["opus"] is None and rows[1]["opus"] is not None
    for row in rows:
        assert 1.0 <= row["codec"]["pesq"] <= 4.7 and 0.0 <= row["codec"]["mel_distance"]
        assert row["decode_rtf"] > 0
    assert rows[1]["opus"]["pesq"] > rows[1]["codec"]["pesq"]  # Opus beats a random codec
    assert report["encode_rtf"] > 0
    table = (out / "codec_eval.md").read_text()
    assert "| 12 | 6.00 |" in table and "**test-unseen-speaker**: 1 utterance," in table
    assert report["splits"][0]["opus_reference"] == []  # a level reaches Opus's range: no reference needed
    # Per-clip scores: the split's means are their means, and the paired script reads them.
    (item,) = report["splits"][0]["items"]
    assert item["id"] == "u0" and item["speaker"] == "slt" and set(item["codec"]) == {"2", "12"}
    assert all(item["codec"]["12"][m] == rows[1]["codec"][m] for m in ("pesq", "stoi", "mel_distance"))
    assert item["opus"]["6"]["stoi"] == rows[1]["opus"]["stoi"]
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "paired_codec_eval.py"
    done = subprocess.run([sys.executable, str(script), str(out / "codec_eval.json"), str(out / "codec_eval.json")],
                          check=True, capture_output=True, text=True)
    pesq, stoi = item["codec"]["12"]["pesq"], item["codec"]["12"]["stoi"]
    assert (f"| test | all | 1 | 12 | {pesq:.3f} -> {pesq:.3f} | {stoi:.3f} -> {stoi:.3f} | +0.0000 +- nan |"
            in done.stdout)  # a run against itself: the same means, no difference

    # Every level below Opus's 6 kbit/s minimum: Opus alone at 6 kbit/s is the reference. Heard too (--asr).
    asr = ["--asr"] if importlib.util.find_spec("pocketsphinx") else []
    args = parser.parse_args(["--codec", f"encodec:{folder}", "--manifest", str(corpus / "manifest.jsonl"),
                              "--levels", "2", "--out", str(out), "--quiet", "--threads", "1", *asr])
    assert codec_eval.run(args) == 0
    report = json.loads((out / "codec_eval.json").read_text())
    reference = report["splits"][0]["opus_reference"]
    assert [r["kbps"] for r in reference] == [6.0] and 1.0 <= reference[0]["opus"]["pesq"] <= 4.7
    table = (out / "codec_eval.md").read_text()
    assert "| Opus only | 6.00 | - |" in table
    if not asr:
        return
    split = report["splits"][0]
    (item,) = split["items"]
    assert set(item["heard"]) == {"original", "codec:2", "opus:6"} and item["text"] == sentences[0]
    assert split["original_wer"] == error_rates([sentences[0]], [item["heard"]["original"]]).wer
    assert split["rows"][0]["codec"]["wer"] == error_rates([sentences[0]], [item["heard"]["codec:2"]]).wer
    assert reference[0]["opus"]["cer"] == error_rates([sentences[0]], [item["heard"]["opus:6"]]).cer
    if shutil.which("flite"):
        # flite's words are heard; a random codec's are not.
        assert split["original_wer"] < 0.5 < split["rows"][0]["codec"]["wer"]
    assert "| WER codec | WER Opus |" in table and f"the original audio's WER {split['original_wer']:.3f}" in table
    assert "| speaker | clips | original | 2 levels | Opus 6 kbit/s |" in table
    assert f"| slt | 1 | {split['original_wer']:.3f} | {split['rows'][0]['codec']['wer']:.3f} |" in table
    done = subprocess.run([sys.executable, str(script), str(out / "codec_eval.json"), str(out / "codec_eval.json")],
                          check=True, capture_output=True, text=True)
    wer = split["rows"][0]["codec"]["wer"]
    assert (f"| test | all | 1 | 2 | {split['original_wer']:.3f} | {wer:.3f} -> {wer:.3f} | +0.000 +- nan |"
            in done.stdout)


def test_codec_eval_asr_needs_every_transcript(tmp_path: Path) -> None:
    from fakes import FakeCodec

    entry = ManifestEntry(id="a", path="a.wav", duration=1.0, sample_rate=RATE, speaker="s", split="test")
    with pytest.raises(ValueError, match="1 of the clips to score have none"):
        codec_eval.evaluate_codec(FakeCodec(), [entry], tmp_path, opus=False, recognizer=object())  # type: ignore[arg-type]


def test_codec_eval_refuses_a_manifest_without_held_out_items(tmp_path: Path) -> None:
    from fakes import FakeCodec

    entry = ManifestEntry(id="a", path="a.wav", duration=1.0, sample_rate=RATE, speaker="s", split="train")
    with pytest.raises(ValueError, match="no utterances in the splits"):
        codec_eval.evaluate_codec(FakeCodec(), [entry], tmp_path, opus=False)
    with pytest.raises(ValueError, match=r"levels must be in \[1, 4\]"):
        codec_eval.evaluate_codec(FakeCodec(), [entry], tmp_path, levels=[5], opus=False)


def test_max_items_spreads_over_a_splits_speakers() -> None:
    # Manifests list a speaker's clips together; the first N of a split were once one voice of two.
    entries = [ManifestEntry(id=f"{speaker}{i}", path=f"{speaker}{i}.wav", duration=1.0, sample_rate=RATE,
                             speaker=speaker, split="test-unseen-speaker")
               for speaker, count in (("a", 5), ("b", 2), ("c", 4)) for i in range(count)]
    chosen = [e.id for e in codec_eval.spread_over_speakers(entries, 7)]
    assert chosen == ["a0", "b0", "c0", "a1", "b1", "c1", "a2"]
    assert len(codec_eval.spread_over_speakers(entries, 100)) == len(entries)  # all, each once
    assert sorted(e.id for e in codec_eval.spread_over_speakers(entries, 100)) == sorted(e.id for e in entries)


def _report(path: Path, pesq: dict[str, float], levels: str = "8") -> Path:
    """A codec_eval.json with one clip per speaker in one split: the fields the scripts read."""
    items = [{"id": f"{speaker}/0", "speaker": speaker, "seconds": 1.0,
              "codec": {levels: {"pesq": value, "stoi": 0.5 + value / 10, "mel_distance": 0.1}}, "opus": {}}
             for speaker, value in pesq.items()]
    path.write_text(json.dumps({"splits": [{"split": "test", "items": items}]}))
    return path


def test_trajectory_codec_eval_means_over_checkpoints(tmp_path: Path) -> None:
    # B - A on speaker x: +0.2, -0.1, +0.2 at three checkpoints; on y always -0.3.
    a = _report(tmp_path / "a.json", {"x": 2.0, "y": 2.0})
    pairs = []
    for label, x in (("1k", 2.2), ("2k", 1.9), ("3k", 2.2)):
        pairs += ["--pair", label, str(a), str(_report(tmp_path / f"b{label}.json", {"x": x, "y": 1.7}))]
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "trajectory_codec_eval.py"
    done = subprocess.run([sys.executable, str(script), *pairs], check=True, capture_output=True, text=True)
    pesq_table = done.stdout.split("STOI")[0]
    # mean 0.1; sample variance (0.01 + 0.04 + 0.01) / 2 = 0.03; standard error sqrt(0.03 / 3) = 0.1
    assert "| test | x | +0.200 | -0.100 | +0.200 | +0.100 +- 0.100 | 2 of 3 |" in pesq_table
    assert "| test | y | -0.300 | -0.300 | -0.300 | -0.300 +- 0.000 | 0 of 3 |" in pesq_table
    assert "| 1k | 2k | 3k |" in pesq_table

    # Runs that scored different clips are refused, naming the split.
    other = _report(tmp_path / "other.json", {"x": 2.0})
    failed = subprocess.run([sys.executable, str(script), "--pair", "1k", str(a), str(other)],
                            capture_output=True, text=True)
    assert failed.returncode != 0 and "split test: the runs scored different clips" in failed.stderr
