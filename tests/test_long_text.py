"""Over-long text: a sentence longer than any the text-to-semantic model was trained on is read in
clauses (soundstorm.data.sentences.split_long, SpeechPipeline.pieces), in text to speech and in
a dialogue's turns. Read whole, run-on sentences of 30-45 words lost the bundled models a third
more of their characters (docs/long_form.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soundstorm.data.sentences import MAX_WORDS, split_long
from soundstorm.text.pipeline import TURN_PAUSE_SECONDS, DecodingOptions, SpeechPipeline
from tests.speech_models import needs_flite, write_tiny_models

WORD = st.sampled_from(["cat", "dog,", "sat", "on", "mat;", "and", "ran", "far:", "away", "the"])


@given(st.lists(WORD, min_size=1, max_size=90), st.integers(1, 25))
def test_pieces_keep_every_word_in_order_and_none_is_too_long(words: list[str], max_words: int) -> None:
    pieces = split_long(" ".join(words), max_words)
    assert " ".join(pieces).split() == words
    assert all(1 <= len(piece.split()) <= max_words for piece in pieces)
    if len(words) <= max_words:
        assert pieces == [" ".join(words)]


def test_a_run_on_sentence_is_cut_after_the_clause_mark_nearest_its_middle() -> None:
    first = "The old man walked slowly down the long road toward the quiet village,"  # 13 words
    second = "and the dogs of every farm he passed came out to bark at him."  # 14 words
    assert split_long(f"{first} {second}") == [first, second]
    # A mark in the outer quarters is passed over: no piece is a stray word.
    words = "Well, " + " ".join(["word"] * 29)
    assert [len(p.split()) for p in split_long(words)] == [15, 15]
    assert split_long("  ") == [] and split_long("Short one.") == ["Short one."]
    with pytest.raises(ValueError, match="max_words must be at least 1"):
        split_long("a b", 0)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> SpeechPipeline:
    return SpeechPipeline.from_folder(write_tiny_models(tmp_path_factory.mktemp("models")))


RUN_ON = ("The old man walked slowly down the long road toward the quiet village in the hills, and the dogs of "
          "every farm he passed came out to bark at him until he reached the gate.")  # 34 words


class TextSpy:
    """Records every text-to-semantic call's text and context."""

    def __init__(self, pipeline: SpeechPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str | None, int]] = []
        original = pipeline.text_to_semantic

        original_batch = pipeline.texts_to_semantic

        def spy(text, voice=None, context=None, options=None, salt=0):  # noqa: ANN001, ANN202
            self.calls.append((text, None if context is None else context[0], salt))
            return original(text, voice, context=context, options=options, salt=salt)

        def spy_batch(texts, voices, options=None, salts=None):  # noqa: ANN001, ANN202
            self.calls += [(text, None, salt) for text, salt in zip(texts, salts)]
            return original_batch(texts, voices, options, salts)

        monkeypatch.setattr(pipeline, "text_to_semantic", spy)
        monkeypatch.setattr(pipeline, "texts_to_semantic", spy_batch)


@needs_flite
def test_text_to_speech_reads_a_run_on_sentence_in_clauses(pipeline: SpeechPipeline,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    spy = TextSpy(pipeline, monkeypatch)
    plan = pipeline.plan_tts(f"Hello there. {RUN_ON}", pipeline.default_voice(), DecodingOptions(seed=1))
    assert [text for text, _, _ in spy.calls] == ["Hello there.", *split_long(RUN_ON)]
    assert len(split_long(RUN_ON)) == 2 and len(plan.segments) == 3 and plan.pauses == [0.0] * 3
    assert pipeline.max_words == MAX_WORDS


@needs_flite
@pytest.mark.parametrize("turn_context", ["none", "previous"])
def test_a_long_dialogue_turn_is_read_in_pieces_and_a_short_one_whole(pipeline: SpeechPipeline,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      turn_context: str) -> None:
    spy = TextSpy(pipeline, monkeypatch)
    voice = pipeline.default_voice()
    turns = [("A", "Good morning. Did you sleep well?"), ("B", RUN_ON), ("A", "I see.")]
    plan = pipeline.plan_dialogue(turns, {"A": voice, "B": voice}, DecodingOptions(seed=2, turn_context=turn_context))
    first, second = split_long(RUN_ON)
    texts = ["Good morning. Did you sleep well?", first, second, "I see."]
    if turn_context == "previous":
        # The short two-sentence turn stays whole; the long turn's first piece continues the turn
        # before it, its second continues nothing; the next turn continues the long turn's last piece.
        assert spy.calls == [(texts[0], None, 0), (first, texts[0], 2), (second, None, 4), ("I see.", second, 6)]
    else:  # every piece alone
        assert spy.calls == [(text, None, 2 * i) for i, text in enumerate(texts)]
    assert plan.pauses == [TURN_PAUSE_SECONDS, 0.0, TURN_PAUSE_SECONDS, 0.0]
    assert [segment.seed for segment in plan.segments] == [2 * 1_000_003 + salt for salt in (1, 3, 5, 7)]

