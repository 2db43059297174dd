"""Sentences to synthesize, taken from text that ships in Debian packages.

Three sources, all offline (`make system-deps` installs them):

    fortunes  /usr/share/games/fortunes/*   Debian packages fortunes, fortunes-min (the
              offensive collection under off/ is left out)
    bible     the King James Bible, read with the `bible` program   bible-kjv
    wordnet   the quoted usage examples of WordNet's glosses        wordnet-base

A sentence is kept when it reads well aloud for every engine and needs no text normalisation
that engines would disagree on: ASCII, MIN_WORDS to MAX_WORDS words, no digits, no all-caps
words (acronyms are spelled out by some engines and read as words by others), starting with a
capital letter and ending in . ! or ?. Sentences are deduplicated across sources and shuffled
with a seed, so the list is a pure function of the installed packages and the seed.
"""

from __future__ import annotations

import functools
import random
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MIN_WORDS = 4
MAX_WORDS = 20

SOURCES = ("fortunes", "bible", "wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
BIBLE_PROGRAM = "bible"

# The Debian package(s) that provide each source, for error messages.
SOURCE_PACKAGES = {"fortunes": "fortunes fortunes-min", "bible": "bible-kjv", "wordnet": "wordnet-base"}

# Characters a kept sentence may contain besides letters and spaces. Brackets, slashes, symbols
# and markup are read differently (or not at all) by each engine, so they disqualify a sentence.
_PUNCTUATION = set(".,;:!?'-")
_END = (".", "!", "?")
_WORD_CHARS = re.compile(r"[A-Za-z]")
# Split after . ! ? (and a closing quote) when the next sentence starts with a capital letter.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])['\"]?\s+(?=['\"]?[A-Z])")
# A break after one of these is not a sentence end ("Mr. Smith").
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "prof", "gen", "col", "lt", "mt", "no"}
# The KJV prints these names in capitals (small caps in print); they are words, not acronyms.
_BIBLE_CAPITALS = re.compile(r"\b(LORD|GOD|JEHOVAH|JAH)\b")


class SourceUnavailable(RuntimeError):
    """A sentence source is not installed; the message names the Debian package."""


@dataclass(frozen=True)
class Sentence:
    text: str
    source: str  # one of SOURCES


def sentence_problem(text: str) -> str | None:
    """Why `text` is not kept as a sentence, or None when it is.

    `text` is expected already normalised by `normalize` (single spaces, no double quotes).
    """
    if not text.isascii():
        return "non-ASCII"
    if any(ch.isdigit() for ch in text):
        return "digit"
    if any(not (ch.isalpha() or ch == " " or ch in _PUNCTUATION) for ch in text):
        return "symbol"
    words = text.split()
    if len(words) < MIN_WORDS:
        return "too short"
    if len(words) > MAX_WORDS:
        return "too long"
    if not text[0].isupper():
        return "no capital"
    if not text.endswith(_END):
        return "no end punctuation"
    for word in words:
        letters = "".join(_WORD_CHARS.findall(word))
        if not letters:
            return "bare punctuation"  # e.g. a dash standing alone
        if len(letters) >= 2 and letters.isupper():
            return "acronym"
    if "--" in text or "''" in text or ".." in text:
        return "symbol"
    return None


def normalize(text: str) -> str:
    """Single spaces, no double quotes or backquotes (engines do not speak them)."""
    text = text.replace("``", "").replace('"', "").replace("`", "")
    return " ".join(text.split())


def clean_sentence(text: str) -> str | None:
    """`text` normalised when it passes the sentence rules, else None."""
    text = normalize(text)
    return text if text and sentence_problem(text) is None else None


def split_sentences(paragraph: str) -> list[str]:
    """Split running text at sentence ends, keeping abbreviations such as "Mr." attached."""
    pieces = _SENTENCE_BREAK.split(" ".join(paragraph.split()))
    sentences: list[str] = []
    for piece in pieces:
        previous = sentences[-1].rstrip(".").rsplit(" ", 1)[-1].lower() if sentences else ""
        if sentences and sentences[-1].endswith(".") and previous in _ABBREVIATIONS:
            sentences[-1] += " " + piece
        else:
            sentences.append(piece)
    return [s.strip() for s in sentences if s.strip()]


def split_long(sentence: str, max_words: int = MAX_WORDS) -> list[str]:
    """Pieces of `sentence` of at most max_words words each, in order: an over-long sentence is cut
    after the clause mark (, ; :) nearest its middle, else at the word nearest its middle, and
    each half again until every piece fits. A mark in the outer quarters is passed over, so that
    no piece is a stray word ("Well,"). Text models learn sentences of corpus length (at most
    MAX_WORDS words here); a run-on sentence past it is read far worse than its clauses
    (docs/long_form.md)."""
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    words = sentence.split()
    if len(words) <= max_words:
        return [" ".join(words)] if words else []
    n = len(words)
    marks = [i for i in range(1, n) if words[i - 1].endswith((",", ";", ":")) and n / 4 <= i <= 3 * n / 4]
    cut = min(marks, key=lambda i: (abs(i - n / 2), i)) if marks else n // 2
    return split_long(" ".join(words[:cut]), max_words) + split_long(" ".join(words[cut:]), max_words)


