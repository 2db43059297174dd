"""How well semantic tokens spell a text: forced alignment of tokens to the text's phones.

The bundled semantic tokens are k-means clusters of a phone classifier's output
(soundstorm/semantic/content.py), so every token stands for a distribution over phones: its
centroid, for a tokenizer of phone posteriors, or the classifier's head applied to it, for one
of the bottleneck. A sequence of tokens is then a sequence of phone distributions, and how
likely it is to say a text is a forced alignment of the text's phones to it:

    states   [sil?] p1 [sil?] p2 ... pn [sil?]        (silence optional between and around words)
    score    max over monotonic alignments (each phone >= 1 token) of the mean log p(state | token)

No recognizer, no audio: the text-to-semantic model's candidates are scored in a millisecond
each, and the best one is kept (`DecodingOptions.t2s_candidates`, soundstorm/text/pipeline.py).
The same alignment gives a phone error rate of tokens against their text (`phone_errors`), an
intelligibility measure of the text-to-semantic stage alone that no ASR noise blurs.

Notation: S tokens, V semantic vocabulary, P phone classes, N text phones, J = 2N + 1 states.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from soundstorm.semantic.base import SemanticTokenizer
from soundstorm.text.phonemes import CMU_PHONES
from soundstorm.text.symbols import TextSymbols

SILENCE = "sil"
# A CMU dictionary phone -> the classifier's phones it may be heard as: the synthesizers' phone
# sets (which the classifier learned) write unstressed AH as a schwa.
ALTERNATIVES = {"ah": ("ah", "ax")}
FLOOR = 1e-6  # a phone's probability never counts below this: one odd token costs log(1e-6), not -inf


def token_phone_probabilities(tokenizer: SemanticTokenizer) -> tuple[Tensor, tuple[str, ...]] | None:
    """p(phone | token) [V, P] and the phone names, for a k-means tokenizer of the content
    encoder (posteriors or bottleneck); None for tokens that carry no phone classes (MFCC, HuBERT)."""
    extractor = getattr(tokenizer, "extractor", None)
    encoder = getattr(extractor, "encoder", None)
    if encoder is None or getattr(tokenizer, "centroids", None) is None:
        return None
    centroids = tokenizer.centroids.float()  # [V, F]
    phones = tuple(encoder.config.phones)
    if extractor.output == "posteriors":
        probabilities = centroids / centroids.sum(dim=1, keepdim=True).clamp_min(1e-12)
    else:
        with torch.no_grad():
            head = encoder.head.float()
            probabilities = head(torch.nn.functional.gelu(centroids)).softmax(dim=-1)
    return probabilities, phones


class PhoneScorer:
    """Scores semantic token sequences [S] against texts, by forced alignment to their phones."""

    def __init__(self, probabilities: Tensor, phones: Sequence[str], symbols: TextSymbols) -> None:
        if symbols.units != "phonemes":
            raise ValueError("phone scoring needs a text-to-semantic model of phonemes, not characters")
        if SILENCE not in phones:
            raise ValueError(f"the phone classes {tuple(phones)} have no {SILENCE!r}")
        self.log_probabilities = np.log(np.maximum(probabilities.double().numpy(), FLOOR))  # [V, P]
        self.symbols = symbols
        self.names = tuple(phones)  # the classifier's phone classes, by index
        index = {phone: i for i, phone in enumerate(phones)}
        self.silence = index[SILENCE]
        self.classes: dict[str, list[int]] = {}  # CMU phone -> classifier phones
        for phone in CMU_PHONES:
            names = ALTERNATIVES.get(phone.lower(), (phone.lower(),))
            self.classes[phone] = [index[name] for name in names if name in index]
            if not self.classes[phone]:
                raise ValueError(f"the phone classes {tuple(phones)} cannot stand for the phone {phone}")

    @classmethod
    def from_tokenizer(cls, tokenizer: SemanticTokenizer, symbols: TextSymbols) -> PhoneScorer | None:
        """A scorer for a content-encoder tokenizer and a phoneme model; None where tokens have no phones."""
        found = token_phone_probabilities(tokenizer)
        if found is None or symbols.units != "phonemes":
            return None
        return cls(*found, symbols)

    def targets(self, text: str) -> list[str]:
        """The CMU phones of text, in order (pauses and word breaks are optional silence)."""
        return [s for s in self.symbols.to_symbols(text) if s in self.classes]

    def _emissions(self, tokens: Tensor, targets: Sequence[str]) -> np.ndarray:
        """log p(state | token) [S, J]: even states silence, odd states the targets' phones."""
        rows = self.log_probabilities[tokens.cpu().numpy()]  # [S, P]
        phone_columns = [np.logaddexp.reduce(rows[:, self.classes[p]], axis=1) for p in targets]
        silence = rows[:, self.silence]
        columns = [silence]
        for column in phone_columns:
            columns += [column, silence]
        return np.stack(columns, axis=1)

    def align(self, tokens: Tensor, targets: Sequence[str]) -> tuple[float, np.ndarray]:
        """The best alignment's summed log-probability and its state per token [S] (Viterbi)."""
        S, N = len(tokens), len(targets)
        if N == 0:
            raise ValueError("the text has no phones to align")
        if S < N:  # every phone needs a token
            return -np.inf, np.zeros(S, dtype=np.int64)
        emissions = self._emissions(tokens, targets)  # [S, J]
        J = 2 * N + 1
        # From state j one may stay, step to j + 1, or skip an optional silence (phone to next phone).
        can_skip = np.zeros(J, dtype=bool)
        can_skip[3:J:2] = True  # phone state j may be entered from phone state j - 2
        score = np.full(J, -np.inf)
        score[:2] = emissions[0, :2]  # start in the leading silence or the first phone
        back = np.zeros((S, J), dtype=np.int64)
        for t in range(1, S):
            stay = score
            step = np.concatenate([[-np.inf], score[:-1]])
            skip = np.where(can_skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
            options = np.stack([stay, step, skip])  # [3, J]
            choice = options.argmax(axis=0)
            back[t] = np.arange(J) - choice
            score = options[choice, np.arange(J)] + emissions[t]
        end = J - 1 if score[J - 1] >= score[J - 2] else J - 2  # end in the trailing silence or the last phone
        total = float(score[end])
        states = np.empty(S, dtype=np.int64)
        states[-1] = end
        for t in range(S - 1, 0, -1):
            states[t - 1] = back[t, states[t]]
        return total, states

    def score(self, tokens: Tensor, text: str) -> float:
        """Mean log-probability per token of the best alignment of tokens [S] to text's phones;
        higher is better, -inf for fewer tokens than phones."""
        if len(tokens) == 0:
            return -np.inf
        total, _ = self.align(tokens, self.targets(text))
        return total / len(tokens)

    def best(self, candidates: Sequence[Tensor], text: str) -> int:
        """The index of the candidate that spells text best (the first, on a tie)."""
        if not candidates:
            raise ValueError("no candidates to choose from")
        return int(np.argmax([self.score(c, text) for c in candidates]))

    def phones(self, tokens: Tensor) -> list[str]:
        """The phones tokens [S] say by themselves: each token's likeliest phone, repeats merged,
        silence dropped. Its classes' names: a CMU phone heard as a schwa comes out as 'ax'."""
        best = self.log_probabilities[tokens.cpu().numpy()].argmax(axis=1)
        out, previous = [], -1
        for index in best:
            if index != previous and index != self.silence:
                out.append(self.names[int(index)])
            previous = index
        return out

    def phone_errors(self, tokens: Tensor, text: str) -> tuple[int, int]:
        """(edit distance, text phones) between the phones tokens say and text's (a schwa matching
        AH): sum both over sentences for a phone error rate."""
        said = self.phones(tokens)
        wanted = self.targets(text)
        allowed = [{self.names[c] for c in self.classes[p]} for p in wanted]
        # Levenshtein with a set per wanted phone.
        previous = list(range(len(said) + 1))
        for i, options in enumerate(allowed, start=1):
            current = [i] + [0] * len(said)
            for j, phone in enumerate(said, start=1):
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (phone not in options))
            previous = current
        return previous[-1], len(wanted)
