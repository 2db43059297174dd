"""Low-precision weight copies for the passes that decode one position at a time.

A text-to-semantic step multiplies one position by every weight of the model: on a CPU its time
goes to reading the weights from memory and launching ops, not to arithmetic (the bundled model's
5M float32 weights are 20 MB per token, more than its caches hold). Reading fewer bytes per
weight makes the products faster, where the CPU has a fast kernel for them:
- float16 copies halve the bytes; on this project's AMD EPYC with avx512_bf16 a step took
  1.96 ms against 3.16 ms in float32 (2 threads). The bundled weights are stored in float16, so
  the copy loses nothing they hold; only the activations entering and leaving each product are
  rounded to float16 (logits within 0.011 of float32's on the test split, the same top token at
  99.8% of positions).
- int8 copies (each output row scaled to [-127, 127], activations in bfloat16) quarter them, for
  PyTorch's weight-only int8 kernel. On an AVX2 CPU without native bf16 (this project's other
  AMD EPYC) it is the only fast one: float16 and bfloat16 products are slower there than float32,
  int8 faster (soundstorm/precision.py's step_weights_dtype has the figures; logits within 0.15 of
  float32's, the same top token at 99.3% of positions, mean KL 9e-5 nats).
benchmarks/step_weights.py measures both; docs/benchmarks.md has the tables.

Passes over many positions (a prompt, training) keep the float32 weights: there the products are
bound by arithmetic, which a CPU does fastest in float32.

    converted = use_step_weights(model)                # every nn.Linear of model, in place: float16
    converted = use_step_weights(model, torch.int8)    # or int8
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Passes with at most this many rows (batch x positions) use the copy: a one-token step of one
# sequence, or of a few; a batch of 8 sequences or a prompt is past the point where float16 stops
# paying.
STEP_ROWS = 4
# The int8 kernel stays ahead of float32 further: on the AVX2 AMD EPYC, a 256 x 1024 layer took
# 105 us for 8 rows against 108 in float32 (68 against 123 for 6), so a batch of up to 8
# sentences (SpeechPipeline's text-to-semantic batches) steps on the int8 copy throughout.
INT8_STEP_ROWS = 8

# The weight copies a step may read.
STEP_DTYPES = (torch.float16, torch.bfloat16, torch.int8)


class StepLinear(nn.Module):
    """An nn.Linear (its parameters shared, not copied) that multiplies passes of at most
    STEP_ROWS rows (INT8_STEP_ROWS for int8) by a copy of its weights in `dtype`, made once, for
    inference. In training, under autocast, or for larger passes it is the linear it wraps. The copy is not saved
    (state_dict holds the float32 parameters) and does not follow later changes to them: convert
    a model after loading it, not before training it.

    dtype float16 or bfloat16: the weights rounded to it, and the activations entering the
    product too. int8: each output row's weights as int8 times one bfloat16 scale (symmetric,
    the row's largest magnitude at 127), multiplied with the activations rounded to bfloat16 by
    PyTorch's weight-only int8 kernel (the one torchao and gpt-fast use); the bias is added in
    float32 after it. A quarter of float32's bytes."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        if dtype not in STEP_DTYPES:
            raise ValueError(f"step weights are one of {', '.join(map(str, STEP_DTYPES))}, got {dtype}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight  # [O, I]
        self.bias = linear.bias  # [O] or None
        weight = linear.weight.detach()
        if dtype == torch.int8:
            quantized, scale = quantize_rows(weight)
            self.register_buffer("step_weight", quantized, persistent=False)  # int8 [O, I]
            self.register_buffer("step_scale", scale, persistent=False)  # bfloat16 [O]
            bias = None if linear.bias is None else linear.bias.detach().float()
        else:
            self.register_buffer("step_weight", weight.to(dtype), persistent=False)
            self.register_buffer("step_scale", None, persistent=False)
            bias = None if linear.bias is None else linear.bias.detach().to(dtype)
        self.register_buffer("step_bias", bias, persistent=False)
        self.max_rows = INT8_STEP_ROWS if dtype == torch.int8 else STEP_ROWS
        self.train(linear.training)  # a new module starts in training mode: keep the linear's

    def forward(self, x: Tensor) -> Tensor:
        """x [..., I] -> [..., O]."""
        rows = x.numel() // max(1, x.shape[-1])
        if rows > self.max_rows or self.training or torch.is_autocast_enabled(x.device.type):
            return F.linear(x, self.weight, self.bias)
        if self.step_scale is None:
            return F.linear(x.to(self.step_weight.dtype), self.step_weight, self.step_bias).to(x.dtype)
        flat = x.reshape(rows, self.in_features).to(torch.bfloat16)  # [R, I]: the kernel's activations
        y = torch._weight_int8pack_mm(flat, self.step_weight, self.step_scale).to(x.dtype)  # [R, O]
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.step_bias is None else y + self.step_bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, step_dtype={self.step_weight.dtype}")


def quantize_rows(weight: Tensor) -> tuple[Tensor, Tensor]:
    """weight [O, I] -> (int8 [O, I], bfloat16 scale [O]) with weight ~ int8 * scale[:, None]:
    each row's largest magnitude at 127. The codes are rounded against the bfloat16 scale the
    kernel multiplies by, so each weight lands on the nearest point of the grid actually used."""
    weight = weight.float()
    scale = (weight.abs().amax(dim=1) / 127).clamp_min(torch.finfo(torch.bfloat16).tiny).to(torch.bfloat16)
    quantized = (weight / scale.float()[:, None]).round().clamp(-128, 127).to(torch.int8)
    return quantized, scale


def use_step_weights(model: nn.Module, dtype: torch.dtype = torch.float16) -> int:
    """Replace every nn.Linear inside model by a StepLinear around it, in place, and make the
    copies of StepLinears already there anew (a converted model trained since, e.g. a copy
    fine-tuned on a voice, would otherwise step with its old weights); -> how many."""
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, name, StepLinear(child, dtype))
                replaced += 1
            elif isinstance(child, StepLinear):
                setattr(module, name, StepLinear(_plain(child), dtype))
                replaced += 1
    return replaced


def _plain(step: StepLinear) -> nn.Linear:
    """The nn.Linear a StepLinear wraps (sharing its parameters)."""
    linear = nn.Linear(step.in_features, step.out_features, bias=step.bias is not None, device="meta")
    linear.weight, linear.bias = step.weight, step.bias
    return linear.train(step.training)
