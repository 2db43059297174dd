"""Atomic writes (soundstorm/atomic.py): a failed write leaves the old file, and a written file
is as readable as one written in place (mkstemp's private 0600 had made every WAV, report and
checkpoint written through it unreadable to other users)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from soundstorm.atomic import atomic_folder, atomic_path, atomic_write_text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_mode_an_ordinary_write_gives(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.md", "new")
        (tmp_path / "plain.md").write_text("plain")
    finally:
        os.umask(umask)
    assert (tmp_path / "report.md").read_text() == "new"
    assert mode(tmp_path / "report.md") == mode(tmp_path / "plain.md") == 0o644


def test_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_folder_replaces_the_old_one_whole_or_not_at_all(tmp_path: Path) -> None:
    folder = tmp_path / "codec"
    folder.mkdir()
    (folder / "config.json").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(folder) as staging:
        (staging / "config.json").write_text("half")
        raise RuntimeError("interrupted")
    assert (folder / "config.json").read_text() == "old"
    umask = os.umask(0o022)
    try:
        with atomic_folder(folder) as staging:
            (staging / "config.json").write_text("new")
    finally:
        os.umask(umask)
    assert (folder / "config.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codec"]
    assert mode(folder / "config.json") == 0o644  # readable by others, as a shared models folder must be
