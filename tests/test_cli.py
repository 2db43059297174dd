"""The `soundstorm` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from soundstorm import SoundStorm


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "soundstorm.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_the_subcommands() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout and "presets" in result.stdout


def test_presets_lists_the_papers_size() -> None:
    result = run("presets")
    assert result.returncode == 0, result.stderr
    paper = next(line for line in result.stdout.splitlines() if line.startswith("paper:"))
    assert 300 < float(paper.split()[1].rstrip("M")) < 400


def test_short_demo_trains_decodes_and_saves(tmp_path: Path) -> None:
    result = run(
        "demo", "--toy", "--train-seconds", "5", "--max-steps", "20", "--num-sequences", "4",
        "--threads", "1", "--json", "--quiet", "--save", str(tmp_path / "toy"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 1 <= report["train_steps"] <= 20
    assert [row["decoding"] for row in report["results"]] == ["iterative", "one-shot"]
    assert all(0.0 <= row["consistency"] <= 1.0 for row in report["results"])
    assert SoundStorm.from_pretrained(tmp_path / "toy").config.num_quantizers == 3


def test_bad_arguments_exit_with_usage() -> None:
    result = run("demo", "--train-seconds", "soon")
    assert result.returncode == 2
    assert "invalid float value" in result.stderr
