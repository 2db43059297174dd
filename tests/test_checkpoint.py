"""Model folders: exact round trips, atomic writes, and clear errors for broken folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from safetensors.torch import load_file, save_file

from soundstorm import SoundStorm
from soundstorm.checkpoint import CONFIG_NAME, WEIGHTS_NAME


def test_round_trip_is_exact(tmp_path: Path) -> None:
    model = tiny_model(double=False)
    model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    loaded = SoundStorm.from_pretrained(tmp_path / "model")
    assert loaded.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    semantic = torch.randint(0, 10, (2, 6))
    assert torch.equal(
        model.generate(semantic, temperature=0.0), loaded.eval().generate(semantic, temperature=0.0)
    )


def test_half_precision_save_loads_into_float32(tmp_path: Path) -> None:
    model = tiny_model(double=False)
    model.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    stored = load_file(tmp_path / "fp16" / WEIGHTS_NAME)
    assert all(t.dtype == torch.float16 for t in stored.values() if t.is_floating_point())
    loaded = SoundStorm.from_pretrained(tmp_path / "fp16")
    assert loaded.head_weight.dtype == torch.float32
    torch.testing.assert_close(loaded.head_weight, model.head_weight.half().float())


def test_overwrite_replaces_the_old_folder_and_leaves_nothing_behind(tmp_path: Path) -> None:
    tiny_model(seed=0, double=False).save_pretrained(tmp_path / "model")
    second = tiny_model(seed=1, double=False)
    second.save_pretrained(tmp_path / "model")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or retired folders
    assert torch.equal(SoundStorm.from_pretrained(tmp_path / "model").head_weight, second.head_weight)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = tiny_model(seed=0, double=False)
    first.save_pretrained(tmp_path / "model")

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("soundstorm.checkpoint.save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        tiny_model(seed=1, double=False).save_pretrained(tmp_path / "model")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert torch.equal(SoundStorm.from_pretrained(tmp_path / "model").head_weight, first.head_weight)


def test_missing_folder_or_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        SoundStorm.from_pretrained(tmp_path / "absent")
    tiny_model(double=False).save_pretrained(tmp_path / "model")
    (tmp_path / "model" / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        SoundStorm.from_pretrained(tmp_path / "model")
    (tmp_path / "model" / CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        SoundStorm.from_pretrained(tmp_path / "model")


def test_corrupt_files_raise_value_errors(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    tiny_model(double=False).save_pretrained(folder)
    weights = (folder / WEIGHTS_NAME).read_bytes()
    (folder / WEIGHTS_NAME).write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        SoundStorm.from_pretrained(folder)
    (folder / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SoundStorm.from_pretrained(folder)


def _edit_config(folder: Path, **changes: object) -> None:
    document = json.loads((folder / CONFIG_NAME).read_text())
    for key, value in changes.items():
        if key in document:
            document[key] = value
        else:
            document["config"][key] = value
    (folder / CONFIG_NAME).write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(codebook_size=17), "has shape"),
        (dict(depth=3), "missing tensors"),
        (dict(model_type="AutoregressiveBaseline"), "expected 'SoundStorm'"),
        (dict(format_version=99), "format_version 99"),
        (dict(heads=5), "divisible by heads"),
        (dict(unknown_field=1), "unknown_field"),
    ],
)
def test_config_and_weights_that_disagree_are_refused(tmp_path: Path, changes: dict, message: str) -> None:
    folder = tmp_path / "model"
    tiny_model(double=False).save_pretrained(folder)
    _edit_config(folder, **changes)
    with pytest.raises(ValueError, match=message):
        SoundStorm.from_pretrained(folder)


def test_extra_tensors_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    tiny_model(double=False).save_pretrained(folder)
    state = load_file(folder / WEIGHTS_NAME)
    state["stray"] = torch.zeros(1)
    save_file(state, folder / WEIGHTS_NAME)
    with pytest.raises(ValueError, match="unexpected tensors"):
        SoundStorm.from_pretrained(folder)
