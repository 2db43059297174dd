"""Formant shift at a constant pitch: the envelope moves by the factor, the harmonics stay, and
length and level are kept."""

from __future__ import annotations

import numpy as np
import pytest

from soundstorm.data.formant import formant_shifted, warped

RATE = 16000
PITCH = 120.0


def vowel(formant_hz: float, seconds: float = 1.0, pitch: float = PITCH) -> np.ndarray:
    """Harmonics of `pitch` whose amplitudes follow one broad resonance at formant_hz: a vowel with
    one formant, whose pitch and formant can each be read from its spectrum."""
    t = np.arange(int(seconds * RATE)) / RATE
    harmonics = np.arange(1, int(7000 / pitch))
    level_db = np.maximum(-30 * ((harmonics * pitch - formant_hz) / 600) ** 2, -40.0)  # -30 dB at +-600 Hz, 40 dB deep
    amplitudes = 10 ** (level_db / 20)
    wav = (amplitudes[:, None] * np.sin(2 * np.pi * harmonics[:, None] * pitch * t)).sum(0)
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


def harmonic_powers(wav: np.ndarray, pitch: float = PITCH) -> tuple[np.ndarray, float]:
    """Powers at the harmonics of `pitch` of the middle of wav, and the share of its energy within
    10 Hz of one of them."""
    middle = wav[len(wav) // 4 : 3 * len(wav) // 4]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)))) ** 2
    frequencies = np.fft.rfftfreq(len(middle), 1 / RATE)
    nearest = np.round(frequencies / pitch)
    on_harmonic = (np.abs(frequencies - nearest * pitch) <= 10) & (nearest >= 1)
    powers = np.array([spectrum[nearest == h].max() for h in range(1, int(7000 / pitch))])
    return powers, float(spectrum[on_harmonic].sum() / spectrum.sum())


def formant_centre(wav: np.ndarray, pitch: float = PITCH) -> float:
    """The power-weighted mean frequency of the harmonics within 10 dB of the strongest."""
    powers, _ = harmonic_powers(wav, pitch)
    strong = powers > powers.max() / 10
    frequencies = (np.arange(len(powers)) + 1) * pitch
    return float((frequencies[strong] * powers[strong]).sum() / powers[strong].sum())


@pytest.mark.parametrize("factor", [0.85, 1.2])
@pytest.mark.parametrize("pitch", [100.0, 125.0, 200.0])  # 125 and 200 Hz: harmonics on the FFT's bins
def test_the_formant_moves_by_the_factor_and_the_pitch_stays(factor: float, pitch: float) -> None:
    source = vowel(1000.0, pitch=pitch)
    shifted = formant_shifted(source, RATE, factor)
    assert shifted.dtype == np.float32 and shifted.shape == source.shape
    _, on_harmonics = harmonic_powers(shifted, pitch)
    assert formant_centre(shifted, pitch) == pytest.approx(formant_centre(source, pitch) * factor, rel=0.03)
    assert on_harmonics > 0.97  # no energy between the harmonics: the pitch did not move
    assert np.sqrt(np.mean(shifted.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(np.mean(source.astype(np.float64) ** 2)), rel=1e-3)


def test_up_then_down_gives_the_envelope_back() -> None:
    source = vowel(1440.0)  # on a harmonic, so that the peak is one harmonic
    back = formant_shifted(formant_shifted(source, RATE, 1.25), RATE, 1 / 1.25)
    before, _ = harmonic_powers(source)
    after, _ = harmonic_powers(back)
    assert np.argmax(after) == np.argmax(before)
    strong = before > before.max() * 1e-2  # the harmonics within 20 dB of the peak
    assert np.abs(10 * np.log10(after[strong] / before[strong])).max() < 3.0


def test_factor_one_and_empty_audio_are_returned_as_they_are() -> None:
    source = vowel(800.0)
    assert formant_shifted(source, RATE, 1.0) is source
    assert formant_shifted(np.zeros(0, np.float32), RATE, 1.2).shape == (0,)


def test_silence_stays_silent_and_a_loud_result_does_not_clip() -> None:
    silence = np.zeros(RATE, np.float32)
    assert np.array_equal(formant_shifted(silence, RATE, 1.2), silence)
    loud = np.concatenate([np.zeros(RATE // 2, np.float32), vowel(600.0) / 0.3 * 0.98])  # silence, then near full scale
    out = formant_shifted(loud, RATE, 1.3)
    assert np.isfinite(out).all() and np.abs(out).max() <= 0.99 + 1e-6


def test_warped_moves_what_lay_at_a_bin_to_factor_times_it() -> None:
    envelope = np.zeros((2, 513))
    envelope[:, 100] = 1.0
    assert np.argmax(warped(envelope, 1.2)[0]) == 120 and np.argmax(warped(envelope, 0.8)[1]) == 80
    assert np.array_equal(warped(envelope, 1.0), envelope)
    assert warped(np.arange(513.0)[None], 0.5)[0, -1] == 512.0  # above Nyquist: the last bin, held


def test_a_factor_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"formant factor must be in \[0.5, 2\]"):
        formant_shifted(vowel(800.0), RATE, 3.0)
