"""The committed models/demo, as `make demo` and every speech command load them by default: its
folders agree with one another and with this code (the pipeline's compatibility checks: codec and
SoundStorm, the decoder/ behind the codec's codebooks, the tokenizer the decoder was trained on),
its decoding.json is the pipeline's default, and it speaks a sentence as audio of a plausible
length and level. The tests of the code use tiny models; this one catches a bundle that the code
no longer reads, or a change of the code that the bundle no longer fits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline

MODELS = Path(__file__).parent.parent / "models" / "demo"


@pytest.fixture(scope="module")
def pipeline() -> Iterator[SpeechPipeline]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread sums in one order: the same seed gives the same audio twice
    yield SpeechPipeline.from_folder(MODELS, precision="fp32")
    torch.set_num_threads(threads)


def test_the_bundled_models_load_together_with_their_decoding_defaults(pipeline: SpeechPipeline) -> None:
    decoding = json.loads((MODELS / "decoding.json").read_text())
    assert pipeline.default_steps == decoding["steps"]
    assert pipeline.default_guidance_scale == decoding["guidance_scale"]
    assert pipeline.default_soft_temperature == decoding["soft_temperature"]
    assert (pipeline.default_window_seconds, pipeline.default_window_context_seconds) == (
        decoding["window_seconds"], decoding["window_context_seconds"])
    assert pipeline.default_spectrum_match == decoding["spectrum_match"] > 0
    assert pipeline.default_prompt_refresh == decoding["prompt_refresh"] == "once"
    # decoder/ decodes SoundStorm's tokens; the codec keeps encoding prompts.
    assert pipeline.decoder is not pipeline.codec
    assert pipeline.decoder.encoder_digest == pipeline.codec.encoder_digest
    assert pipeline.decoder.semantic_vocab_size == pipeline.semantic.vocab_size


def test_the_bundled_models_speak_a_sentence(pipeline: SpeechPipeline) -> None:
    voice = pipeline.default_voice()
    text = "The quick brown fox jumps over the lazy dog."
    wav = pipeline.tts(text, voice, DecodingOptions(seed=0))
    seconds = len(wav) / pipeline.sample_rate
    # Nine words: the synthesizers of the corpus say them in 2.5-3.5 s; ours a little faster.
    assert 1.5 < seconds < 6.0, seconds
    assert np.isfinite(wav).all() and np.abs(wav).max() <= 1.0
    level_db = 20 * np.log10(np.sqrt(np.mean(wav.astype(np.float64) ** 2)) + 1e-12)
    assert -35.0 < level_db < -6.0, level_db  # speech, not silence or noise at full scale
    # The same seed speaks the same audio.
    np.testing.assert_array_equal(pipeline.tts(text, voice, DecodingOptions(seed=0)), wav)
