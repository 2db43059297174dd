"""Self-describing model folders: `config.json` + `model.safetensors`, written atomically.

Any model of this project whose constructor takes one config dataclass (with to_dict and
from_dict) is saved and loaded here. No pickle: safetensors holds the weights, JSON the config.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from soundstorm.atomic import atomic_folder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


class Config(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


ModelT = TypeVar("ModelT", bound=nn.Module)


def weights_digest(model: nn.Module, skip: Sequence[str] = ()) -> str:
    """sha256 of the model's state as float32 (fp16- and fp32-stored copies of one model agree
    only if the fp32 one was rounded: they are different weights), first 16 hex digits; entries
    whose names start with a prefix in `skip` are left out. Names what a derived artifact (a
    token cache, a voice's adapter) was made with, whatever dtype the model is held in."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if any(name.startswith(prefix) for prefix in skip):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32 if tensor.is_floating_point() else tensor.dtype).numpy().tobytes())
    return digest.hexdigest()[:16]


def save_model(model: nn.Module, config: Config, path: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write `path/config.json` and `path/model.safetensors`.

    The folder is first written beside its destination and then moved into place, so a crash
    mid-write never leaves a half-written checkpoint, and an existing one at `path` survives
    until the new one is complete.

    Args:
        dtype: store floating-point weights in this dtype (e.g. torch.float16 to halve the size);
            default: as they are.
    """
    with atomic_folder(path) as staging:
        write_model_files(model, config, staging, dtype)


def write_model_files(model: nn.Module, config: Config, folder: Path, dtype: torch.dtype | None = None) -> None:
    """Write config.json and model.safetensors into an existing folder (not atomically: callers
    write into a staging folder, as save_model does)."""
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[name] = tensor.contiguous()
    document = {
        "format_version": FORMAT_VERSION,
        "model_type": type(model).__name__,
        "config": config.to_dict(),
    }
    save_file(state, folder / WEIGHTS_NAME, metadata={"format_version": str(FORMAT_VERSION)})
    (folder / CONFIG_NAME).write_text(json.dumps(document, indent=2) + "\n")


def read_config(path: str | Path, model_type: str) -> dict[str, Any]:
    """The config dict of a model folder, checked to be of `model_type`."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"no checkpoint folder at {path}: expected a folder with {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} is missing: {path} is not a checkpoint folder")
    try:
        document = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_file} is not valid JSON ({error}): the checkpoint is corrupt") from error
    if not isinstance(document, dict) or "config" not in document:
        raise ValueError(f"{config_file} has no 'config' entry: not a checkpoint of this project")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{config_file} has format_version {version!r}; this version of soundstorm reads "
            f"format_version {FORMAT_VERSION}"
        )
    found = document.get("model_type")
    if found != model_type:
        raise ValueError(f"{path} holds a {found!r} model, expected {model_type!r}")
    return document["config"]


def load_model(
    model_class: type[ModelT],
    config_class: Any,
    path: str | Path,
    map_location: str | torch.device = "cpu",
) -> ModelT:
    """Build `model_class(config)` from `path/config.json` and load `path/model.safetensors`
    into it strictly: every parameter present, none extra, every shape equal."""
    path = Path(path)
    config = config_class.from_dict(read_config(path, model_class.__name__))
    weights_file = path / WEIGHTS_NAME
    if not weights_file.is_file():
        raise FileNotFoundError(f"{weights_file} is missing: the checkpoint at {path} is incomplete")
    try:
        state = load_file(weights_file, device=str(map_location))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{weights_file} cannot be read ({error}): the file is corrupt or truncated") from error
    model = model_class(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{weights_file} does not match its config: missing tensors {missing[:8]}, "
            f"unexpected tensors {unexpected[:8]}"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(
                f"{weights_file}: tensor {name} has shape {tuple(tensor.shape)}, the config "
                f"implies {tuple(expected[name].shape)}"
            )
    # Weights stored in fp16 are cast to the model's own dtype by load_state_dict's copy.
    model.load_state_dict(state, strict=True)
    return model.to(map_location)
