"""Scoring semantic tokens against a text's phones: the alignment is the best of all monotonic
ones (brute force on small cases), a token sequence that spells the text wins over ones that
drop, swap or garble phones, and the pipeline keeps the candidate the scorer picks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm.text.phone_score import FLOOR, PhoneScorer
from soundstorm.text.phonemes import CMU_PHONES
from soundstorm.text.symbols import TextSymbols

PHONES = ("sil", *(p.lower() for p in CMU_PHONES), "ax")  # the content encoder's inventory


def one_hot_scorer() -> PhoneScorer:
    """Token i says phone i and nothing else."""
    return PhoneScorer(torch.eye(len(PHONES)), PHONES, TextSymbols("phonemes"))


def spell(scorer: PhoneScorer, phones: list[str], frames: int = 2, silence: int = 2) -> torch.Tensor:
    index = {p: i for i, p in enumerate(PHONES)}
    tokens = [0] * silence
    for phone in phones:
        tokens += [index[phone]] * frames
    return torch.tensor(tokens + [0] * silence)


def test_a_spelling_of_the_text_scores_best_and_has_no_phone_errors() -> None:
    scorer = one_hot_scorer()
    text = "The cat sat on the mat."
    wanted = [p.lower() for p in scorer.targets(text)]
    exact = spell(scorer, wanted)
    assert scorer.score(exact, text) == pytest.approx(0.0, abs=1e-5)
    assert scorer.phone_errors(exact, text) == (0, len(wanted))

    dropped = spell(scorer, wanted[:3] + wanted[4:])
    swapped = spell(scorer, wanted[:2] + [wanted[3], wanted[2]] + wanted[4:])
    garbled = spell(scorer, ["s"] * len(wanted))
    scores = [scorer.score(t, text) for t in (exact, dropped, swapped, garbled)]
    assert scores[0] > max(scores[1:]) and scores[3] == min(scores)
    assert scorer.phone_errors(dropped, text)[0] == 1
    assert scorer.phone_errors(swapped, text)[0] == 2
    assert scorer.best([garbled, dropped, exact, swapped], text) == 2
    assert scorer.score(torch.tensor([], dtype=torch.long), text) == -np.inf
    assert scorer.score(exact[: len(wanted) - 1], text) == -np.inf  # fewer tokens than phones


def test_an_unstressed_ah_may_be_heard_as_a_schwa() -> None:
    scorer = one_hot_scorer()
    text = "about"  # AH B AW T
    assert scorer.targets(text)[0] == "AH"
    for first in ("ah", "ax"):
        tokens = spell(scorer, [first, "b", "aw", "t"])
        assert scorer.score(tokens, text) == pytest.approx(0.0, abs=1e-5)
        assert scorer.phone_errors(tokens, text)[0] == 0


def brute_force(emissions: np.ndarray) -> float:
    """The best path over states [S, J] by enumeration: start in 0 or 1, end in J - 1 or J - 2,
    each step stays, moves one state on, or skips an optional silence between two phones."""
    S, J = emissions.shape
    best = -np.inf
    for moves in itertools.product((0, 1, 2), repeat=S - 1):
        for start in (0, 1):
            state, total, ok = start, emissions[0, start], True
            for t, move in enumerate(moves, start=1):
                if move == 2 and state % 2 == 0:  # only a phone may skip the silence after it
                    ok = False
                    break
                state += move
                if state >= J:
                    ok = False
                    break
                total += emissions[t, state]
            if ok and state >= J - 2:
                best = max(best, total)
    return best


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 7), st.integers(0, 2**31 - 1))
def test_the_alignment_is_the_best_of_all_monotonic_ones(phones: int, frames: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    probabilities = torch.from_numpy(rng.dirichlet(np.ones(len(PHONES)) * 0.3, size=12))  # 12 tokens
    scorer = PhoneScorer(probabilities, PHONES, TextSymbols("phonemes"))
    targets = list(rng.choice([p for p in CMU_PHONES if p != "AH"], size=phones))
    tokens = torch.from_numpy(rng.integers(0, 12, size=frames))
    total, states = scorer.align(tokens, targets)
    if frames < phones:
        assert total == -np.inf
        return
    emissions = scorer._emissions(tokens, targets)
    assert total == pytest.approx(brute_force(emissions))
    # The path it returns is a legal one and adds up to its score.
    assert states[0] in (0, 1) and states[-1] >= 2 * phones - 1
    assert np.all(np.diff(states) >= 0) and np.all(np.diff(states) <= 2)
    assert set(range(1, 2 * phones, 2)) <= set(states.tolist())  # every phone has a token
    assert emissions[np.arange(frames), states].sum() == pytest.approx(total)
    assert total >= frames * np.log(FLOOR) - 1e-9


def test_a_tokenizer_without_phone_classes_gives_no_scorer() -> None:
    from soundstorm.semantic.extractors import MfccFeatures
    from soundstorm.semantic.kmeans_tokenizer import KMeansTokenizer

    assert PhoneScorer.from_tokenizer(KMeansTokenizer(MfccFeatures(), torch.randn(16, 39)), TextSymbols()) is None
    with pytest.raises(ValueError, match="phonemes, not characters"):
        PhoneScorer(torch.eye(len(PHONES)), PHONES, TextSymbols("characters"))


def test_a_content_tokenizer_gives_phone_probabilities_of_its_clusters() -> None:
    from soundstorm.semantic.content import ContentEncoder, ContentEncoderConfig
    from soundstorm.semantic.extractors import ContentFeatures
    from soundstorm.semantic.kmeans_tokenizer import KMeansTokenizer
    from soundstorm.text.phone_score import token_phone_probabilities

    torch.manual_seed(0)
    encoder = ContentEncoder(ContentEncoderConfig(phones=PHONES, dim=32, depth=1, heads=2, feature_dim=8))
    for output, width in (("posteriors", len(PHONES)), ("bottleneck", 8)):
        centroids = torch.rand(10, width)
        tokenizer = KMeansTokenizer(ContentFeatures(encoder, output), centroids)
        probabilities, phones = token_phone_probabilities(tokenizer)
        assert phones == PHONES and probabilities.shape == (10, len(PHONES))
        torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(10))
        if output == "posteriors":  # the centroids are phone distributions already
            torch.testing.assert_close(probabilities, centroids / centroids.sum(dim=1, keepdim=True))
        assert PhoneScorer.from_tokenizer(tokenizer, TextSymbols()) is not None