def fortune_sentences(root: Path = FORTUNES_DIR) -> Iterator[str]:
    """Raw candidate sentences of every fortune file under `root`, in file-name order.

    Fortune files hold entries separated by lines of "%"; an attribution ("-- Mark Twain")
    ends an entry's text. The offensive collection (`off/`) and the strfile indexes are
    skipped, and so are the `.u8` links that repeat the plain files.
    """
    if not root.is_dir():
        raise SourceUnavailable(f"no fortune files at {root}: "
                                f"install the Debian packages {SOURCE_PACKAGES['fortunes']}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and "off" not in p.relative_to(root).parts[:-1]
                   and p.suffix not in (".dat", ".u8") and not p.is_symlink())
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in re.split(r"^%\s*$", text, flags=re.MULTILINE):
            lines: list[str] = []
            for line in entry.splitlines():
                if line.strip().startswith("--"):
                    break  # attribution: the quotation is over
                lines.append(line)
            yield from split_sentences(" ".join(lines))


def bible_sentences(program: str = BIBLE_PROGRAM) -> Iterator[str]:
    """Raw candidate sentences of the King James Bible, Genesis to Revelation."""
    executable = shutil.which(program)
    if executable is None:
        raise SourceUnavailable(f"no `{program}` program: install the Debian package {SOURCE_PACKAGES['bible']}")
    # -f turns pretty-printing off: one verse a line, after its reference ("Ge1:1 In the...").
    result = subprocess.run([executable, "-f", "gen1:1-rev22:21"], capture_output=True, text=True, cwd="/",
                            check=False, env={"PATH": "/usr/bin:/bin"})
    if result.returncode != 0 or not result.stdout.strip():
        raise SourceUnavailable(f"`{program}` printed no verses ({result.stderr.strip()}): reinstall the Debian "
                                f"package {SOURCE_PACKAGES['bible']} (and bible-kjv-text)")
    for line in result.stdout.splitlines():
        _, _, verse = line.partition(" ")
        verse = _BIBLE_CAPITALS.sub(lambda m: m.group(1).capitalize(), verse)
        yield from split_sentences(verse)


def wordnet_sentences(root: Path = WORDNET_DIR) -> Iterator[str]:
    """WordNet's usage examples (the quoted parts of glosses), capitalised and ended with "."."""
    files = [root / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    if not all(p.is_file() for p in files):
        raise SourceUnavailable(f"no WordNet data files in {root}: "
                                f"install the Debian package {SOURCE_PACKAGES['wordnet']}")
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("  "):
                    continue  # the licence header
                _, _, gloss = line.partition(" | ")
                for example in re.findall(r'"([^"]+)"', gloss):
                    example = example.strip()
                    if not example:
                        continue
                    example = example[0].upper() + example[1:]
                    if not example.endswith(_END):
                        example += "."
                    yield example


_READERS = {"fortunes": fortune_sentences, "bible": bible_sentences, "wordnet": wordnet_sentences}


def _dedup_key(text: str) -> str:
    return " ".join(re.sub(r"[^a-z ]", "", text.lower()).split())


@functools.lru_cache(maxsize=None)
def source_sentences(source: str) -> tuple[str, ...]:
    """The kept sentences of one source, in the source's own order, without duplicates.

    Cached: reading and filtering a source takes ~0.5 s and its files do not change under us."""
    if source not in _READERS:
        raise ValueError(f"unknown sentence source {source!r}: expected one of {', '.join(SOURCES)}")
    return tuple(_unique(_READERS[source]()))


def _unique(raw: Iterable[str]) -> Iterator[str]:
    seen: set[str] = set()
    for text in raw:
        cleaned = clean_sentence(text)
        if cleaned is None:
            continue
        key = _dedup_key(cleaned)
        if key not in seen:
            seen.add(key)
            yield cleaned


def load_sentences(sources: Sequence[str] = SOURCES, *, seed: int = 0) -> list[Sentence]:
    """All kept sentences of `sources`, deduplicated across sources, shuffled with `seed`.

    A sentence found in two sources counts for the first in `sources`. The result depends only
    on the installed packages, the source list and the seed.
    """
    seen: set[str] = set()
    sentences: list[Sentence] = []
    for source in dict.fromkeys(sources):  # ordered, without repeats
        for text in source_sentences(source):
            key = _dedup_key(text)
            if key not in seen:
                seen.add(key)
                sentences.append(Sentence(text, source))
    random.Random(seed).shuffle(sentences)
    return sentences
