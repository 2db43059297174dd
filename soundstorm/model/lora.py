"""Low-rank adapters (LoRA, Hu et al., 2021) on SoundStorm's Conformer, for speaker enrolment.

A fine-tune of the whole SoundStorm on one voice's minute is a full copy of the model (26 MB in
float16 for the bundled one). A low-rank adapter learns a change W + (alpha / r) B A of each
linear layer's weight W [O, I], with A [r, I] and B [O, r]; everything else stays frozen, so a
voice costs r (I + O) numbers a layer (1.5 MB at rank 16). Measured on speaker enrolment
(docs/enrolment.md), rank-16 adapters learn the voice as the whole model does, and with the
default blend read the text-to-semantic model's tokens as well; they do not forget less.

    wrapped = add_lora(copy_of_model, LoRAConfig(rank=16))    # train the wrappers' lora_a, lora_b
    adapter = learned_adapter(wrapped, config, weights_digest(model))
    voice_model = adapter.merged_into(model)        # a plain SoundStorm, no cost at inference
    adapter.save(folder); LoRAAdapter.load(folder)  # adapter.safetensors + adapter.json

Written here rather than taken from peft: what SoundStorm needs is its plain nn.Linear layers
wrapped for training and the learned product merged back into a plain model for inference (so
that float16 step weights, bf16 autocast and batching see an ordinary SoundStorm); peft would
bring its own wrapper model and accelerate for the twenty lines below.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from soundstorm.atomic import atomic_path, atomic_write_text
from soundstorm.checkpoint import weights_digest

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
# Every linear layer of a Conformer block: attention projections, both feed-forwards and the
# convolution module's pointwise convolutions.
CONFORMER_LINEARS = ("qkv", "out", "up", "down", "pointwise_in", "pointwise_out")


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 16
    alpha: float = 16.0  # the update is scaled by alpha / rank
    targets: tuple[str, ...] = CONFORMER_LINEARS  # names of the nn.Linear layers that get adapters
    within: str = "conformer"  # only layers under this submodule

    def __post_init__(self) -> None:
        if self.rank < 1 or not self.alpha > 0 or not self.targets:
            raise ValueError(f"LoRAConfig needs rank >= 1, alpha > 0 and at least one target, got {self}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Module):
    """base(x) + scale * x A^T B^T, base frozen; B starts at zero, so the wrapped model starts
    as the model. A starts as nn.Linear initializes its weight (as in the paper and peft)."""

    def __init__(self, base: nn.Linear, rank: int, scale: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        self.scale = scale
        bound = 1 / math.sqrt(base.in_features)  # kaiming_uniform_(a=sqrt(5)), nn.Linear's weight init
        # Drawn on the CPU, so that a seed gives the same start on every device.
        a = torch.empty(rank, base.in_features).uniform_(-bound, bound, generator=generator)
        self.lora_a = nn.Parameter(a.to(base.weight.device))  # [r, I]
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))  # [O, r]

    def forward(self, x: Tensor) -> Tensor:
        """x [..., I] -> [..., O]."""
        return self.base(x) + (x @ self.lora_a.t().to(x.dtype)) @ (self.scale * self.lora_b.t().to(x.dtype))

    def delta(self) -> Tensor:
        """The learned change of the base weight, [O, I]."""
        return self.scale * self.lora_b @ self.lora_a


@dataclass
class LoRAAdapter:
    """What a LoRA fine-tune learned: (A, B) per adapted layer, and the base model's digest."""

    config: LoRAConfig
    tensors: dict[str, Tensor]  # "<layer path>.lora_a" [r, I] and "<layer path>.lora_b" [O, r]
    base_weights: str  # weights_digest of the model the adapter was trained on

    @property
    def layers(self) -> list[str]:
        return sorted(name.removesuffix(".lora_a") for name in self.tensors if name.endswith(".lora_a"))

    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())

    def merged_into(self, model: nn.Module, digest: str | None = None) -> nn.Module:
        """A float32 copy of `model` with each adapted weight W replaced by W + scale B A; `model`
        must be the one the adapter was trained on (its digest is checked: pass `digest`, its
        weights_digest, where the caller has it already)."""
        digest = weights_digest(model) if digest is None else digest
        if digest != self.base_weights:
            raise ValueError(f"this adapter was trained on a model with weights {self.base_weights}, not this one "
                             f"({digest}): adapt the voice again with this model")
        merged = copy.deepcopy(model).float()
        modules = dict(merged.named_modules())
        for layer in self.layers:
            linear = modules.get(layer)
            a, b = self.tensors[f"{layer}.lora_a"].float(), self.tensors[f"{layer}.lora_b"].float()
            if not isinstance(linear, nn.Linear) or linear.weight.shape != (b.shape[0], a.shape[1]):
                raise ValueError(f"the adapter's layer {layer} ([{b.shape[0]}, {a.shape[1]}]) is not a linear layer "
                                 "of that shape in this model: it belongs to another architecture")
            with torch.no_grad():
                linear.weight += self.config.scale * (b.to(linear.weight.device) @ a.to(linear.weight.device))
        return merged

    def save(self, folder: str | Path, dtype: torch.dtype = torch.float16) -> None:
        """adapter.safetensors (in `dtype`) and adapter.json, each written atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / ADAPTER_WEIGHTS) as staging:
            save_file({name: t.detach().to("cpu", dtype).contiguous() for name, t in self.tensors.items()}, str(staging))
        config = {**asdict(self.config), "targets": list(self.config.targets)}
        atomic_write_text(folder / ADAPTER_CONFIG, json.dumps(
            {"model_type": "LoRAAdapter", "config": config, "base_weights": self.base_weights}, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> LoRAAdapter:
        folder = Path(folder)
        for needed in (folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS):
            if not needed.is_file():
                raise FileNotFoundError(f"{folder} is not a LoRA adapter: it lacks {needed.name}")
        try:
            meta = json.loads((folder / ADAPTER_CONFIG).read_text())
            config = LoRAConfig(**{**meta["config"], "targets": tuple(meta["config"]["targets"])})
            base = str(meta["base_weights"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{folder / ADAPTER_CONFIG} is not a LoRA adapter's config ({error!r})") from None
        tensors = load_file(str(folder / ADAPTER_WEIGHTS))
        return cls(config, {name: t.float() for name, t in tensors.items()}, base)


def add_lora(model: nn.Module, config: LoRAConfig, seed: int = 0) -> dict[str, LoRALinear]:
    """Wrap the target layers of `model` (in place) in LoRALinear and freeze every other
    parameter; -> the wrappers by layer path. Raises if no layer matches."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    root = model.get_submodule(config.within) if config.within else model
    prefix = f"{config.within}." if config.within else ""
    wrapped: dict[str, LoRALinear] = {}
    for path, module in list(root.named_modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear and name in config.targets:
                wrapper = LoRALinear(child, config.rank, config.scale, generator)
                setattr(module, name, wrapper)
                wrapped[prefix + (f"{path}.{name}" if path else name)] = wrapper
    if not wrapped:
        raise ValueError(f"no nn.Linear named {', '.join(config.targets)} under {config.within or 'the model'}")
    return wrapped


def learned_adapter(wrapped: dict[str, LoRALinear], config: LoRAConfig, base_weights: str) -> LoRAAdapter:
    """The adapter that add_lora's wrappers hold now (copied to the CPU), for the model whose
    weights_digest is base_weights."""
    tensors = {}
    for path, wrapper in wrapped.items():
        tensors[f"{path}.lora_a"] = wrapper.lora_a.detach().cpu().clone()
        tensors[f"{path}.lora_b"] = wrapper.lora_b.detach().cpu().clone()
    return LoRAAdapter(config, tensors, base_weights)
