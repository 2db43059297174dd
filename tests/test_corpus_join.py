"""`soundstorm corpus join`: each speaker's short clips packed, in order, into utterances of about
the asked length, never across speakers or splits, sample-exact, resumable, the source untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from soundstorm.cli import main
from soundstorm.data.join import TRIM_MARGIN_SECONDS, JoinSettings, join_corpus, pack, trim_bounds
from soundstorm.data.manifest import ManifestEntry, Phone, read_manifest, write_manifest

RATE = 16000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.1, 20.0), min_size=1, max_size=40), st.floats(0.5, 12.0), st.floats(0.0, 6.0),
       st.floats(0.0, 1.0))
def test_packing_keeps_every_clip_once_in_order_and_closes_utterances_where_it_should(
        durations: list[float], seconds: float, slack: float, gap: float) -> None:
    join = JoinSettings(seconds=seconds, max_seconds=seconds + slack, gap=gap)
    groups = pack(durations, join)
    assert [i for group in groups for i in group] == list(range(len(durations)))  # each once, in order
    length = [sum(durations[i] for i in g) + gap * (len(g) - 1) for g in groups]
    for number, group in enumerate(groups):
        assert len(group) == 1 or length[number] <= join.max_seconds + 1e-9  # only a lone clip may pass the cap
        # Every utterance but the last holds back for its target: closed at `seconds`, or because
        # the next clip would have taken it past the cap.
        if number < len(groups) - 1:
            following = durations[groups[number + 1][0]]
            assert length[number] >= seconds or length[number] + gap + following > join.max_seconds
        # Never closed later than needed: without its last clip it was still short of `seconds`.
        assert sum(durations[i] for i in group[:-1]) + gap * max(len(group) - 2, 0) < seconds or len(group) == 1


def test_settings_refuse_what_cannot_be_packed() -> None:
    for bad in (dict(seconds=0.0), dict(seconds=10.0, max_seconds=5.0), dict(gap=-0.1), dict(trim_db=-1.0)):
        with pytest.raises(ValueError):
            JoinSettings(**bad)


def test_trimming_keeps_the_sound_and_a_margin_and_never_empties_a_clip() -> None:
    silence, tone = np.zeros(RATE // 2), 0.3 * np.sin(2 * np.pi * 220 * np.arange(RATE) / RATE)
    wav = np.concatenate([silence, tone, silence]).astype(np.float32)
    start, end = trim_bounds(wav, RATE, 40.0)
    margin = round(TRIM_MARGIN_SECONDS * RATE)
    assert start == RATE // 2 - margin and end == RATE // 2 + RATE + margin
    assert trim_bounds(wav, RATE, 0.0) == (0, len(wav))  # 0: no trimming
    assert trim_bounds(np.zeros(RATE, dtype=np.float32), RATE, 40.0) == (0, RATE)  # nothing left to keep: all of it


def clip_corpus(root: Path) -> Path:
    """Speakers a (train: 4 clips, valid: 1) and b (train: 2 clips, one at 8 kHz): 1.5 s each, a
    0.5 s tone of the clip's own pitch between 0.5 s silences, a phone on the tone."""
    entries = []
    plan = [("a", "train", RATE)] * 4 + [("a", "valid", RATE), ("b", "train", RATE), ("b", "train", 8000)]
    for number, (speaker, split, rate) in enumerate(plan):
        t = np.arange(rate // 2) / rate
        tone = 0.3 * np.sin(2 * np.pi * (150 + 50 * number) * t)
        wav = np.concatenate([np.zeros(rate // 2), tone, np.zeros(rate // 2)]).astype(np.float32)
        path = f"clips/{speaker}-{number}.wav"
        (root / "clips").mkdir(parents=True, exist_ok=True)
        sf.write(root / path, wav, rate, subtype="PCM_16")
        entries.append(ManifestEntry(id=f"{speaker}/{number}", path=path, duration=1.5, sample_rate=rate,
                                     speaker=speaker, text=f"word {number}", split=split,
                                     phones=(Phone("sil", 0.0, 0.5), Phone("aa", 0.5, 1.0), Phone("sil", 1.0, 1.5))))
    write_manifest(entries, root / "manifest.jsonl")
    return root / "manifest.jsonl"


def test_join_packs_within_speaker_and_split_and_writes_the_trimmed_clips_with_gaps(tmp_path: Path) -> None:
    manifest = clip_corpus(tmp_path / "corpus")
    before = {p: p.read_bytes() for p in (tmp_path / "corpus").rglob("*") if p.is_file()}
    join = JoinSettings(seconds=2.0, max_seconds=3.5, gap=0.25)
    entries = join_corpus(manifest, tmp_path / "joined", join)
    assert [e.extra["joined_from"] for e in entries] == [["a/0", "a/1"], ["a/2", "a/3"], ["a/4"], ["b/5", "b/6"]]
    assert [(e.speaker, e.split, e.sample_rate) for e in entries] == [
        ("a", "train", RATE), ("a", "train", RATE), ("a", "valid", RATE), ("b", "train", RATE)]
    assert entries[0].text == "word 0 word 1" and read_manifest(tmp_path / "joined" / "manifest.jsonl") == entries

    margin = round(TRIM_MARGIN_SECONDS * RATE)
    kept = RATE // 2 + 2 * margin  # each tone and its margins
    gap = round(0.25 * RATE)
    first, rate = sf.read(tmp_path / "joined" / entries[0].path, dtype="float32")
    assert rate == RATE and len(first) == 2 * kept + gap and entries[0].duration == len(first) / RATE
    clip0, _ = sf.read(tmp_path / "corpus" / "clips" / "a-0.wav", dtype="float32")
    clip1, _ = sf.read(tmp_path / "corpus" / "clips" / "a-1.wav", dtype="float32")
    cut = RATE // 2 - margin
    np.testing.assert_array_equal(first, np.concatenate([clip0[cut:cut + kept], np.zeros(gap), clip1[cut:cut + kept]]))
    # The second clip's tone phone starts where its tone now is, after the first clip and the gap.
    aa = [p for p in entries[0].phones if p.phone == "aa"]
    assert aa[0].start == pytest.approx(TRIM_MARGIN_SECONDS, abs=1e-4)
    assert aa[1].start == pytest.approx((kept + gap) / RATE + TRIM_MARGIN_SECONDS, abs=1e-4)
    assert all(0.0 <= p.start <= p.end <= entries[0].duration + 1e-4 for p in entries[0].phones)
    # The 8 kHz clip was resampled to its speaker's first rate, its tone kept.
    last, _ = sf.read(tmp_path / "joined" / entries[3].path, dtype="float32")
    second = last[kept + gap:]
    spectrum = np.abs(np.fft.rfft(second * np.hanning(len(second))))
    assert np.fft.rfftfreq(len(second), 1 / RATE)[np.argmax(spectrum)] == pytest.approx(150 + 50 * 6, abs=3)

    assert {p: p.read_bytes() for p in (tmp_path / "corpus").rglob("*") if p.is_file()} == before  # source only read


def test_join_resumes_and_refuses_other_settings_or_its_source_folder(tmp_path: Path) -> None:
    manifest = clip_corpus(tmp_path / "corpus")
    out = tmp_path / "joined"
    first = join_corpus(manifest, out, JoinSettings(seconds=1.5, max_seconds=3.0))
    audio = {p: p.read_bytes() for p in out.rglob("*.wav")}
    next(iter(audio)).unlink()  # interrupted before one utterance was written
    assert join_corpus(manifest, out, JoinSettings(seconds=1.5, max_seconds=3.0)) == first
    assert {p: p.read_bytes() for p in out.rglob("*.wav")} == audio
    with pytest.raises(ValueError, match="seconds = 1.5.*seconds = 3.0"):
        join_corpus(manifest, out, JoinSettings(seconds=3.0, max_seconds=3.0))
    assert read_manifest(out / "manifest.jsonl") == first
    with pytest.raises(ValueError, match="source manifest"):
        join_corpus(manifest, manifest.parent)


def test_join_without_phones_or_texts_leaves_them_null(tmp_path: Path) -> None:
    manifest = clip_corpus(tmp_path / "corpus")
    entries = read_manifest(manifest)
    entries[1] = ManifestEntry(**{**entries[1].__dict__, "text": None, "phones": None})
    write_manifest(entries, manifest)
    joined = join_corpus(manifest, tmp_path / "joined", JoinSettings(seconds=2.0, max_seconds=3.5))
    assert joined[0].text is None and joined[0].phones is None  # a clip lacked them
    assert joined[1].text == "word 2 word 3" and joined[1].phones is not None


def test_speakers_whose_names_clean_alike_keep_folders_of_their_own(tmp_path: Path) -> None:
    manifest = clip_corpus(tmp_path / "corpus")
    entries = read_manifest(manifest)
    renamed = [ManifestEntry(**{**e.__dict__, "speaker": "x y" if e.speaker == "a" else "x_y"}) for e in entries]
    write_manifest(renamed, manifest)
    joined = join_corpus(manifest, tmp_path / "joined", JoinSettings(seconds=2.0, max_seconds=3.5))
    folders = {e.speaker: Path(e.path).parent for e in joined}
    assert folders["x_y"].name == "x_y" and folders["x y"].name.startswith("x_y-") and len(set(folders.values())) == 2
    assert len({e.path for e in joined}) == len(joined)


def test_cli_joins_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = clip_corpus(tmp_path / "corpus")
    assert main(["corpus", "join", str(manifest), str(tmp_path / "joined"), "--seconds", "3", "--quiet"]) == 0
    assert "4 utterances of 7 clips" in capsys.readouterr().out  # a: 4 train -> 2, 1 valid; b: 2 -> 1
    assert json.loads((tmp_path / "joined" / "join.json").read_text())["seconds"] == 3.0
