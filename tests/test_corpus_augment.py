"""`soundstorm corpus augment`: each copy is its source at its own speed and equalization, one
transform over the whole utterance, reproducible, resumable, and never touching the source."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundstorm.cli import main
from soundstorm.data.audio_dataset import EQ_POINTS
from soundstorm.data.augment import VoiceAugmentation, augment_corpus
from soundstorm.data.manifest import ManifestEntry, Phone, read_manifest, write_manifest
from soundstorm.data.merge import merge_manifests

RATE = 16000


def tone_corpus(root: Path, frequencies: list[float], split: str = "train") -> Path:
    """One 2 s tone per frequency, each its own speaker, with phone timings."""
    entries = []
    t = np.arange(2 * RATE) / RATE
    for index, frequency in enumerate(frequencies):
        path = root / "audio" / f"s{index}" / "tone.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), RATE)
        entries.append(ManifestEntry(
            id=f"s{index}/tone", path=f"audio/s{index}/tone.wav", duration=2.0, sample_rate=RATE, speaker=f"s{index}",
            text="a tone", phones=(Phone("aa", 0.0, 1.0), Phone("pau", 1.0, 2.0)), split=split))
    write_manifest(entries, root / "manifest.jsonl")
    return root / "manifest.jsonl"


def peak_hz(wav: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / RATE)[np.argmax(spectrum)])


def test_transforms_are_reproducible_and_differ_between_copies_and_sources() -> None:
    augmentation = VoiceAugmentation(copies=3, seed=4)
    first = augmentation.transform("flite-slt/a", 1)
    assert first == VoiceAugmentation(copies=3, seed=4).transform("flite-slt/a", 1)  # no per-process salt
    others = [augmentation.transform("flite-slt/a", 2), augmentation.transform("flite-slt/b", 1),
              VoiceAugmentation(copies=3, seed=5).transform("flite-slt/a", 1)]
    assert all(other != first for other in others)
    speeds = [augmentation.transform(f"u{i}", 1).speed for i in range(400)]
    assert 0.87 <= min(speeds) < 0.9 and 1.12 < max(speeds) <= 1.15
    gains = np.array([augmentation.transform(f"u{i}", 1).eq_gains_db for i in range(400)])
    assert gains.shape == (400, len(EQ_POINTS)) and np.abs(gains).max() <= 10.0 and np.abs(gains).max() > 9.0
    assert VoiceAugmentation(eq_db=0.0).transform("u", 1).eq_gains_db == ()
    assert {augmentation.transform(f"u{i}", 1).formant for i in range(400)} == {1.0}  # off by default


def test_formant_factors_are_drawn_after_and_apart_from_speed_and_gains() -> None:
    plain, shifted = VoiceAugmentation(seed=3), VoiceAugmentation(seed=3, formant_range=(0.87, 1.15))
    transforms = [(plain.transform(f"u{i}", 1), shifted.transform(f"u{i}", 1)) for i in range(400)]
    # The copies made before formant_range existed keep their speeds and gains.
    assert all((a.speed, a.eq_gains_db) == (b.speed, b.eq_gains_db) for a, b in transforms)
    formants = np.array([b.formant for _, b in transforms])
    assert 0.87 <= formants.min() < 0.9 and 1.12 < formants.max() <= 1.15
    speeds = np.array([b.speed for _, b in transforms])
    assert abs(np.corrcoef(np.log(speeds), np.log(formants))[0, 1]) < 0.15  # a vocal tract apart from the pitch


def test_copy_is_its_source_sped_up_and_equalized(tmp_path: Path) -> None:
    manifest = tone_corpus(tmp_path / "corpus", [200.0, 300.0])
    source_bytes = manifest.read_bytes()
    augmentation = VoiceAugmentation(copies=2, speed_range=(0.8, 1.25), eq_db=6.0)
    copies = augment_corpus(manifest, tmp_path / "voices", augmentation)
    assert manifest.read_bytes() == source_bytes
    assert [c.id for c in copies] == ["s0/tone~v1", "s0/tone~v2", "s1/tone~v1", "s1/tone~v2"]
    assert read_manifest(tmp_path / "voices" / "manifest.jsonl") == copies
    for copy in copies:
        source_id = copy.id.split("~")[0]
        transform = augmentation.transform(source_id, int(copy.id[-1]))
        speed, gains = transform.speed, transform.eq_gains_db
        assert transform.formant == 1.0 and "formant" not in copy.extra
        assert copy.speaker == copy.id and copy.split == "train" and copy.text == "a tone"
        assert copy.extra["augmented_from"] == source_id and copy.extra["speed"] == pytest.approx(speed, abs=1e-5)
        wav, rate = sf.read(tmp_path / "voices" / copy.path)
        assert rate == RATE and copy.duration == pytest.approx(len(wav) / RATE)
        assert copy.duration == pytest.approx(2.0 / speed, abs=2e-3)  # played `speed` times as fast
        frequency = 200.0 if source_id == "s0/tone" else 300.0
        assert peak_hz(wav) == pytest.approx(frequency * speed, abs=1.0)  # and as high
        assert copy.phones is not None and copy.phones[0].end == pytest.approx(1.0 / speed, abs=1e-4)
        # The equalization's gain at the tone, on top of the source's amplitude: the curve is linear in dB over log f.
        expected_db = np.interp(np.log(frequency * speed), np.log(EQ_POINTS), gains)
        measured_db = 20 * np.log10(np.sqrt(2) * np.sqrt(np.mean(wav[4000:-4000] ** 2)) / 0.3)
        assert measured_db == pytest.approx(expected_db, abs=0.3)


def test_a_formant_shift_keeps_the_pitch_and_is_recorded(tmp_path: Path) -> None:
    manifest = tone_corpus(tmp_path / "corpus", [200.0])
    augmentation = VoiceAugmentation(speed_range=(1.0, 1.0), eq_db=0.0, formant_range=(0.8, 0.8))
    (copy,) = augment_corpus(manifest, tmp_path / "voices", augmentation)
    wav, _ = sf.read(tmp_path / "voices" / copy.path)
    assert copy.extra["formant"] == 0.8 and copy.duration == 2.0
    assert peak_hz(wav) == pytest.approx(200.0, abs=1.0)  # the harmonic stays where it was
    with pytest.raises(ValueError, match="made with formant_range = \\[0.8, 0.8\\], but this run has formant_range = \\[1.0, 1.0\\]"):
        augment_corpus(manifest, tmp_path / "voices", VoiceAugmentation(speed_range=(1.0, 1.0), eq_db=0.0))


def test_a_folder_made_before_formant_shifts_resumes_without_them(tmp_path: Path) -> None:
    manifest = tone_corpus(tmp_path / "corpus", [200.0])
    copies = augment_corpus(manifest, tmp_path / "voices", VoiceAugmentation())
    record = tmp_path / "voices" / "augment.json"
    settings = json.loads(record.read_text())
    del settings["formant_range"]  # as a folder written before the setting existed
    record.write_text(json.dumps(settings))
    assert augment_corpus(manifest, tmp_path / "voices", VoiceAugmentation()) == copies
    with pytest.raises(ValueError, match="formant_range = \\[1.0, 1.0\\]"):
        augment_corpus(manifest, tmp_path / "voices", VoiceAugmentation(formant_range=(0.9, 1.1)))


def test_no_transform_copies_the_audio(tmp_path: Path) -> None:
    manifest = tone_corpus(tmp_path / "corpus", [250.0])
    (copy,) = augment_corpus(manifest, tmp_path / "voices", VoiceAugmentation(speed_range=(1.0, 1.0), eq_db=0.0))
    source, _ = sf.read(tmp_path / "corpus" / "audio" / "s0" / "tone.wav")
    wav, _ = sf.read(tmp_path / "voices" / copy.path)
    assert np.abs(wav - source).max() < 1e-4 and copy.duration == 2.0


def test_only_the_split_asked_for_and_a_rerun_keeps_the_files(tmp_path: Path) -> None:
    manifest = tone_corpus(tmp_path / "corpus", [200.0, 300.0])
    entries = read_manifest(manifest)
    write_manifest([entries[0], replace(entries[1], split="test")], manifest)
    copies = augment_corpus(manifest, tmp_path / "voices", VoiceAugmentation())
    assert [c.id for c in copies] == ["s0/tone~v1"]
    written = tmp_path / "voices" / copies[0].path
    stamp = written.stat().st_mtime_ns
    assert augment_corpus(manifest, tmp_path / "voices", VoiceAugmentation()) == copies
    assert written.stat().st_mtime_ns == stamp  # resumed: kept, not rewritten
    assert [c.id for c in augment_corpus(manifest, tmp_path / "all", VoiceAugmentation(), split=None)] == [
        "s0/tone~v1", "s1/tone~v1"]
    assert not list((tmp_path / "voices").glob("**/.*tmp*"))  # atomic writes leave nothing behind


def test_the_copies_merge_with_their_source(tmp_path: Path) -> None:
    manifest = tone_corpus(tmp_path / "corpus", [200.0])
    assert main(["corpus", "augment", str(manifest), str(tmp_path / "voices"), "--copies", "2", "--quiet"]) == 0
    merged = merge_manifests([manifest, tmp_path / "voices" / "manifest.jsonl"], tmp_path / "plus" / "manifest.jsonl")
    assert [e.id for e in merged] == ["s0/tone", "s0/tone~v1", "s0/tone~v2"]
    assert all(e.audio_path(tmp_path / "plus").is_file() for e in merged)


def test_bad_settings_and_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="copies must be at least 1"):
        VoiceAugmentation(copies=0)
    with pytest.raises(ValueError, match="speed_range"):
        VoiceAugmentation(speed_range=(1.2, 0.9))
    with pytest.raises(ValueError, match="eq_db"):
        VoiceAugmentation(eq_db=30.0)
    with pytest.raises(ValueError, match="formant_range"):
        VoiceAugmentation(formant_range=(0.5, 1.0))
    manifest = tone_corpus(tmp_path / "corpus", [200.0])
    with pytest.raises(ValueError, match="no utterances of split 'valid'"):
        augment_corpus(manifest, tmp_path / "voices", VoiceAugmentation(), split="valid")
    with pytest.raises(ValueError, match="holds the source manifest"):
        augment_corpus(manifest, tmp_path / "corpus", VoiceAugmentation())
    augment_corpus(manifest, tmp_path / "made", VoiceAugmentation())
    kept = (tmp_path / "made" / "manifest.jsonl").read_bytes()
    with pytest.raises(ValueError, match="made with eq_db = 10.0, but this run has eq_db = 6.0"):
        augment_corpus(manifest, tmp_path / "made", VoiceAugmentation(eq_db=6.0))  # its kept files would lie
    assert (tmp_path / "made" / "manifest.jsonl").read_bytes() == kept
    (tmp_path / "corpus" / "audio" / "s0" / "tone.wav").write_bytes(b"")
    with pytest.raises(Exception, match="empty"):
        augment_corpus(manifest, tmp_path / "voices", VoiceAugmentation())
    assert not (tmp_path / "voices" / "manifest.jsonl").exists()
