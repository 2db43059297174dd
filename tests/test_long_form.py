"""Long-form decoding: a segment longer than the window is decoded window by window, each after
the voice prompt and the end of the window before (SpeechPipeline.acoustic_batch). Tiny random
models (tests/speech_models.py); the bug it guards against: one pass over a minute, far past the
crops SoundStorm trains on, lost the bundled model the voice and the words (docs/long_form.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from soundstorm import SoundStorm, SoundStormConfig
from soundstorm.text.commands import add_decoding_arguments, decoding_options
from soundstorm.text.pipeline import DecodingOptions, SpeechPipeline, Trace, window_spans
from tests.speech_models import needs_flite, write_tiny_models

# The tiny models: 25 semantic tokens/s, 2 frames per token. A window of 0.2 s is 5 tokens, a
# context of 0.08 s 2 tokens.
WINDOWED = DecodingOptions(seed=5, window_seconds=0.2, window_context_seconds=0.08)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("models"), text_model=False)


@given(st.integers(1, 400), st.integers(0, 60))
def test_windows_cover_the_tokens_in_order_none_longer_than_asked_and_none_a_short_remainder(tokens: int,
                                                                                           window: int) -> None:
    spans = window_spans(tokens, window)
    assert spans[0][0] == 0 and spans[-1][1] == tokens
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, in order
    sizes = [end - start for start, end in spans]
    if window == 0 or tokens <= window:
        assert spans == [(0, tokens)]
    else:
        assert max(sizes) <= window and len(spans) == -(-tokens // window)  # as few as fit
        assert max(sizes) - min(sizes) <= 1


class GenerateSpy:
    """Records what each of SoundStorm's decoding runs was given and made."""

    def __init__(self, model: SoundStorm) -> None:
        self.calls: list[dict] = []
        self.generate = model.generate
        model.generate = self  # type: ignore[method-assign]

    def __call__(self, **kwargs):  # noqa: ANN003, ANN204
        out = self.generate(**kwargs)
        self.calls.append({**kwargs, "codes": out[0] if isinstance(out, tuple) else out})
        return out


@needs_flite
def test_each_window_continues_the_one_before_after_the_voice_prompt(models: Path) -> None:
    pipeline = SpeechPipeline.from_folder(models)
    voice = pipeline.default_voice()
    r, Q, P = pipeline.ratio, 4, len(voice.semantic)
    long, short = torch.arange(17) % 16, torch.arange(3) % 16
    segments = [pipeline._segment(long, voice, WINDOWED, 0), pipeline._segment(short, voice, WINDOWED, 1)]
    windows = pipeline.window_plan(segments[0], WINDOWED)
    assert [(end - start, context) for start, end, context in windows] == [(4, 0), (4, 2), (5, 2), (4, 2)]
    spy = GenerateSpy(pipeline.soundstorm)
    out = pipeline.acoustic_batch(segments, WINDOWED)
    assert [call["semantic_tokens"].shape[0] for call in spy.calls] == [2, 1, 1, 1]  # the short one: round 0 only
    assert out[0].codes.shape == (17 * r, Q) and out[1].codes.shape == (3 * r, Q)
    for call, (start, end, context) in zip(spy.calls, windows):
        made = out[0].codes[start * r: end * r]
        # Its semantic tokens: the voice's, the context's, then the window's own.
        assert torch.equal(call["semantic_tokens"][0, : P + context + end - start],
                           torch.cat([voice.semantic, long[start - context: end]]))
        # Its prompt: the voice's codes, then the codes made for the context (every level decoded here).
        prompt = call["prompt_codes"][0, : (P + context) * r]
        assert torch.equal(prompt[: P * r], voice.codes)
        assert torch.equal(prompt[P * r:], out[0].codes[(start - context) * r: start * r])
        assert int(call["prompt_lengths"][0]) == (P + context) * r
        # What the run made after its prompt is what the segment's output holds there.
        assert torch.equal(call["codes"][0, (P + context) * r: (P + context + end - start) * r], made)


@needs_flite
def test_a_context_from_fewer_levels_than_the_model_has_is_masked_above_them(models: Path) -> None:
    pipeline = SpeechPipeline.from_folder(models)
    voice = pipeline.default_voice()
    r, mask_id, P = pipeline.ratio, pipeline.soundstorm.config.mask_id, len(voice.semantic)
    options = DecodingOptions(seed=5, steps=[2, 1], window_seconds=0.2, window_context_seconds=0.08)
    spy = GenerateSpy(pipeline.soundstorm)
    out = pipeline.acoustic_batch([pipeline._segment(torch.arange(9) % 16, voice, options, 0)], options)[0]
    assert out.codes.shape == (18, 2) and len(spy.calls) == 2
    context = spy.calls[1]["prompt_codes"][0, P * r: (P + 2) * r]  # [4 frames, Q]
    assert torch.equal(context[:, :2], out.codes[4:8]) and bool((context[:, 2:] == mask_id).all())


