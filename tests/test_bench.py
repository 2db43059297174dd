"""`soundstorm bench` end to end on tiny models: both runners timed, pass counts as designed
(SoundStorm sum(steps), the AR baseline one per generated token), table, JSON and plot written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from soundstorm import SoundStorm
from soundstorm.baselines import ARAcousticModel
from soundstorm.cli import main


def test_bench_runs_end_to_end_on_tiny_models(tmp_path: Path) -> None:
    assert main(["bench", "--seconds", "0.2", "0.4", "--batch", "1", "2", "--preset", "tiny", "--codebook-size", "16",
                 "--num-quantizers", "3", "--semantic-vocab-size", "10", "--steps", "4", "1", "1",
                 "--out", str(tmp_path), "--quiet"]) == 0
    payload = json.loads((tmp_path / "bench.json").read_text())
    rows = {(r["runner"], r["seconds_of_audio"], r["batch"]): r for r in payload["results"]}
    assert len(rows) == 8
    for (runner, seconds, batch), row in rows.items():
        frames = round(seconds * 50)
        assert row["forward_passes"] == (6 if runner == "soundstorm" else frames * 3)
        assert row["median"] > 0 and row["rtf"] == row["median"] / (seconds * batch)
    assert "| 0.4 s | 2 | ar baseline | 60 |" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_can_give_the_ar_baseline_float16_step_weights(tmp_path: Path) -> None:
    assert main(["bench", "--seconds", "0.2", "--batch", "1", "--preset", "tiny", "--codebook-size", "16",
                 "--num-quantizers", "3", "--semantic-vocab-size", "10", "--steps", "2", "1", "1", "--step-weights",
                 "--out", str(tmp_path), "--quiet"]) == 0
    payload = json.loads((tmp_path / "bench.json").read_text())
    assert payload["step_weights"] is True
    assert "(AR baseline: float16 step weights)" in (tmp_path / "bench.md").read_text()
    assert {r["forward_passes"] for r in payload["results"] if r["runner"] == "ar baseline"} == {10 * 3}


def test_bench_can_run_the_ar_baseline_in_float32_beside_a_bf16_soundstorm(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    autocast_on: dict[str, set[bool]] = {"soundstorm": set(), "ar": set()}
    for name, cls in (("soundstorm", SoundStorm), ("ar", ARAcousticModel)):
        def recording(self, *args, _name=name, _generate=cls.generate, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            autocast_on[_name].add(torch.is_autocast_enabled("cpu"))
            return _generate(self, *args, **kwargs)
        monkeypatch.setattr(cls, "generate", recording)
    assert main(["bench", "--seconds", "0.2", "--batch", "1", "--preset", "tiny", "--codebook-size", "16",
                 "--num-quantizers", "3", "--semantic-vocab-size", "10", "--steps", "2", "1", "1", "--bf16", "--ar-fp32",
                 "--out", str(tmp_path), "--quiet"]) == 0
    assert autocast_on == {"soundstorm": {True}, "ar": {False}}
    payload = json.loads((tmp_path / "bench.json").read_text())
    assert payload["bf16"] is True and payload["ar_fp32"] is True
    assert "bf16 autocast (AR baseline: float32)" in (tmp_path / "bench.md").read_text()
