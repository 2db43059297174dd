"""Text symbols -> ids for the text-to-semantic model: phonemes (default) or characters.

    ids = TextSymbols("phonemes").encode("Hello there.")          # list[int]
    ids = symbols.join(first_ids, second_ids, turn=True)           # two turns of a dialogue

Ids 0 and 1 are <pad> and <turn> (the marker between two speakers' turns), then the word break
and the two pauses, then the phones (or letters). The vocabulary is a function of `units`
alone, so a checkpoint records only that.
"""

from __future__ import annotations

import string

from soundstorm.text.phonemes import (BRACKETS, CMU_PHONES, LONG_PAUSE, PAUSES, QUOTES, SHORT_PAUSE, WORD_BREAK,
                                      Phonemizer, UnknownWordError, normalize)

PAD, TURN = "<pad>", "<turn>"
UNITS = ("phonemes", "characters")


def symbol_table(units: str) -> tuple[str, ...]:
    """Every symbol of `units`, in id order."""
    if units not in UNITS:
        raise ValueError(f"text units must be one of {UNITS}, got {units!r}")
    alphabet = CMU_PHONES if units == "phonemes" else tuple(string.ascii_lowercase + "'")
    return (PAD, TURN, WORD_BREAK, SHORT_PAUSE, LONG_PAUSE, *alphabet)


class TextSymbols:
    def __init__(self, units: str = "phonemes") -> None:
        self.units = units
        self.symbols = symbol_table(units)
        self.index = {symbol: i for i, symbol in enumerate(self.symbols)}
        self._phonemizer = Phonemizer() if units == "phonemes" else None

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    @staticmethod
    def vocab_size_of(units: str) -> int:
        return len(symbol_table(units))

    @property
    def turn_id(self) -> int:
        return self.index[TURN]

    def to_symbols(self, text: str) -> list[str]:
        if self._phonemizer is not None:
            return self._phonemizer.phonemize(text)
        symbols: list[str] = []
        bracket = False  # as the phonemizer: a bracket is a pause before the next word
        for char in " ".join(normalize(text).split()):
            if char in self.index and char not in (PAD, TURN, *PAUSES):
                if bracket and char != WORD_BREAK:
                    while symbols and symbols[-1] == WORD_BREAK:
                        symbols.pop()
                    if symbols and symbols[-1] not in PAUSES:
                        symbols.append(SHORT_PAUSE)
                    if symbols:
                        symbols.append(WORD_BREAK)
                    bracket = False
                symbols.append(char)
            elif char in BRACKETS:
                bracket = True
            elif char in QUOTES and char != "'":  # the apostrophe is a letter here
                continue
            elif char in ",;:-":
                symbols.append(SHORT_PAUSE)
                bracket = False
            elif char in ".!?":
                symbols.append(LONG_PAUSE)
                bracket = False
            else:
                raise UnknownWordError(f"cannot spell {char!r} in {text!r} with letters: spell symbols and numerals out")
        return symbols

    def encode(self, text: str) -> list[int]:
        """The ids of `text`; ValueError if it has nothing to say."""
        ids = [self.index[s] for s in self.to_symbols(text)]
        if not any(i > self.index[LONG_PAUSE] for i in ids):
            raise ValueError(f"the text {text!r} has no words to speak")
        return ids

    def join(self, first: list[int], second: list[int], turn: bool) -> list[int]:
        """Two texts as one: a <turn> between them when the speaker changes, else a word break."""
        return [*first, self.turn_id if turn else self.index[WORD_BREAK], *second]
