"""recipes/demo/asterisk_voices.py: Asterisk's G.722 prompts come out as 16 kHz WAVs that sound
like what was encoded, one folder per voice, and a second run rewrites nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

G722 = pytest.importorskip("G722", reason="the g722 wheel (dev extra) decodes Asterisk's prompts")
SCRIPT = Path(__file__).resolve().parents[1] / "recipes" / "demo" / "asterisk_voices.py"
RATE = 16000


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_prompts_decode_to_the_tone_that_was_encoded(tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    t = np.arange(RATE) / RATE
    for voice, name, hz in (("en_US_f_Allison", "hello", 440.0), ("en_US_f_Allison", "digits/1", 660.0),
                            ("it_IT_m_Carlo", "ciao", 330.0)):
        path = sounds / voice / f"{name}.g722"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(G722.G722(RATE, 64000).encode((8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)))
    (sounds / "ru_RU_f_IvrvoiceRU").mkdir()
    (sounds / "ru_RU_f_IvrvoiceRU" / "is.g722").write_bytes(b"")  # as in the Debian package: skipped, said so

    result = run(str(tmp_path / "out"), "--sounds", str(sounds))
    assert result.returncode == 0, result.stderr
    assert "is.g722: empty" in result.stderr and "3 prompts written" in result.stdout
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.wav"))
    assert written == ["asterisk-en_US_f_Allison/digits-1.wav", "asterisk-en_US_f_Allison/hello.wav",
                       "asterisk-it_IT_m_Carlo/ciao.wav"]
    for path, hz in (("asterisk-en_US_f_Allison/hello.wav", 440.0), ("asterisk-it_IT_m_Carlo/ciao.wav", 330.0)):
        wav, rate = sf.read(tmp_path / "out" / path)
        assert rate == RATE and len(wav) == RATE
        spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
        assert np.fft.rfftfreq(len(wav), 1 / RATE)[np.argmax(spectrum)] == pytest.approx(hz, abs=2)
        assert np.sqrt(np.mean(wav[RATE // 10:] ** 2)) == pytest.approx(8000 / 32768 / np.sqrt(2), rel=0.05)  # level kept

    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.wav")}
    assert "0 prompts written" in run(str(tmp_path / "out"), "--sounds", str(sounds)).stdout
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.wav")} == before


def test_missing_packages_are_named(tmp_path: Path) -> None:
    result = run(str(tmp_path / "out"), "--sounds", str(tmp_path / "nowhere"))
    assert result.returncode == 1 and "asterisk-core-sounds-en-g722" in result.stderr
