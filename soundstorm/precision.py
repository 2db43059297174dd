"""Inference precision: float32, or bf16 autocast where the hardware runs it fast.

bf16 autocast runs the matrix products (most of a SoundStorm pass) in bfloat16 and keeps
reductions, norms and the output logits in float32. On a GPU with bf16 support, or a CPU with
avx512_bf16 or AMX, that is faster; on other CPUs bf16 is emulated and slower than float32,
so "auto" only turns it on where it pays. A model that decodes one token per pass is a
different case (resolve_step_precision): "auto" keeps it in float32, and on a CPU reads its
weights from float16 or int8 copies in the passes that decode one position (step_weights_dtype).

    precision = resolve_precision("auto", torch.device("cpu"))   # "bf16" or "fp32"
    with autocast(precision, device):
        codes = model.generate(...)
"""

from __future__ import annotations

import argparse
from typing import Literal

import torch

Precision = Literal["fp32", "bf16"]
PRECISIONS = ("auto", "fp32", "bf16")


def bf16_is_fast(device: torch.device) -> bool:
    """Whether this device has native bf16 arithmetic (a GPU that supports it, or a CPU with
    avx512_bf16 or AMX tiles)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """"auto" -> "bf16" where bf16_is_fast(device), else "fp32"; "fp32" and "bf16" as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    return precision  # type: ignore[return-value]


def resolve_training_bf16(setting: bool | str, device: torch.device) -> bool:
    """Whether training autocasts to bf16: a recipe's `optimizer.bf16` (true, false or "auto")
    on `device`. "auto" is bf16_is_fast(device); true and false as given (true on a device
    without native bf16 is slow; the trainer says so)."""
    if setting == "auto":
        return bf16_is_fast(device)
    if setting is True or setting is False:
        return setting
    raise ValueError(f'bf16 must be true, false or "auto", got {setting!r}')


def resolve_step_precision(precision: str, device: torch.device) -> Precision:
    """The precision of a model that decodes one token per forward pass (the text-to-semantic
    model). "auto" is float32 on every device: each step multiplies one position by every weight,
    so its time goes to reading weights and launching ops, not to arithmetic, and autocast adds
    ops: under torch.inference_mode it casts every weight again at every step (its cast cache is
    off there). On a CPU, the six turns of benchmarks/dialogue_speed.py took 1.33 s in float32
    against 1.57 s under bf16 autocast on 2 threads (1.84 s against 2.70 s on one); on an H100,
    a step of the 48M-parameter AR baseline took 1.94 ms in float32 against 2.82 ms under bf16
    autocast (benchmarks/ar_step_profile.py, docs/gpu.md). "fp32" and "bf16" as given."""
    resolved = resolve_precision(precision, device)  # validates
    return "fp32" if precision == "auto" else resolved


def step_weights_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype of the weight copies that a one-position-per-pass model reads in those passes
    (soundstorm/model/step_linear.py), or None for its own weights. Such a pass reads every
    weight for one position: fewer bytes per weight make it faster. "auto" on a CPU:
    - int8 (weight-only, per output row, bfloat16 activations) on an AVX2 CPU without native
      bf16: PyTorch's int8 kernel is the fastest product there, where its float16 and bfloat16
      ones are slower than float32's (the bundled text-to-semantic model: 2.56 ms a token against
      2.81 with float16 copies and 3.42 in float32 on this project's AVX2 AMD EPYC, 2 threads,
      and a dialogue's six turns in one batch 0.56 s against 0.85 in float32; logits within 0.15
      of float32's on the test split, the same top token at 99.3% of positions, mean KL 9e-5 nats;
      eval-tts unchanged within noise: benchmarks/step_weights.py, docs/benchmarks.md);
    - float16 elsewhere (1.6x faster steps than float32 on an AMD EPYC with avx512_bf16; the
      bundled weights are stored in float16, so nothing they hold is lost).
    "fp32" asks for float32 throughout; on a GPU the pass is not bound by reading weights."""
    resolve_precision(precision, device)  # validates
    if precision != "auto" or device.type != "cpu":
        return None
    if torch.backends.cpu.get_cpu_capability() == "AVX2" and not bf16_is_fast(device):
        return torch.int8
    return torch.float16


def autocast(precision: Precision, device: torch.device) -> torch.autocast:
    """bf16 autocast on device for "bf16"; a disabled one (float32) for "fp32"."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """--precision {auto, fp32, bf16} for the commands that generate speech."""
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="bf16 autocast for SoundStorm and text-to-semantic, or float32 "
                             "(default auto: bf16 where the hardware has it)")