@needs_flite
def test_a_windowed_segment_is_the_same_in_any_batch_and_a_short_one_is_decoded_as_before(models: Path) -> None:
    pipeline = SpeechPipeline.from_folder(models)
    voice = pipeline.default_voice()
    plans = [pipeline.plan_speak(torch.arange(n) % 16, voice, WINDOWED) for n in (17, 11, 4)]
    together = pipeline.render(plans)
    for plan, wav in zip(plans, together):
        assert np.array_equal(pipeline.render([plan])[0], wav)
    one_pass = DecodingOptions(seed=5, window_seconds=0)  # the segment of 4 tokens fits one window
    assert np.array_equal(pipeline.render([pipeline.plan_speak(torch.arange(4) % 16, voice, one_pass)])[0], together[2])


@needs_flite
def test_the_trace_of_a_windowed_segment_covers_its_frames_pass_by_pass(models: Path) -> None:
    pipeline = SpeechPipeline.from_folder(models)
    voice = pipeline.default_voice()
    options = DecodingOptions(seed=5, steps=[3, 1, 1, 1], window_seconds=0.2, window_context_seconds=0.08)
    plans = [pipeline.plan_speak(torch.arange(n) % 16, voice, options) for n in (13, 4)]
    traces = [Trace(), Trace()]
    pipeline.render(plans, traces=traces)
    grid = traces[0].reveal_grid()  # windows of 4, 5, 4 tokens: three runs of 6 passes
    assert grid.shape == traces[0].codes.shape == (26, 4) and len(traces[0].passes) == 18
    assert int(grid.min()) >= 1 and int(grid.max()) <= 18
    levels = torch.tensor([traces[0].passes[int(k) - 1].level for k in grid.flatten()]).view(grid.shape)
    assert torch.equal(levels, torch.arange(4).expand_as(levels))
    runs = (grid[:, 0] - 1) // 6  # the run that revealed each frame's first level: window by window
    assert runs.tolist() == [0] * 8 + [1] * 10 + [2] * 8
    assert traces[1].reveal_grid().shape == (8, 4)


def test_a_prompt_may_hold_mask_only_at_levels_past_those_decoded() -> None:
    torch.manual_seed(0)
    model = SoundStorm(SoundStormConfig(codebook_size=16, num_quantizers=4, semantic_vocab_size=8, dim=32, depth=1,
                                        heads=2)).eval()
    semantic = torch.randint(0, 8, (1, 6))
    prompt = torch.randint(0, 16, (1, 4, 4))
    prompt[:, :, 2:] = model.config.mask_id
    codes = model.generate(semantic, prompt_codes=prompt, steps=[2, 1])
    assert torch.equal(codes[:, :4], prompt[:, :, :2])
    with pytest.raises(ValueError, match=r"prompt_codes must hold ids in \[0, 16\)"):
        model.generate(semantic, prompt_codes=prompt, steps=[2, 1, 1])
    prompt[0, 0, 3] = 17
    with pytest.raises(ValueError, match=r"past the 2 decoded levels must hold ids in \[0, 17\)"):
        model.generate(semantic, prompt_codes=prompt, steps=[2, 1])


@needs_flite
def test_the_window_comes_from_the_request_the_models_folder_or_the_default(models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    shutil.copytree(models, folder)
    pipeline = SpeechPipeline.from_folder(folder)
    assert (pipeline.default_window_seconds, pipeline.default_window_context_seconds) == (6.0, 1.0)
    (folder / "decoding.json").write_text('{"window_seconds": 4, "window_context_seconds": 0.5}')
    pipeline = SpeechPipeline.from_folder(folder)
    assert (pipeline.default_window_seconds, pipeline.default_window_context_seconds) == (4.0, 0.5)
    segment = pipeline._segment(torch.arange(250) % 16, pipeline.default_voice(), DecodingOptions(), 0)
    assert [(s, e, c) for s, e, c in pipeline.window_plan(segment, DecodingOptions())] == \
        [(0, 83, 0), (83, 167, 12), (167, 250, 12)]  # 100 tokens a window at most, 12 of context
    assert pipeline.window_plan(segment, DecodingOptions(window_seconds=0)) == [(0, 250, 0)]
    for bad, message in (('{"window_seconds": -1}', "window seconds must be a number >= 0"),
                         ('{"window_seconds": 2, "window_context_seconds": 2}', "must be shorter than its window"),
                         ('{"window_context_seconds": "1"}', "context seconds must be a number")):
        (folder / "decoding.json").write_text(bad)
        with pytest.raises(ValueError, match=message):
            SpeechPipeline.from_folder(folder)
    with pytest.raises(ValueError, match="the window seconds must be a number >= 0"):
        pipeline.window_plan(segment, DecodingOptions(window_seconds=float("nan")))


def test_the_window_is_a_command_line_option() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_decoding_arguments(parser)
    options = decoding_options(parser.parse_args(["--window-seconds", "8", "--window-context-seconds", "0"]))
    assert (options.window_seconds, options.window_context_seconds) == (8.0, 0.0)
    options = decoding_options(parser.parse_args([]))
    assert (options.window_seconds, options.window_context_seconds) == (None, None)
