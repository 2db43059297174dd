"""A bidirectional Conformer (Gulati et al., 2020) with rotary position embeddings.

Padding never leaks: attention masks padded keys, and the depthwise convolution sees zeros
at padded frames (exactly what it sees past the end of an unpadded sequence), so a padded
example computes the same values on its valid frames as the same example alone. Every
module is position-wise apart from those two, so padded frames cannot reach valid ones.

Notation: B batch, T frames, D model width, H heads, Dh = D / H head width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from soundstorm.model.prompt_states import PromptStates


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al., 2021), rotate-half convention."""

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)  # [Dh / 2]

    def forward(self, num_frames: int, offset: int = 0) -> tuple[Tensor, Tensor]:
        """cos and signed sin tables of positions offset..offset+T-1, each [T, Dh], float32
        (the sin table's first half is negated: see apply_rotary)."""
        positions = torch.arange(offset, offset + num_frames, device=self.inv_freq.device, dtype=torch.float32)
        angles = torch.outer(positions, self.inv_freq)  # [T, Dh / 2]
        cos, sin = angles.cos(), angles.sin()
        return torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x [..., T, Dh] by the tables cos, sin [T, Dh] of RotaryEmbedding, rotate-half
    convention: halves [a, b] -> [a cos - b sin, b cos + a sin]. The roll and the signed sin
    table do in four elementwise ops what chunk, neg and cat do in six (the text-to-semantic
    model's one-token steps are bound by the number of ops); the result is bit for bit the same."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # x may be bf16 under autocast
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.dropout(F.silu(self.up(self.norm(x))))  # [B, T, hidden]
        return self.dropout(self.down(h))  # [B, T, D]


class SelfAttention(nn.Module):
    """dropout applies to the output projection; attention_dropout to the attention weights."""

    def __init__(self, dim: int, heads: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.attention_dropout = attention_dropout
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, rotary: tuple[Tensor, Tensor], key_mask: Tensor | None) -> Tensor:
        """x [B, T, D]; key_mask [B, 1, 1, T] bool, True = attend (None: attend everywhere)."""
        return self.attend(*self.project(x, rotary), key_mask)

    def project(self, x: Tensor, rotary: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, T, D] -> q, k, v [B, H, T, Dh], q and k rotated by the tables rotary ([T, Dh],
        or [B, 1, T, Dh] for positions that differ by example)."""
        qkv = self.qkv(self.norm(x))  # [B, T, 3D]
        qkv = rearrange(qkv, "b t (three h d) -> three b h t d", three=3, h=self.heads)
        q, k = apply_rotary(qkv[:2], *rotary).unbind(0)  # [B, H, T, Dh] each, one rotation for both
        return q, k, qkv[2]

    def attend(self, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None) -> Tensor:
        """q [B, H, T, Dh] over k, v [B, H, T', Dh]; key_mask [B, 1, 1, T'] -> [B, T, D]."""
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.attention_dropout if self.training else 0.0
        )  # [B, H, T, Dh]
        return self.out_dropout(self.out(rearrange(attended, "b h t d -> b t (h d)")))


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, norm, SiLU, pointwise conv.

    LayerNorm replaces the original BatchNorm: batch statistics would mix examples (and their
    padding) together, so a batched example would no longer equal the same example alone.
    """

    def __init__(self, dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.conv_norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    @property
    def context(self) -> int:
        """C: the frames on each side that the depthwise convolution reads."""
        return self.depthwise.kernel_size[0] // 2

    def forward(self, x: Tensor, valid: Tensor | None) -> Tensor:
        """x [B, T, D]; valid [B, T] bool, True = real frame (None: all real)."""
        return self.mix(self.gate(x, valid))

    def gate(self, x: Tensor, valid: Tensor | None) -> Tensor:
        """x [B, T, D] -> the depthwise convolution's input [B, T, D], zero at padded frames."""
        h = F.glu(self.pointwise_in(self.norm(x)), dim=-1)  # [B, T, D]
        if valid is not None:
            h = h.masked_fill(~valid[:, :, None], 0.0)  # padded frames look like the zero padding
        return h

    def mix(self, h: Tensor, before: Tensor | None = None) -> Tensor:
        """The rest of the module on gate's output h [B, T, D] -> [B, T, D]. before [B, C, D]:
        the convolution's input at the C frames before the first (None: zeros, the sequence's
        start), e.g. the end of a voice prompt that this pass does not recompute."""
        if before is None:
            h = self.depthwise(h.transpose(1, 2)).transpose(1, 2)  # [B, T, D]
        else:
            padded = F.pad(torch.cat([before, h], dim=1).transpose(1, 2), (0, self.context))  # [B, D, C + T + C]
            h = F.conv1d(padded, self.depthwise.weight, self.depthwise.bias, groups=h.shape[-1]).transpose(1, 2)
        h = F.silu(self.conv_norm(h))
        return self.dropout(self.pointwise_out(h))


class ConformerBlock(nn.Module):
    """Macaron block: half FF, self-attention, convolution, half FF, final norm."""

    def __init__(self, dim: int, heads: int, ff_dim: int, kernel_size: int, dropout: float,
                 attention_dropout: float) -> None:
        super().__init__()
        self.ff_in = FeedForward(dim, ff_dim, dropout)
        self.attention = SelfAttention(dim, heads, dropout, attention_dropout)
        self.conv = ConvModule(dim, kernel_size, dropout)
        self.ff_out = FeedForward(dim, ff_dim, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        x: Tensor,
        rotary: tuple[Tensor, Tensor],
        key_mask: Tensor | None,
        valid: Tensor | None,
        record: PromptStates | None = None,
    ) -> Tensor:
        """x [B, T, D] -> [B, T, D]; record: keep this layer's part of the prompt in it."""
        x = x + 0.5 * self.ff_in(x)
        q, k, v = self.attention.project(x, rotary)
        if record is not None:
            record.record_attention(k, v)
        x = x + self.attention.attend(q, k, v, key_mask)
        h = self.conv.gate(x, valid)
        if record is not None:
            record.record_conv_input(h, self.conv.context)
        x = x + self.conv.mix(h)
        x = x + 0.5 * self.ff_out(x)
        return self.norm(x)

    def forward_after_prompt(self, x: Tensor, rotary: tuple[Tensor, Tensor], key_mask: Tensor, valid: Tensor,
                             prompt: PromptStates, layer: int) -> Tensor:
        """x [B, G, D], the frames after each prompt; their keys and values follow the prompt's
        (key_mask [B, 1, 1, P + G]) and their convolution reads the prompt's last frames."""
        x = x + 0.5 * self.ff_in(x)
        q, k, v = self.attention.project(x, rotary)
        k = torch.cat([prompt.keys[layer].to(k.dtype), k], dim=2)  # [B, H, P + G, Dh]
        v = torch.cat([prompt.values[layer].to(v.dtype), v], dim=2)
        x = x + self.attention.attend(q, k, v, key_mask)
        h = self.conv.gate(x, valid)
        x = x + self.conv.mix(h, before=prompt.conv_tails[layer].to(h.dtype))
        x = x + 0.5 * self.ff_out(x)
        return self.norm(x)


class Conformer(nn.Module):
    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        ff_dim: int,
        kernel_size: int,
        dropout: float,
        rope_base: float,
        attention_dropout: float | None = None,
    ) -> None:
        """attention_dropout: on the attention weights (None: `dropout`)."""
        super().__init__()
        self.rotary = RotaryEmbedding(dim // heads, rope_base)
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.blocks = nn.ModuleList(
            ConformerBlock(dim, heads, ff_dim, kernel_size, dropout, attention_dropout) for _ in range(depth)
        )

    def forward(self, x: Tensor, valid: Tensor | None = None, record: PromptStates | None = None) -> Tensor:
        """x [B, T, D] -> [B, T, D]. valid [B, T] bool marks real frames; None means no padding.
        record: an empty PromptStates, filled with the prompt's part of every layer.

        Values at padded frames of the output are meaningless and must be ignored.
        """
        T = x.shape[1]
        rotary = self.rotary(T)
        key_mask = None if valid is None else valid[:, None, None, :]  # [B, 1, 1, T]
        if record is not None and record.keys:
            raise ValueError("record must be an empty PromptStates: this one is already filled")
        for block in self.blocks:
            x = block(x, rotary, key_mask, valid, record)
        return x

    def forward_after_prompt(self, x: Tensor, valid: Tensor, prompt: PromptStates) -> Tensor:
        """The frames after each example's prompt, over the prompt's recorded states.

        x [B, G, D]: frame g of example b is its frame prompt.lengths[b] + g; valid [B, G] bool
        marks real frames. -> [B, G, D], what forward gives at those frames when the prompt's
        states are current (prompt_states.py)."""
        B, G, _ = x.shape
        if len(prompt.keys) != len(self.blocks) or prompt.lengths.shape != (B,):
            raise ValueError(f"prompt states of {len(prompt.keys)} layers and {tuple(prompt.lengths.shape)} examples "
                             f"do not fit a {len(self.blocks)}-layer Conformer over {B} examples")
        positions = prompt.lengths.to(x.device)[:, None] + torch.arange(G, device=x.device)  # [B, G]
        cos, sin = self.rotary(prompt.frames + G)  # [P + G, Dh]
        rotary = (cos[positions][:, None], sin[positions][:, None])  # [B, 1, G, Dh]
        key_mask = prompt.key_mask(valid)  # [B, 1, 1, P + G]
        for layer, block in enumerate(self.blocks):
            x = block.forward_after_prompt(x, rotary, key_mask, valid, prompt, layer)
        return x
