"""Audio loading, validation and writing (soundstorm.data.audio), and forced alignment
(soundstorm.data.align) on real speech made with flite."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundstorm.data.audio import AudioError, load_audio, resample_audio, rms_db, save_audio, validate_audio


def tone(seconds: float = 1.0, sample_rate: int = 16000, freq: float = 440.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)  # [N]


def peak_hz(wav: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav))
    return float(np.argmax(spectrum) * sample_rate / len(wav))


# ---------------------------------------------------------------- load_audio


@pytest.mark.parametrize(
    ("suffix", "format", "subtype", "tolerance"),
    [(".wav", "WAV", "PCM_16", 1e-4), (".flac", "FLAC", "PCM_16", 1e-4),
     (".ogg", "OGG", "VORBIS", None), (".mp3", "MP3", "MPEG_LAYER_III", None)],
)
def test_load_formats(tmp_path: Path, suffix: str, format: str, subtype: str, tolerance: float | None) -> None:
    wav = tone()
    path = tmp_path / f"a{suffix}"
    sf.write(path, wav, 16000, format=format, subtype=subtype)
    loaded, sample_rate = load_audio(path)
    assert sample_rate == 16000 and loaded.dtype == np.float32 and loaded.ndim == 1
    if tolerance is not None:  # lossless: the same samples
        np.testing.assert_allclose(loaded, wav, atol=tolerance)
    else:  # lossy codecs may pad or trim a frame; the tone survives
        assert abs(len(loaded) - len(wav)) < 0.1 * len(wav)
        assert abs(peak_hz(loaded, 16000) - 440.0) < 5.0


def test_wrong_sample_rate_says_how_to_fix(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(sample_rate=44100), 44100)
    with pytest.raises(AudioError, match=r"expected 16000 Hz audio, got 44100 Hz.*resample") as caught:
        load_audio(path, sample_rate=16000)
    assert caught.value.reason == "wrong sample rate"
    assert str(path) in str(caught.value)


def test_resample_keeps_length_and_pitch(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(seconds=1.0, sample_rate=44100, freq=1000.0), 44100)
    wav, sample_rate = load_audio(path, sample_rate=16000, resample=True)
    assert sample_rate == 16000 and wav.dtype == np.float32
    assert abs(len(wav) - 16000) <= 1
    assert abs(peak_hz(wav, 16000) - 1000.0) < 2.0
    assert resample_audio(wav, 16000, 16000) is wav or np.array_equal(resample_audio(wav, 16000, 16000), wav)


def test_stereo_needs_downmix(tmp_path: Path) -> None:
    left, right = tone(freq=300.0), tone(freq=500.0, amplitude=0.1)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="expected mono audio, got 2 channels.*downmix") as caught:
        load_audio(path)
    assert caught.value.reason == "multi-channel"
    wav, _ = load_audio(path, downmix=True)
    np.testing.assert_allclose(wav, (left + right) / 2, atol=1e-6)


def corrupt_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Broken files of every kind, each with the AudioError reason it must give."""
    good = folder / "good.wav"
    sf.write(good, tone(), 16000, subtype="PCM_16")
    data = good.read_bytes()
    cases = {
        "empty": (b"", "empty"),
        "text": (b"this is a transcript, not audio\n" * 20, "undecodable"),
        "truncated": (data[:1000], "truncated"),
        "header-only": (data[:44], "truncated"),
        "bad-header": (data[:20], "undecodable"),
    }
    files = {}
    for name, (content, reason) in cases.items():
        path = folder / f"{name}.wav"
        path.write_bytes(content)
        files[name] = (path, reason)
    garbage = folder / "garbage.mp3"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    files["garbage-mp3"] = (garbage, "undecodable")
    nan = folder / "nan.wav"
    wav = tone()
    wav[100] = np.nan
    sf.write(nan, wav, 16000, subtype="FLOAT")
    files["nan"] = (nan, "non-finite")
    good.unlink()
    return files


def test_broken_files_name_file_and_reason(tmp_path: Path) -> None:
    for name, (path, reason) in corrupt_files(tmp_path).items():
        with pytest.raises(AudioError) as caught:
            load_audio(path)
        assert caught.value.reason == reason, name
        assert str(path) in str(caught.value), name
    with pytest.raises(AudioError, match="no such file") as caught:
        load_audio(tmp_path / "missing.wav")


# ---------------------------------------------------------------- validate_audio


def test_validate_accepts_speechlike_audio() -> None:
    noise = np.random.default_rng(0).normal(0, 0.05, 16000).astype(np.float32)
    assert validate_audio(tone() + noise, 16000) is None
    # A full-scale sine grazes +-1 without sitting there: not clipped.
    assert validate_audio(tone(amplitude=1.0), 16000) is None


@pytest.mark.parametrize(
    ("wav", "kind"),
    [
        (tone(seconds=0.2), "too short"),
        (tone(seconds=31.0), "too long"),
        (np.zeros(16000, np.float32), "silent"),
        (tone(amplitude=1e-4), "silent"),  # -83 dB
        (np.sign(tone(amplitude=1.0)).astype(np.float32), "clipped"),
        (np.clip(tone(amplitude=3.0), -1, 1), "clipped"),
        (np.full(16000, np.inf, np.float32), "non-finite"),
    ],
    ids=["short", "long", "zeros", "quiet", "square", "overdriven", "inf"],
)
def test_validate_rejects(wav: np.ndarray, kind: str) -> None:
    reason = validate_audio(wav, 16000)
    assert reason is not None and reason.startswith(kind + ": "), reason


