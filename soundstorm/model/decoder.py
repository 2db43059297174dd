"""A causal transformer decoder with rotary positions and a KV cache.

Shared by the autoregressive acoustic baseline (soundstorm.baselines) and the text-to-semantic
model (soundstorm.text): both are decoder-only language models over one token sequence, and
both generate one token per forward pass. The cache makes a pass cost O(T) instead of O(T^2):
`forward(x, cache)` appends the new keys and values to the cache and attends over all of them,
so incremental decoding computes the same logits as a full forward pass over the prefix
(tests/test_ar_baseline.py checks it).

Notation: B batch, T new positions, P cached positions, D width, H heads, Dh = D / H.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from soundstorm.model.conformer import FeedForward, RotaryEmbedding, apply_rotary


@dataclass
class KVCache:
    """Keys and values of every layer for the positions seen so far.

    Each layer's keys and values live in buffers [B, H, capacity, Dh] that double when full,
    so appending a position writes only that position. Concatenating instead copies the whole
    past into a fresh allocation at every step: for the text-to-semantic model, 60% of a
    decoding step's time (buffers past glibc's mmap threshold are page-faulted in anew each time).
    """

    keys: list[Tensor] = field(default_factory=list)  # [B, H, capacity, Dh] per layer
    values: list[Tensor] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # positions held, per layer

    @property
    def length(self) -> int:
        return self.lengths[0] if self.lengths else 0

    def repeat(self, n: int) -> None:
        """Hold n copies of a batch-1 cache (one prompt, read once, continued n ways)."""
        if self.keys and self.keys[0].shape[0] != 1:
            raise ValueError(f"only a batch-1 cache can be repeated, this one holds {self.keys[0].shape[0]}")
        self.keys = [k.repeat(n, 1, 1, 1) for k in self.keys]
        self.values = [v.repeat(n, 1, 1, 1) for v in self.values]

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add k, v [B, H, T, Dh] to layer's cache; -> all its keys and values [B, H, P + T, Dh]."""
        if layer == len(self.keys):
            self.keys.append(k.new_empty(*k.shape[:2], max(64, 2 * k.shape[2]), k.shape[3]))
            self.values.append(v.new_empty(self.keys[-1].shape))
            self.lengths.append(0)
        past, T = self.lengths[layer], k.shape[2]
        if past + T > self.keys[layer].shape[2]:  # full: double (amortized O(1) per position)
            capacity = max(2 * self.keys[layer].shape[2], past + T)
            for buffers in (self.keys, self.values):
                grown = buffers[layer].new_empty(*k.shape[:2], capacity, k.shape[3])
                grown[:, :, :past] = buffers[layer][:, :, :past]
                buffers[layer] = grown
        # Under autocast new keys may come in another dtype than the buffer's: copy_ casts.
        self.keys[layer][:, :, past : past + T].copy_(k)
        self.values[layer][:, :, past : past + T].copy_(v)
        self.lengths[layer] = past + T
        return self.keys[layer][:, :, : past + T], self.values[layer][:, :, : past + T]


# The attention kernels a cached decoding pass may use on a GPU: all but cuDNN's. PyTorch prefers
# cuDNN's on Hopper for bf16, and cuDNN builds an execution plan for every new key length, which
# a KV cache changes at every step: on an H100, 61 ms per step of the AR baseline against 2.8 ms
# once every length had been seen (docs/gpu.md). Flash and memory-efficient attention need no plan.
DECODING_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def decoding_attention(device: torch.device) -> AbstractContextManager[None]:
    """The attention kernels for cached decoding on device: DECODING_BACKENDS on a GPU, PyTorch's
    own choice elsewhere (entering the context costs a few microseconds a step for nothing)."""
    return sdpa_kernel(DECODING_BACKENDS) if device.type == "cuda" else nullcontext()


