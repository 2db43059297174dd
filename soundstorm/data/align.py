"""Forced alignment of a transcript to speech: phone timings from pocketsphinx.

pocketsphinx (PyPI wheel, bundled US-English acoustic model and CMU dictionary) runs two passes:
a word-level alignment of the transcript (`set_align_text`), then a sub-word pass
(`set_alignment`) that yields words -> phones with start and duration in 10 ms frames.

Phones are returned in flite's spelling of the CMU phone set (lower case, no stress,
silence = "pau") so that aligned corpora and synthesized ones (whose timings come from flite)
share one phone inventory.

Words missing from the CMU dictionary (names, numerals) are pronounced with flite's `t2p`
(lexicon + letter-to-sound rules) where it is installed; otherwise they fail the alignment.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from typing import TYPE_CHECKING

import numpy as np

from soundstorm.data.audio import resample_audio, rms_db
from soundstorm.data.manifest import Phone

if TYPE_CHECKING:
    import pocketsphinx

ALIGN_SAMPLE_RATE = 16000  # the bundled en-us acoustic model's rate
FRAMES_PER_SECOND = 100  # pocketsphinx's default frame rate: 10 ms frames
SILENCE = "pau"
SILENCE_DB = -60.0  # below this RMS level (dB full scale) the audio holds nothing to align
# Mean acoustic score per frame of the aligned phones, in pocketsphinx's units, where 0 means the
# best-scoring model state in every frame. Measured on 12 sentences per voice: right transcripts
# score -8 to -27 on flite and festival voices, -17 to -45 on espeak-ng's; another sentence's
# transcript scores -36 to -72 (about 90% of those fall below -50). A transcript that is wrong in
# a word or two cannot be told apart from a right one this way.
MIN_SCORE = -50.0
# Wide beams: the search graph is the transcript alone, so pruning saves little time, and the
# default beams lose the path on voices far from the model's training speech (half of espeak-ng's
# utterances fail with them, none with these; 19 s of audio aligns in 0.6 s).
_SEARCH = dict(beam=1e-200, wbeam=1e-200, pbeam=1e-200, maxhmmpf=-1, maxwpf=-1)
# The phones of pocketsphinx's en-us model (CMU phone set without stress, plus SIL).
_MODEL_PHONES = frozenset(
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW "
    "V W Y Z ZH".split()
)
# flite phones that the CMU set spells differently.
_FLITE_TO_CMU = {"ax": "AH"}

# One per process (building one takes ~0.2 s); a decoder is not thread-safe.
_decoder: pocketsphinx.Decoder | None = None


class AlignmentError(ValueError):
    """The transcript could not be aligned to the audio; the message says why."""


def align_phones(
    wav: np.ndarray, sample_rate: int, text: str, *, min_score: float | None = MIN_SCORE
) -> tuple[Phone, ...]:
    """Phone timings of `text` spoken in `wav`.

    Args:
        wav: float32 [N], mono, samples in [-1, 1]; resampled to 16 kHz internally.
        sample_rate: Hz.
        text: the transcript; case and punctuation are ignored, numerals should be spelled out
            (flite's t2p spells them where installed).
        min_score: reject alignments whose mean acoustic score per frame is below this (see
            MIN_SCORE: it catches a transcript of other speech); None accepts any.

    Returns:
        Phones in time order, each (phone, start s, end s) with 0 <= start <= end <= N /
        sample_rate and each start equal to the previous end; silences are "pau".

    Raises:
        AlignmentError: empty transcript, a word with no pronunciation, silent audio, or audio
            in which the aligner could not find the words or found them only with a score below
            `min_score` (noise, a transcript of other speech).
        ImportError: pocketsphinx is not installed.
    """
    if wav.ndim != 1:
        raise ValueError(f"align_phones expects a mono waveform [N], got shape {wav.shape}")
    duration = wav.shape[0] / sample_rate
    words = normalize_words(text)
    if not words:
        raise AlignmentError(f"nothing to align: the transcript {text!r} holds no words")
    level = rms_db(wav)
    if level < SILENCE_DB:
        # Forced alignment with wide beams will happily spread words over digital silence.
        raise AlignmentError(f"the audio is silent (RMS {level:.0f} dB): nothing to align")
    decoder = _get_decoder()
    # The front end carries feature normalisation over from the previous utterance; reset it
    # so that an utterance gets the same timings whatever was aligned before it.
    decoder.reinit_feat()
    _ensure_pronunciations(decoder, words)

    wav16 = resample_audio(wav, sample_rate, ALIGN_SAMPLE_RATE)
    pcm = (np.clip(wav16, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()  # 16-bit PCM, as it wants
    try:
        decoder.set_align_text(" ".join(words))
        _decode(decoder, pcm)
        hypothesis = decoder.hyp()
        found = [w for w in hypothesis.hypstr.split() if not _is_filler(w)] if hypothesis else []
        if found != words:
            raise AlignmentError(
                f"the aligner matched {len(found)} of the transcript's {len(words)} words "
                f"({' '.join(found) or 'none'}): the audio is noise, or says something else"
            )
        decoder.set_alignment()  # second pass: sub-word (phone) timings
        _decode(decoder, pcm)
        alignment = decoder.get_alignment()
    except RuntimeError as error:
        _reset_decoder()  # a failed pass can leave an utterance open; start the next one afresh
        raise AlignmentError(f"pocketsphinx could not align {' '.join(words)!r}: {error}") from error
    if alignment is None:
        raise AlignmentError("pocketsphinx returned no sub-word alignment")
    score = mean_score(alignment)
    if min_score is not None and score < min_score:
        raise AlignmentError(
            f"the transcript fits the audio poorly (mean acoustic score {score:.0f} per frame, below "
            f"{min_score:g}): it is probably not what the audio says"
        )
    return _to_phones(alignment, duration)


def mean_score(alignment: pocketsphinx.Alignment) -> float:
    """Mean acoustic score per 10 ms frame over all phones (0 = best state in every frame)."""
    frames = score = 0
    for phone in alignment.phones():
        frames += phone.duration
        score += phone.score
    return score / max(frames, 1)


def normalize_words(text: str) -> list[str]:
    """Lower-case dictionary words of a transcript: punctuation dropped, hyphens split,
    apostrophes inside words kept ("don't"), accents folded to ASCII."""
    text = unicodedata.normalize("NFKD", text.replace("\u2019", "'").replace("\u2018", "'"))
    text = text.encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[^a-z0-9']+", " ", text)
    return [word for word in (w.strip("'") for w in text.split()) if word]


def _get_decoder() -> pocketsphinx.Decoder:
    global _decoder
    if _decoder is None:
        try:
            import pocketsphinx
        except ImportError as error:
            raise ImportError(
                "forced alignment needs pocketsphinx: pip install pocketsphinx (its wheel ships the "
                "US-English model)"
            ) from error
        # loglevel FATAL: failures are reported through AlignmentError, not printed per file.
        # bestpath off: its lattice rescoring can hand the phone pass a word with an impossible
        # one-frame duration ("Alignment failed"), seen on plain flite speech.
        _decoder = pocketsphinx.Decoder(
            samprate=float(ALIGN_SAMPLE_RATE), bestpath=False, loglevel="FATAL", **_SEARCH
        )
    return _decoder


def _reset_decoder() -> None:
    global _decoder
    _decoder = None


def _decode(decoder: pocketsphinx.Decoder, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def _ensure_pronunciations(decoder: pocketsphinx.Decoder, words: list[str]) -> None:
    """Add a pronunciation for every word missing from the dictionary, or raise naming them."""
    missing = [word for word in dict.fromkeys(words) if decoder.lookup_word(word) is None]
    if not missing:
        return
    pronunciations = {word: flite_pronunciation(word) for word in missing}
    unknown = [word for word, phones in pronunciations.items() if phones is None]
    if unknown:
        how = "flite's t2p could not spell them" if shutil.which("t2p") else "install flite for its t2p"
        raise AlignmentError(
            f"no pronunciation for {', '.join(repr(w) for w in unknown)}: not in the CMU dictionary "
            f"({how}); spell numerals and symbols out in the transcript"
        )
    for number, (word, phones) in enumerate(pronunciations.items(), start=1):
        # Rebuilding the search graph is the slow part: do it once, with the last word.
        decoder.add_word(word, " ".join(phones or ()), update=number == len(pronunciations))


def flite_pronunciation(word: str) -> list[str] | None:
    """CMU phones (upper case, no stress) of `word` from flite's t2p, or None."""
    t2p = shutil.which("t2p")
    if t2p is None:
        return None
    try:
        result = subprocess.run([t2p, word], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    phones = []
    for phone in result.stdout.split():
        phone = phone.rstrip("012")
        if phone == SILENCE:
            continue
        phone = _FLITE_TO_CMU.get(phone, phone.upper())
        if phone not in _MODEL_PHONES:
            return None
        phones.append(phone)
    return phones or None


def _is_filler(name: str) -> bool:
    """Words and phones pocketsphinx inserts between the transcript's words: <s>, </s>, <sil>,
    noise words like [NOISE], and their phones SIL and +NSN+. All become "pau"."""
    return name[:1] in ("<", "[", "+") or name == "SIL"


def _to_phones(alignment: pocketsphinx.Alignment, duration: float) -> tuple[Phone, ...]:
    """Flatten words -> phones into seconds, clamped to the audio, silences merged."""
    phones: list[Phone] = []
    for word in alignment:
        for entry in word:
            name = SILENCE if _is_filler(word.name) or _is_filler(entry.name) else entry.name.lower()
            start = min(entry.start / FRAMES_PER_SECOND, duration)
            end = min((entry.start + entry.duration) / FRAMES_PER_SECOND, duration)
            if phones:
                start = phones[-1].end  # frames tile the utterance; this only removes rounding
                if name == SILENCE and phones[-1].phone == SILENCE:
                    phones[-1] = Phone(SILENCE, phones[-1].start, max(end, start))
                    continue
            phones.append(Phone(name, start, max(end, start)))
    if not phones:
        raise AlignmentError("pocketsphinx returned an empty alignment")
    if duration - phones[-1].end < 2 / FRAMES_PER_SECOND:
        # The aligner drops the last partial frames; give them to the final phone.
        phones[-1] = Phone(phones[-1].phone, phones[-1].start, duration)
    return tuple(phones)
