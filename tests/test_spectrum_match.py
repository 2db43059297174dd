"""The post-filter towards the voice prompt's long-term spectrum (soundstorm/text/spectrum_match.py),
and the pipeline's use of it: one filter per voice in a request, off at strength 0."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline
from soundstorm.text.spectrum_match import (MAX_GAIN_DB, apply_filter, fir_filter, long_term_spectrum,
                                            match_spectrum, matching_gain, smooth)
from tests.speech_models import needs_flite, write_tiny_models

SR = 16000


def tilted_noise(seconds: float, tilt_db_per_octave: float, seed: int) -> np.ndarray:
    """Gaussian noise whose spectrum rises (or falls) by tilt dB an octave above 500 Hz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SR), 500.0)
    spectrum *= 10 ** (tilt_db_per_octave * np.log2(freqs / 500.0) / 20)
    wav = np.fft.irfft(spectrum, n)
    return (0.1 * wav / np.sqrt(np.mean(wav ** 2))).astype(np.float32)


def smoothed_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in dB of two signals' smoothed long-term spectra, 200 Hz to 7 kHz."""
    sa, sb = (smooth(long_term_spectrum([x], SR), SR) for x in (a, b))  # type: ignore[arg-type]
    freqs = np.linspace(0, SR / 2, len(sa))
    band = (freqs > 200) & (freqs < 7000)
    return float(np.mean(np.abs(sa - sb)[band]))


def test_the_filter_moves_the_spectrum_towards_the_prompt_by_the_share_asked() -> None:
    prompt, speech = tilted_noise(3.0, -2.0, 0), tilted_noise(2.0, 1.0, 1)  # within the clip at every frequency
    before = smoothed_distance(prompt, speech)
    half, full = (match_spectrum([speech], prompt, SR, s)[0] for s in (0.5, 1.0))
    assert before > 2.0
    assert smoothed_distance(prompt, full) < 0.1 * before  # all of it: the prompt's
    # Half of it: half-way, on the decibel scale, in every band.
    assert abs(smoothed_distance(prompt, half) - 0.5 * before) < 0.15 * before
    for out in (half, full):
        assert out.dtype == np.float32 and out.shape == speech.shape
        assert abs(np.sqrt(np.mean(out ** 2)) / np.sqrt(np.mean(speech ** 2)) - 1) < 0.05  # the power kept


@settings(max_examples=25, deadline=None)
@given(st.floats(-30, 30), st.floats(0, 1))
def test_the_gain_never_exceeds_the_limit_and_keeps_the_speech_power(offset: float, strength: float) -> None:
    rng = np.random.default_rng(0)
    source = rng.normal(-40, 10, 513)
    target = source + offset + rng.normal(0, 20, 513)
    gain = matching_gain(target, source, SR, strength)
    power = 10 ** (source / 10)
    assert np.isclose(np.sum(power * 10 ** (gain / 10)), np.sum(power))  # the power kept
    # Clipped to the limit, then shifted as one: never a wider range than the limit, or than the share asked.
    assert np.ptp(gain) <= min(2 * MAX_GAIN_DB, strength * np.ptp(smooth(target, SR) - smooth(source, SR))) + 1e-9


def test_the_filter_is_linear_phase_with_its_delay_removed() -> None:
    taps = fir_filter(np.zeros(513))  # 0 dB everywhere: the identity, up to the window's smoothing
    assert len(taps) % 2 == 1 and np.allclose(taps, taps[::-1])
    impulse = np.zeros(4000, dtype=np.float32)
    impulse[2000] = 1.0
    out = apply_filter(impulse, taps)
    assert int(np.argmax(np.abs(out))) == 2000 and np.isclose(out[2000], 1.0, atol=1e-6)


