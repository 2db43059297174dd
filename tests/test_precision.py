"""Inference precision: "auto" turns bf16 on only where the hardware has it, and autocast
really runs the matrix products in bf16 (and nothing else for "fp32")."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from soundstorm import precision
from soundstorm.precision import autocast, bf16_is_fast, resolve_precision, resolve_step_precision


def test_auto_follows_the_hardware_and_explicit_choices_stand() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if bf16_is_fast(cpu) else "fp32")
    assert resolve_precision("auto", torch.device("meta")) == "fp32"
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        resolve_precision("fp16", cpu)


def test_one_token_decoders_stay_float32_unless_bf16_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(precision, "bf16_is_fast", lambda device: True)  # a GPU or a CPU with bf16
    assert resolve_precision("auto", gpu) == "bf16" and resolve_precision("auto", cpu) == "bf16"
    assert resolve_step_precision("auto", cpu) == "fp32" and resolve_step_precision("auto", gpu) == "fp32"
    assert resolve_step_precision("bf16", cpu) == "bf16" and resolve_step_precision("fp32", cpu) == "fp32"
    assert resolve_step_precision("bf16", gpu) == "bf16"
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        resolve_step_precision("fp16", cpu)


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_autocast_sets_the_matmul_dtype(precision: str, dtype: torch.dtype) -> None:
    layer = nn.Linear(8, 8)
    with torch.inference_mode(), autocast(resolve_precision(precision, torch.device("cpu")), torch.device("cpu")):
        assert layer(torch.randn(2, 8)).dtype == dtype


def test_training_bf16_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(precision, "bf16_is_fast", lambda device, native=native: native)
        assert precision.resolve_training_bf16("auto", cpu) is native
        assert precision.resolve_training_bf16(True, cpu) is True  # an explicit choice stands
        assert precision.resolve_training_bf16(False, cpu) is False
    with pytest.raises(ValueError, match='"auto"'):
        precision.resolve_training_bf16("yes", cpu)
