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
    # [B, P] bool, False at padding (sequences of different lengths, left-padded: see
    # CausalDecoder.forward's valid); None: every position is real.
    valid: Tensor | None = None

    @property
    def length(self) -> int:
        return self.lengths[0] if self.lengths else 0

    def repeat(self, n: int) -> None:
        """Hold n copies of a batch-1 cache (one prompt, read once, continued n ways)."""
        if self.keys and self.keys[0].shape[0] != 1:
            raise ValueError(f"only a batch-1 cache can be repeated, this one holds {self.keys[0].shape[0]}")
        self.keys = [k.repeat(n, 1, 1, 1) for k in self.keys]
        self.values = [v.repeat(n, 1, 1, 1) for v in self.values]
        self.valid = None if self.valid is None else self.valid.repeat(n, 1)

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

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None, layer: int,
                mask: Tensor | None = None) -> Tensor:
        """x [B, T, D]; cos, sin [T, Dh] for the new positions P..P+T-1; mask [B, 1, T, P + T]
        bool, True = attend (None: causal over every position)."""
        qkv = rearrange(self.qkv(self.norm(x)), "b t (three h d) -> three b h t d", three=3, h=self.heads)
        q, k = apply_rotary(qkv[:2], cos, sin).unbind(0)  # [B, H, T, Dh] each, one rotation for both
        v = qkv[2]
        T = q.shape[2]
        if cache is not None:
            k, v = cache.append(layer, k, v)  # [B, H, P + T, Dh]
        past = k.shape[2] - T
        if mask is not None:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                      dropout_p=self.dropout if self.training else 0.0)
        elif past == 0:
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1,
                                                      dropout_p=self.dropout if self.training else 0.0)
        elif T == 1:  # one new position sees every cached one: no mask to build
            attended = F.scaled_dot_product_attention(q, k, v)
        else:  # new position t sees cached positions and new ones up to itself
            allowed = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)  # [T, P + T]
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.out(rearrange(attended, "b h t d -> b t (h d)"))

    def step(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, layer: int,
             mask: Tensor | None = None) -> Tensor:
        """forward for one new position per sequence, in inference: x [B, D] -> [B, D]; cos,
        sin [1, Dh] for position P = the cache's length; mask [B, 1, 1, P + 1] bool, True =
        attend (None: every position)."""
        B = x.shape[0]
        qkv = self.qkv(self.norm(x)).view(B, 3, self.heads, 1, -1)  # [B, 3, H, 1, Dh]
        qk = apply_rotary(qkv[:, :2], cos, sin)  # [B, 2, H, 1, Dh]: q and k, one rotation for both
        k, v = cache.append(layer, qk[:, 1], qkv[:, 2])  # [B, H, P + 1, Dh]
        attended = F.scaled_dot_product_attention(qk[:, 0], k, v, attn_mask=mask)  # [B, H, 1, Dh]
        return self.out(attended.reshape(B, -1))


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.attention = CausalSelfAttention(dim, heads, attention_dropout)
        self.ff = FeedForward(dim, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None, layer: int,
                mask: Tensor | None = None) -> Tensor:
        x = x + self.dropout(self.attention(x, cos, sin, cache, layer, mask))
        return x + self.ff(x)

    def step(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, layer: int,
             mask: Tensor | None = None) -> Tensor:
        """forward for one new position per sequence, in inference (no dropout): x [B, D]."""
        x = x + self.attention.step(x, cos, sin, cache, layer, mask)
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

    def forward(self, x: Tensor, cache: KVCache | None = None, valid: Tensor | None = None) -> Tensor:
        """x [B, T, D], the embeddings of positions P..P+T-1 where P = cache.length (0 without
        a cache); the cache, if given, is extended by these T positions.

        valid [B, T] bool, False at padding: sequences of different lengths in one batch, each
        left-padded so that all end at the last position (and step on together). No position
        attends to padding (a padding position attends to itself alone, so that no row of the
        softmax is empty; its output is never read). Rotary attention depends only on distances
        between positions, so a left-padded sequence gets what it gets alone, up to float rounding."""
        B, T = x.shape[:2]
        past = cache.length if cache is not None else 0
        cos, sin = self.rotary(T, offset=past)  # [T, Dh]
        mask = None
        if valid is not None or (cache is not None and cache.valid is not None):
            new = valid if valid is not None else torch.ones(B, T, dtype=torch.bool, device=x.device)
            before = cache.valid if cache is not None and cache.valid is not None else new.new_ones(B, past)
            keys = torch.cat([before, new], dim=1)  # [B, P + T]
            if cache is not None:
                cache.valid = keys
            causal = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)  # [T, P + T]
            itself = torch.zeros_like(causal)
            itself[:, past:] = torch.eye(T, dtype=torch.bool, device=x.device)
            mask = ((causal & keys[:, None, :]) | itself)[:, None]  # [B, 1, T, P + T]
        with decoding_attention(x.device) if cache is not None else nullcontext():
            for layer, block in enumerate(self.blocks):
                x = block(x, cos, sin, cache, layer, mask)
        return self.norm(x)

    def step(self, x: Tensor, cache: KVCache) -> Tensor:
        """One new position per sequence, for incremental decoding: x [B, D], the embeddings of
        position P = cache.length -> hidden states [B, D]; the cache is extended by it. The same
        numbers as forward(x[:, None], cache)[:, 0], bit for bit (tests/test_decoder_step.py).

        Why a second path: a one-position pass does little arithmetic, and its time goes to
        launching ops and to Python. Without forward's reshapes for T positions, dropout modules
        and causal-mask cases, a pass of the bundled text-to-semantic model takes 8-17% less
        (3.11 against 3.54 ms in float32 on the AVX2 AMD EPYC, 2 threads; 2.50 against 2.70 with
        int8 step weights: benchmarks/step_weights.py, docs/benchmarks.md)."""
        if self.training:
            raise RuntimeError("CausalDecoder.step is for inference (it has no dropout): call eval() first")
        if x.dim() != 2:
            raise ValueError(f"step takes one position per sequence, x [B, D], got {tuple(x.shape)}")
        cos, sin = self.rotary(1, offset=cache.length)  # [1, Dh]
        mask = None
        if cache.valid is not None:  # a left-padded batch: the new position is real
            cache.valid = torch.cat([cache.valid, cache.valid.new_ones(x.shape[0], 1)], dim=1)  # [B, P + 1]
            mask = cache.valid[:, None, None, :]  # [B, 1, 1, P + 1]
        with decoding_attention(x.device):
            for layer, block in enumerate(self.blocks):
                x = block.step(x, cos, sin, cache, layer, mask)
        return self.norm(x)
