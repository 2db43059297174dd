"""benchmarks/paired_probe.py: two acoustic-probe runs compared sentence by sentence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "paired_probe.py"
TEXTS = {"held-out voices": ["one two three four", "five six"]}


def _probe(path: Path, codec: list[str], texts: dict[str, list[str]] = TEXTS) -> Path:
    """The fields of an acoustic_probe.py --asr JSON the script reads."""
    hypotheses = {group: {"synth audio": lines, "codec": codec} for group, lines in texts.items()}
    path.write_text(json.dumps({"texts": texts, "hypotheses": hypotheses}))
    return path


def test_paired_probe_differences_per_sentence(tmp_path: Path) -> None:
    a = _probe(tmp_path / "a.json", ["one two three four", "five sex"])  # WER 0 and 1/2
    b = _probe(tmp_path / "b.json", ["one two tree four", "five six"])  # WER 1/4 and 0
    done = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], check=True, capture_output=True, text=True)
    # Pooled: one word wrong of six in each. Per sentence: +1/4 and -1/2, mean -0.125,
    # standard error stdev(0.25, -0.5) / sqrt(2) = 0.375.
    assert "| held-out voices | 2 | 0.000 | 0.167 -> 0.167 | -0.125 +- 0.375 |" in done.stdout


def test_paired_probe_refuses_other_sentences_and_runs_without_asr(tmp_path: Path) -> None:
    a = _probe(tmp_path / "a.json", ["one", "five"])
    other = _probe(tmp_path / "other.json", ["x"], texts={"held-out voices": ["another sentence"]})
    failed = subprocess.run([sys.executable, str(SCRIPT), str(a), str(other)], capture_output=True, text=True)
    assert failed.returncode != 0 and "held-out voices: the runs heard different sentences" in failed.stderr
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"texts": TEXTS, "hypotheses": None}))
    failed = subprocess.run([sys.executable, str(SCRIPT), str(a), str(bare)], capture_output=True, text=True)
    assert failed.returncode != 0 and "run acoustic_probe.py with --asr" in failed.stderr