def test_strength_zero_silence_and_too_short_audio_come_back_unchanged() -> None:
    prompt, speech = tilted_noise(3.0, -4.0, 0), tilted_noise(1.0, 2.0, 1)
    assert match_spectrum([speech], prompt, SR, 0.0)[0] is speech
    silent, short = np.zeros(SR, dtype=np.float32), speech[:100]
    assert match_spectrum([silent], prompt, SR, 0.5)[0] is silent
    assert match_spectrum([short], prompt, SR, 0.5)[0] is short
    assert match_spectrum([speech], np.zeros(SR, dtype=np.float32), SR, 0.5)[0] is speech
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
        match_spectrum([speech], prompt, SR, 1.5)


def test_a_voice_s_speech_gets_one_filter_from_all_of_it() -> None:
    prompt, a, b = tilted_noise(3.0, -4.0, 0), tilted_noise(1.0, 2.0, 1), tilted_noise(1.5, 2.0, 2)
    together = match_spectrum([a, b], prompt, SR, 0.5)
    taps = fir_filter(matching_gain(long_term_spectrum([prompt], SR), long_term_spectrum([a, b], SR),  # type: ignore[arg-type]
                                    SR, 0.5))
    assert np.allclose(together[0], apply_filter(a, taps)) and np.allclose(together[1], apply_filter(b, taps))
    assert not np.allclose(together[0], match_spectrum([a], prompt, SR, 0.5)[0])  # not a's own filter


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("models"), text_model=False)


@needs_flite
def test_the_pipeline_filters_each_voice_towards_its_own_prompt(models: Path) -> None:
    pipeline = SpeechPipeline.from_folder(models)
    assert pipeline.default_spectrum_match == 0.0  # no decoding.json: off
    voices = [pipeline.voice(models / "voices" / "default.wav"), pipeline.voice(models / "voices" / "awb.wav")]
    semantic = [torch.arange(40) % 16, (torch.arange(30) * 7) % 16]
    pause = 0.1

    def speak(strength: float | None) -> list[np.ndarray]:
        """One plan per voice: its segment twice, a pause between."""
        options = DecodingOptions(seed=3, spectrum_match=strength)
        plans = [pipeline.plan_speak(s, v, options) for v, s in zip(voices, semantic)]
        for plan in plans:
            plan.segments.append(plan.segments[0])
            plan.pauses = [pause, 0.0]
        return pipeline.render(plans)

    plain, off, on = speak(None), speak(0.0), speak(1.0)
    gap = round(pause * pipeline.sample_rate)
    for voice, before, unfiltered, after in zip(voices, plain, off, on):
        assert np.array_equal(before, unfiltered) and after.shape == before.shape
        # One filter for the voice's two segments, from both: the pause stays silent.
        n = (len(before) - gap) // 2
        segment = before[:n]
        prompt = voice.recording[0, 0].numpy()  # type: ignore[index]
        expected = match_spectrum([segment, segment], prompt, pipeline.sample_rate, 1.0)
        assert np.allclose(after, np.concatenate([expected[0], np.zeros(gap, np.float32), expected[1]]), atol=1e-6)
        assert smoothed_distance(prompt, after) < smoothed_distance(prompt, before)
    with pytest.raises(ValueError, match=r"spectrum_match must be a number in \[0, 1\]"):
        speak(2.0)


@needs_flite
def test_decoding_json_sets_the_default_and_a_bad_one_is_refused(models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    shutil.copytree(models, folder)
    (folder / "decoding.json").write_text('{"spectrum_match": 0.5}')
    assert SpeechPipeline.from_folder(folder).default_spectrum_match == 0.5
    (folder / "decoding.json").write_text('{"spectrum_match": -1}')
    with pytest.raises(ValueError, match=r"the default spectrum match must be a number in \[0, 1\].*-1"):
        SpeechPipeline.from_folder(folder)


def test_a_bad_strength_is_refused_when_the_options_are_made_before_any_model_runs() -> None:
    for bad in (-0.1, 1.01, float("nan"), True):
        with pytest.raises(ValueError, match=r"spectrum_match must be a number in \[0, 1\]"):
            DecodingOptions(spectrum_match=bad)  # type: ignore[arg-type]
    assert DecodingOptions(spectrum_match=1).spectrum_match == 1
