"""Text -> phonemes, offline: the CMU dictionary that ships in the pocketsphinx wheel, and
flite's letter-to-sound rules (its `t2p`) for words the dictionary lacks.

    Phonemizer().phonemize("Hello, world!")   # ['HH', 'AH', 'L', 'OW', ',', ' ', 'W', 'ER', 'L', 'D', '.']

Phones are the 39 of the CMU set without stress; between words stands " ", and punctuation
becomes a pause symbol: "," for , ; : and "-", "." for . ! ? (the model learns their pauses).
Quotation marks are not spoken ("'Forbes' list", "his colleagues' theories"), a bracket is a
short pause before the next word, and typographic forms (curly quotes, dashes, an ellipsis
character) read as their plain ones.
A word with neither a dictionary entry nor a letter-to-sound spelling (flite missing, or a
symbol like "&") raises UnknownWordError naming it; digits must be spelled out.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

CMU_PHONES = tuple("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW "
                   "V W Y Z ZH".split())
WORD_BREAK = " "
SHORT_PAUSE = ","
LONG_PAUSE = "."
PAUSES = (SHORT_PAUSE, LONG_PAUSE)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
# A word may carry quotation marks on either side: 'fair', colleagues'.
_TOKEN = re.compile(r"'?[a-z]+(?:'[a-z]+)*'?|[,;:\-]|[.!?]+|\S")
_TYPOGRAPHY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'",
                             "\u2013": "-", "\u2014": "-", "\u2026": "..."})
QUOTES = "\"'\u201c\u201d\u201e\u00ab\u00bb"
BRACKETS = "()[]{}"


def normalize(text: str) -> str:
    """Lower case, typographic punctuation as its plain form."""
    return text.lower().translate(_TYPOGRAPHY)


class UnknownWordError(ValueError):
    """A word the phonemizer cannot pronounce."""


def _default_dictionary() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.__file__).parent / "model" / "en-us" / "cmudict-en-us.dict"


@functools.lru_cache(maxsize=4)
def load_dictionary(path: str) -> dict[str, tuple[str, ...]]:
    """word -> its first pronunciation (CMU phones, no stress)."""
    entries: dict[str, tuple[str, ...]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            word, *phones = line.split()
            if "(" in word:  # alternative pronunciations: word(2)
                continue
            entries.setdefault(word.lower(), tuple(p.rstrip("012") for p in phones))
    return entries


class Phonemizer:
    def __init__(self, dictionary: str | Path | None = None) -> None:
        self.dictionary = load_dictionary(str(dictionary or _default_dictionary()))
        self._guesses: dict[str, tuple[str, ...] | None] = {}

    def word(self, word: str) -> tuple[str, ...]:
        """The phones of one lower-case word."""
        phones = self.dictionary.get(word)
        if phones is not None:
            return phones
        if word not in self._guesses:
            from soundstorm.data.align import flite_pronunciation

            guess = flite_pronunciation(word)
            self._guesses[word] = tuple(guess) if guess else None
        if self._guesses[word] is None:
            raise UnknownWordError(f"cannot pronounce {word!r}: not in the CMU dictionary and flite's t2p "
                                   "could not spell it (install flite; spell numerals and symbols out)")
        return self._guesses[word]  # type: ignore[return-value]

    def phonemize(self, text: str) -> list[str]:
        """Phones, word breaks and pauses of `text` (see the module docstring)."""
        symbols: list[str] = []
        bracket = False  # a bracket since the last word: pause before the next one
        for token in _TOKEN.findall(normalize(text)):
            if _WORD.fullmatch(token.strip("'")):
                # The dictionary has some words with their apostrophe ('em, states'); others lose their quotes.
                word = token if token in self.dictionary else token.strip("'")
                if bracket and symbols and symbols[-1] not in PAUSES:
                    symbols.append(SHORT_PAUSE)
                if symbols and symbols[-1] not in (WORD_BREAK,):
                    symbols.append(WORD_BREAK)
                symbols.extend(self.word(word))
                bracket = False
            elif token[0] in ",;:-":
                symbols.append(SHORT_PAUSE)
                bracket = False
            elif token[0] in ".!?":
                symbols.append(LONG_PAUSE)
                bracket = False
            elif token in BRACKETS:
                bracket = True
            elif token in QUOTES:
                continue
            else:
                raise UnknownWordError(f"cannot pronounce {token!r} in {text!r}: spell symbols and numerals out")
        return symbols
