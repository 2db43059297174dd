"""Half-precision weight copies for the passes that decode one position at a time.

A text-to-semantic step multiplies one position by every weight of the model: on a CPU its time
goes to reading the weights from memory, not to arithmetic (the bundled model's 5M float32
weights are 20 MB per token, more than its caches hold). Reading a float16 copy halves the bytes,
and PyTorch's CPU kernels for a float16 matrix-vector product are faster again: a step of the
bundled text-to-semantic model takes 1.96 ms against 3.16 ms in float32 on 2 threads of this
project's AMD EPYC (benchmarks/step_weights.py, docs/benchmarks.md). The bundled weights are stored in float16, so the
copy loses nothing they hold; only the activations entering and leaving each product are rounded
to float16 (logits within 0.011 of float32's on the test split, the same top token at 99.8% of
positions).

Passes over many positions (a prompt, training) keep the float32 weights: there the products are
bound by arithmetic, which a CPU does faster in float32 than in float16.

    converted = use_step_weights(model)   # every nn.Linear of model, in place
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Passes with at most this many rows (batch x positions) use the float16 copy: a one-token step
# of one sequence, or of a few; a batch of 8 sequences or a prompt is past the point where float16
# stops paying.
STEP_ROWS = 4


class StepLinear(nn.Module):
    """An nn.Linear (its parameters shared, not copied) that multiplies passes of at most
    STEP_ROWS rows by a float16 copy of its weights, made once, for inference. In training, under
    autocast, or for larger passes it is the linear it wraps. The copy is not saved
    (state_dict holds the float32 parameters) and does not follow later changes to them: convert
    a model after loading it, not before training it."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight  # [O, I]
        self.bias = linear.bias  # [O] or None
        self.register_buffer("step_weight", linear.weight.detach().to(dtype), persistent=False)
        self.register_buffer("step_bias", None if linear.bias is None else linear.bias.detach().to(dtype),
                             persistent=False)
        self.train(linear.training)  # a new module starts in training mode: keep the linear's

    def forward(self, x: Tensor) -> Tensor:
        """x [..., I] -> [..., O]."""
        rows = x.numel() // max(1, x.shape[-1])
        if rows > STEP_ROWS or self.training or torch.is_autocast_enabled(x.device.type):
            return F.linear(x, self.weight, self.bias)
        return F.linear(x.to(self.step_weight.dtype), self.step_weight, self.step_bias).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, step_dtype={self.step_weight.dtype}")


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
