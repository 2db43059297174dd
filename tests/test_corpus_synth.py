"""`soundstorm corpus synth`: sentence rules, Debian sources, voices, and a tiny corpus built for
real (one voice of each engine) checked for schema, audio, phones, splits, resuming and
determinism. The engines come from `make system-deps`; without them those tests skip."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundstorm.data.manifest import read_manifest
from soundstorm.data.sentences import (
    MAX_WORDS, SOURCES, Sentence, clean_sentence, load_sentences, sentence_problem, split_sentences,
)
from soundstorm.data.synth import (
    add_arguments, mostly_silent, run, sentence_split, synthesize_corpus, utterance_name,
)
from soundstorm.data.voices import VoiceUnavailable, check_voice, parse_voice

ENGINES_INSTALLED = all(shutil.which(p) for p in ("flite", "festival", "espeak-ng"))
SOURCES_INSTALLED = Path("/usr/share/games/fortunes").is_dir() and shutil.which("bible") is not None \
    and Path("/usr/share/wordnet/data.noun").is_file()
needs_engines = pytest.mark.skipif(not (ENGINES_INSTALLED and SOURCES_INSTALLED),
                                   reason="flite/festival/espeak-ng or the text packages missing: make system-deps")
needs_sources = pytest.mark.skipif(not SOURCES_INSTALLED,
                                   reason="fortunes/bible-kjv/wordnet-base missing: make system-deps")

# One voice of each engine; the espeak-ng one is held out.
VOICES = ("flite-slt", "festival-kal_diphone", "espeak-en+m7")
HELD_OUT = ("espeak-en+m7",)
SAMPLE_RATE = 24000  # none of the engines speaks at 24 kHz, so every voice is resampled
HOURS = 0.006  # 7.2 s of audio per voice: 2 or 3 sentences each


# ---------------------------------------------------------------------------------------- rules

@pytest.mark.parametrize(("text", "problem"), [
    ("The cat sat on the mat.", None),
    ("Don't change the reason, just change the excuses!", None),
    ("Are you sure the back door is locked?", None),
    ("Collect two hundred dollars in 1999.", "digit"),
    ("The NASA probe reached the moon.", "acronym"),
    ("I think I am here today.", None),  # one-letter capitals are words, not acronyms
    ("The caf\u00e9 was closed all day.", "non-ASCII"),
    ("Three words only.", "too short"),
    ("Four words are here.", None),
    ("Word " + "word " * (MAX_WORDS - 2) + "end.", None),
    ("Word " + "word " * (MAX_WORDS - 1) + "end.", "too long"),
    ("the cat sat on the mat.", "no capital"),
    ("The cat sat on the mat", "no end punctuation"),
    ("The cat (a tabby) sat down.", "symbol"),
    ("See www.example.com/page for more.", "symbol"),
    ("The cat sat -- then it left.", "bare punctuation"),
])
def test_sentence_rules(text: str, problem: str | None) -> None:
    assert sentence_problem(text) == problem


def test_clean_sentence_normalises_quotes_and_spaces() -> None:
    assert clean_sentence('  "Never   trust\ta cat," she said.  ') == "Never trust a cat, she said."
    assert clean_sentence("Only IBM would do that.") is None


def test_split_sentences_keeps_abbreviations() -> None:
    assert split_sentences("Mr. Smith went home. He slept! Did he?  Yes.") == [
        "Mr. Smith went home.", "He slept!", "Did he?", "Yes."]


@needs_sources
def test_debian_sources_give_thousands_of_sentences_deterministically() -> None:
    sentences = load_sentences(seed=0)
    counts = {source: sum(s.source == source for s in sentences) for source in SOURCES}
    assert all(count > 5000 for count in counts.values()), counts
    assert 50000 < len(sentences) < 70000
    assert load_sentences(seed=0) == sentences
    reshuffled = load_sentences(seed=1)
    by_text = lambda s: s.text  # noqa: E731
    assert reshuffled != sentences and sorted(reshuffled, key=by_text) == sorted(sentences, key=by_text)
    assert len({s.text.lower() for s in sentences}) == len(sentences)
    assert all(sentence_problem(s.text) is None for s in sentences)
    assert not any("Lord" not in s.text and "LORD" in s.text for s in sentences)  # KJV small caps


# --------------------------------------------------------------------------------------- voices

def test_parse_voice() -> None:
    voice = parse_voice("espeak-en-us+f3")
    assert (voice.engine, voice.name, voice.speaker) == ("espeak", "en-us+f3", "espeak-en-us+f3")
    assert parse_voice("festival-kal_diphone").package == "festival and festvox-kallpc16k"
    assert "mbrola-de1 " in parse_voice("espeak-mb-de1-en").package
    with pytest.raises(ValueError, match="engine"):
        parse_voice("mbrola-us1")


@needs_engines
def test_voice_checks_catch_silent_fallbacks() -> None:
    for speaker in ("flite-slt", "festival-kal_diphone", "espeak-en-us+f3", "espeak-en+klatt", "espeak-en+f4"):
        check_voice(parse_voice(speaker))
    # espeak-ng 1.51 ignores variants on en-gb, and flite speaks unknown voices as kal.
    with pytest.raises(VoiceUnavailable, match="sounds exactly like"):
        check_voice(parse_voice("espeak-en-gb+f3"))
    with pytest.raises(VoiceUnavailable, match="flite has no voice"):
        check_voice(parse_voice("flite-nosuchvoice"))
    with pytest.raises(VoiceUnavailable, match="festvox"):
        check_voice(parse_voice("festival-nosuchvoice"))
    # An MBROLA voice whose voice package is missing (mbrola-zz1 exists nowhere) names the package.
    with pytest.raises(VoiceUnavailable, match="mbrola-zz1"):
        check_voice(parse_voice("espeak-mb-zz1"))


def test_mostly_silent_rejects_gaps_and_inaudible_audio() -> None:
    rate = 16000
    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(rate)).astype(np.float32)  # 1 s, every frame loud
    gap = np.zeros(rate, dtype=np.float32)
    assert not mostly_silent(speech, rate)
    assert not mostly_silent(np.concatenate([speech, gap[: rate // 2]]), rate)  # a third gaps: speech
    # An MBROLA voice that lacks most diphones: short bursts between long silences.
    assert mostly_silent(np.concatenate([speech[: rate // 4], gap, speech[: rate // 4], gap]), rate)
    assert mostly_silent(speech * 1e-3, rate)  # -70 dBFS at its loudest: nothing audible
    assert mostly_silent(np.zeros(100, dtype=np.float32), rate)  # shorter than a frame


def test_sentence_split_is_a_seeded_hash() -> None:
    splits = [sentence_split(f"Sentence number {i}.", 0, 0.1, 0.1) for i in range(2000)]
    assert splits == [sentence_split(f"Sentence number {i}.", 0, 0.1, 0.1) for i in range(2000)]
    assert 150 < splits.count("valid") < 250 and 150 < splits.count("test") < 250
    assert splits != [sentence_split(f"Sentence number {i}.", 1, 0.1, 0.1) for i in range(2000)]
    assert utterance_name(Sentence("A b c d.", "bible")).startswith("bible-")


# ------------------------------------------------------------------------------- a tiny corpus

def _build(out: Path, workers: int = 2) -> Path:
    return synthesize_corpus(out, hours=HOURS, voices=VOICES, held_out=HELD_OUT, sample_rate=SAMPLE_RATE,
                             seed=7, workers=workers, valid_fraction=0.3, test_fraction=0.3, progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ENGINES_INSTALLED and SOURCES_INSTALLED):
        pytest.skip("flite/festival/espeak-ng or the text packages missing: make system-deps")
    return _build(tmp_path_factory.mktemp("corpus") / "synth")


def test_manifest_audio_and_phones(corpus: Path) -> None:
    entries = read_manifest(corpus)
    assert {e.speaker for e in entries} == set(VOICES)
    for speaker in VOICES:
        seconds = sum(e.duration for e in entries if e.speaker == speaker)
        assert HOURS * 3600 / len(VOICES) <= seconds < HOURS * 3600 / len(VOICES) + 12  # < one sentence over
    for entry in entries:
        info = sf.info(str(entry.audio_path(corpus.parent)))
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert entry.sample_rate == SAMPLE_RATE
        assert entry.duration == pytest.approx(info.frames / SAMPLE_RATE, abs=1e-9)
        assert entry.path == f"audio/{entry.speaker}/{entry.id.split('/')[1]}.wav"
        assert entry.text and sentence_problem(entry.text) is None
        if not entry.speaker.startswith("espeak"):
            assert entry.phones, f"{entry.id}: flite and festival print phone timings"
            assert entry.phones[0].phone == "pau" and entry.phones[0].start == 0.0
        if entry.phones:
            ends = [p.end for p in entry.phones]
            assert ends == sorted(ends) and ends[-1] <= entry.duration + 1e-4
            assert all(p.start <= p.end for p in entry.phones)
    document = json.loads((corpus.parent / "corpus.json").read_text())
    assert document["utterances"] == len(entries) and document["settings"]["sample_rate"] == SAMPLE_RATE


def test_splits_hold_out_speakers(corpus: Path) -> None:
    entries = read_manifest(corpus)
    for entry in entries:
        if entry.speaker in HELD_OUT:
            assert entry.split == "test-unseen-speaker"
        else:
            assert entry.split == sentence_split(entry.text or "", 7, 0.3, 0.3)
    assert {e.split for e in entries if e.speaker not in HELD_OUT} <= {"train", "valid", "test"}
    assert len({e.text for e in entries}) == len(entries)  # no two voices share a sentence


def test_resume_skips_finished_work_and_completes_an_interrupted_run(corpus: Path) -> None:
    before = corpus.read_bytes()
    wavs = sorted((corpus.parent / "audio").rglob("*.wav"))
    mtimes = {p: p.stat().st_mtime_ns for p in wavs}
    assert _build(corpus.parent) == corpus
    assert {p: p.stat().st_mtime_ns for p in wavs} == mtimes  # nothing synthesized again
    assert corpus.read_bytes() == before

    # An interrupted run: one wav never written, one written without its record, a temp file left.
    wavs[0].unlink()
    wavs[1].with_suffix(".json").unlink()
    stray = wavs[2].parent / f".{wavs[2].name}.tmp-abc123.wav"
    stray.write_bytes(b"RIFF half a file")
    _build(corpus.parent, workers=1)
    assert corpus.read_bytes() == before
    assert wavs[0].is_file() and wavs[1].with_suffix(".json").is_file() and not stray.exists()
    assert wavs[2].stat().st_mtime_ns == mtimes[wavs[2]]


def test_same_seed_same_manifest_with_other_workers(corpus: Path, tmp_path: Path) -> None:
    assert _build(tmp_path / "again", workers=1).read_bytes() == corpus.read_bytes()


@needs_engines
def test_cli_reports_missing_voice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "c"), "--voices", "flite-slt,festival-nosuchvoice", "--held-out", "",
                              "--quiet"])
    assert args.held_out == [] and args.voices == ["flite-slt", "festival-nosuchvoice"]
    assert run(args) == 2
    assert "install the Debian package" in capsys.readouterr().err


def test_alignment_setting_is_part_of_the_resume_check(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "unaligned"
    unaligned = synthesize_corpus(out, hours=HOURS, voices=VOICES, held_out=HELD_OUT, sample_rate=SAMPLE_RATE,
                                  seed=7, workers=2, valid_fraction=0.3, test_fraction=0.3, align=False,
                                  progress=False)
    entries, reference = read_manifest(unaligned), read_manifest(corpus)
    assert [e.id for e in entries] == [e.id for e in reference]
    for entry, expected in zip(entries, reference):
        assert entry.phones == (None if entry.speaker.startswith("espeak") else expected.phones)
    # Asking for alignment afterwards redoes exactly the utterances that lack it.
    assert _build(out).read_bytes() == corpus.read_bytes()


@needs_engines
def test_default_held_out_voices_are_those_among_the_voices(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["out"]).held_out is None
    manifest = synthesize_corpus(tmp_path, hours=0.001, voices=["flite-slt", "flite-rms"], progress=False)
    splits = {e.speaker: e.split for e in read_manifest(manifest)}
    assert splits["flite-rms"] == "test-unseen-speaker" and splits["flite-slt"] != "test-unseen-speaker"