def test_validate_thresholds_are_parameters() -> None:
    assert validate_audio(tone(seconds=0.2), 16000, min_seconds=0.1) is None
    assert validate_audio(tone(amplitude=1e-4), 16000, silence_db=-90.0) is None
    assert rms_db(tone(amplitude=1.0)) == pytest.approx(-3.01, abs=0.01)


# ---------------------------------------------------------------- save_audio


def test_save_round_trip_clips_and_leaves_no_temporary(tmp_path: Path) -> None:
    wav = tone()
    wav[:10] = 2.0  # out of range: clipped, not wrapped around to negative
    path = tmp_path / "out" / "a.wav"
    save_audio(path, wav, 16000)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    loaded, _ = load_audio(path)
    assert loaded[:10].min() > 0.99
    np.testing.assert_allclose(loaded[10:], wav[10:], atol=1e-4)
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.wav"]


def test_save_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="wav"):
        save_audio(tmp_path / "a.flac", tone(), 16000)
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "a.wav", np.full(100, np.nan, np.float32), 16000)
    assert not (tmp_path / "a.wav").exists()


# ---------------------------------------------------------------- forced alignment

HELLO = "Hello world, this is a test."


def flite(text: str, path: Path, voice: str = "slt") -> Path:
    """Speak `text` into `path` with flite, or skip the test."""
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (apt-get install flite, or make system-deps)")
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def hello_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, int]:
    path = flite(HELLO, tmp_path_factory.mktemp("speech") / "hello.wav")
    return load_audio(path)


def check_phones(phones: tuple, duration: float) -> None:
    assert phones, "no phones"
    previous_end = 0.0
    for phone in phones:
        assert previous_end - 1e-9 <= phone.start <= phone.end <= duration + 1e-9, phone
        previous_end = phone.end
    assert phones[-1].end > 0.8 * duration


def test_align_flite_speech(hello_wav: tuple[np.ndarray, int]) -> None:
    pytest.importorskip("pocketsphinx")
    from soundstorm.data.align import align_phones

    wav, sample_rate = hello_wav
    phones = align_phones(wav, sample_rate, HELLO)
    check_phones(phones, len(wav) / sample_rate)
    speech = [p.phone for p in phones if p.phone != "pau"]
    # "hello world ... test": the aligner picks among the dictionary's pronunciations of hello
    # (hh ah l ow / hh eh l ow), so only check what they share.
    assert speech[0] == "hh" and speech[2:4] == ["l", "ow"] and speech[-4:] == ["t", "eh", "s", "t"]
    assert all(p.phone == p.phone.lower() for p in phones)


def test_align_resamples(hello_wav: tuple[np.ndarray, int]) -> None:
    pytest.importorskip("pocketsphinx")
    from soundstorm.data.align import align_phones

    wav, sample_rate = hello_wav
    wav24 = resample_audio(wav, sample_rate, 24000)
    phones16 = align_phones(wav, sample_rate, HELLO)
    phones24 = align_phones(wav24, 24000, HELLO)
    check_phones(phones24, len(wav24) / 24000)
    assert [p.phone for p in phones24] == [p.phone for p in phones16]
    # The same speech, so the same timings to within a couple of 10 ms frames.
    assert max(abs(a.start - b.start) for a, b in zip(phones16, phones24)) <= 0.03


def test_align_failures_say_why(hello_wav: tuple[np.ndarray, int]) -> None:
    pytest.importorskip("pocketsphinx")
    from soundstorm.data.align import AlignmentError, align_phones

    wav, sample_rate = hello_wav
    with pytest.raises(AlignmentError, match="holds no words"):
        align_phones(wav, sample_rate, " ... ")
    with pytest.raises(AlignmentError, match="silent"):
        align_phones(np.zeros(sample_rate, np.float32), sample_rate, HELLO)
    noise = np.random.default_rng(0).normal(0, 0.1, 3 * sample_rate).astype(np.float32)
    with pytest.raises(AlignmentError, match="noise, or says something else|fits the audio poorly"):
        align_phones(noise, sample_rate, HELLO)
    # The transcript of other speech: the words cannot be found, or only with a poor score.
    with pytest.raises(AlignmentError, match="says something else|fits the audio poorly"):
        align_phones(wav, sample_rate, "Glue the sheet to the dark blue background.")
    with pytest.raises(AlignmentError, match="says something else|fits the audio poorly"):
        align_phones(wav, sample_rate, HELLO + " And then a great deal more that nobody ever said.")
    # The decoder recovers for the next utterance.
    check_phones(align_phones(wav, sample_rate, HELLO), len(wav) / sample_rate)


def test_align_out_of_dictionary_words(tmp_path: Path) -> None:
    pytest.importorskip("pocketsphinx")
    from soundstorm.data.align import align_phones

    if shutil.which("t2p") is None:
        pytest.skip("flite's t2p is not installed")
    text = "Zbigniew bought 42 quokkas."
    wav, sample_rate = load_audio(flite(text, tmp_path / "oov.wav"))
    phones = align_phones(wav, sample_rate, text)
    check_phones(phones, len(wav) / sample_rate)
    assert [p.phone for p in phones if p.phone != "pau"][:2] == ["z", "b"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_align_espeak_speech(tmp_path: Path) -> None:
    """espeak-ng's formant voices are far from the acoustic model's training speech, yet forced
    alignment (unlike free recognition) still finds every word."""
    pytest.importorskip("pocketsphinx")
    from soundstorm.data.align import align_phones

    path = tmp_path / "espeak.wav"
    subprocess.run(["espeak-ng", "-w", str(path), HELLO], check=True, capture_output=True,
                   env={**os.environ, "LC_ALL": "C.UTF-8"})
    wav, sample_rate = load_audio(path)  # 22050 Hz
    check_phones(align_phones(wav, sample_rate, HELLO), len(wav) / sample_rate)