class CausalSelfAttention(nn.Module):
    """dropout: on the attention weights, in training (the block drops the residual branch)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None, layer: int) -> Tensor:
        """x [B, T, D]; cos, sin [T, Dh] for the new positions P..P+T-1."""
        qkv = rearrange(self.qkv(self.norm(x)), "b t (three h d) -> three b h t d", three=3, h=self.heads)
        q, k = apply_rotary(qkv[:2], cos, sin).unbind(0)  # [B, H, T, Dh] each, one rotation for both
        v = qkv[2]
        T = q.shape[2]
        if cache is not None:
            k, v = cache.append(layer, k, v)  # [B, H, P + T, Dh]
        past = k.shape[2] - T
        if past == 0:
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1,
                                                      dropout_p=self.dropout if self.training else 0.0)
        elif T == 1:  # one new position sees every cached one: no mask to build
            attended = F.scaled_dot_product_attention(q, k, v)
        else:  # new position t sees cached positions and new ones up to itself
            allowed = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)  # [T, P + T]
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.out(rearrange(attended, "b h t d -> b t (h d)"))

    def step(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, layer: int) -> Tensor:
        """forward for one new position per sequence, in inference: x [B, D] -> [B, D]; cos,
        sin [1, Dh] for position P = the cache's length."""
        B = x.shape[0]
        qkv = self.qkv(self.norm(x)).view(B, 3, self.heads, 1, -1)  # [B, 3, H, 1, Dh]
        qk = apply_rotary(qkv[:, :2], cos, sin)  # [B, 2, H, 1, Dh]: q and k, one rotation for both
        k, v = cache.append(layer, qk[:, 1], qkv[:, 2])  # [B, H, P + 1, Dh]
        attended = F.scaled_dot_product_attention(qk[:, 0], k, v)  # [B, H, 1, Dh]: sees every position
        return self.out(attended.reshape(B, -1))


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.attention = CausalSelfAttention(dim, heads, attention_dropout)
        self.ff = FeedForward(dim, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None, layer: int) -> Tensor:
        x = x + self.dropout(self.attention(x, cos, sin, cache, layer))
        return x + self.ff(x)

    def step(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, layer: int) -> Tensor:
        """forward for one new position per sequence, in inference (no dropout): x [B, D]."""
        x = x + self.attention.step(x, cos, sin, cache, layer)
        ff = self.ff
        return x + ff.down(F.silu(ff.up(ff.norm(x))))


class CausalDecoder(nn.Module):
    """Pre-norm decoder blocks over embeddings [B, T, D] -> hidden states [B, T, D]."""

    def __init__(self, dim: int, depth: int, heads: int, ff_dim: int, dropout: float, rope_base: float = 10000.0,
                 attention_dropout: float | None = None) -> None:
        """attention_dropout: on the attention weights (None: `dropout`)."""
        super().__init__()
        self.rotary = RotaryEmbedding(dim // heads, rope_base)
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.blocks = nn.ModuleList(DecoderBlock(dim, heads, ff_dim, dropout, attention_dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """x [B, T, D], the embeddings of positions P..P+T-1 where P = cache.length (0 without
        a cache); the cache, if given, is extended by these T positions."""
        past = cache.length if cache is not None else 0
        cos, sin = self.rotary(x.shape[1], offset=past)  # [T, Dh]
        with decoding_attention(x.device) if cache is not None else nullcontext():
            for layer, block in enumerate(self.blocks):
                x = block(x, cos, sin, cache, layer)
        return self.norm(x)

    def step(self, x: Tensor, cache: KVCache) -> Tensor:
        """One new position per sequence, for incremental decoding: x [B, D], the embeddings of
        position P = cache.length -> hidden states [B, D]; the cache is extended by it. The same
        numbers as forward(x[:, None], cache)[:, 0], bit for bit (tests/test_decoder_step.py).

        Why a second path: a one-position pass does little arithmetic, and its time goes to
        launching ops and to Python. Without forward's reshapes for T positions, dropout modules
        and causal-mask cases, a step of the bundled text-to-semantic model takes about 1.6 ms
        instead of 2.6 (benchmarks/step_weights.py, docs/benchmarks.md)."""
        if self.training:
            raise RuntimeError("CausalDecoder.step is for inference (it has no dropout): call eval() first")
        if x.dim() != 2:
            raise ValueError(f"step takes one position per sequence, x [B, D], got {tuple(x.shape)}")
        cos, sin = self.rotary(1, offset=cache.length)  # [1, Dh]
        with decoding_attention(x.device):
            for layer, block in enumerate(self.blocks):
                x = block.step(x, cos, sin, cache, layer)
        return self.norm(x)
