"""Training state on disk without pickle: tensors in safetensors, everything else in JSON.

Optimizer and scheduler state dicts, RNG states and progress counters are nested dicts and
lists of tensors, numbers and strings. `save_state` replaces each tensor by a reference
{"__tensor__": key} in a JSON skeleton and stores the tensors under those keys; `load_state`
puts them back. Tuples come back as lists, except where callers convert them (RNG states).
A checkpoint folder is written beside its destination and renamed into place (atomic).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

SKELETON_NAME = "state.json"
TENSORS_NAME = "state.safetensors"


def _flatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) for k in value):
            raise TypeError(f"state dict keys must be str or int, got {list(value)[:5]}")
        # JSON keys are strings; remember int keys (optimizer state is keyed by param index).
        return {"__dict__": [[k, _flatten(v, tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_flatten(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a training state")


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        return {k: _unflatten(v, tensors) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def save_state(state: dict[str, Any], folder: str | Path, extra_files: dict[str, str] | None = None) -> None:
    """Write `state` (and small text files, e.g. the recipe) to `folder` atomically."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, tensors)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_file(tensors, staging / TENSORS_NAME)
        (staging / SKELETON_NAME).write_text(json.dumps(skeleton))
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text)
        for child in staging.iterdir():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_state(folder: str | Path) -> dict[str, Any]:
    """Read a folder written by save_state; ValueError if it is incomplete or corrupt."""
    folder = Path(folder)
    try:
        skeleton = json.loads((folder / SKELETON_NAME).read_text())
        tensors = load_file(folder / TENSORS_NAME)
        return _unflatten(skeleton, tensors)
    except FileNotFoundError as error:
        raise ValueError(f"checkpoint {folder} is incomplete: {error.filename} is missing") from error
    except (json.JSONDecodeError, SafetensorError, OSError, KeyError, ValueError) as error:
        raise ValueError(f"checkpoint {folder} is corrupt or truncated ({type(error).__name__}: {error})") from error
