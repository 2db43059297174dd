"""What a voice prompt's frames give the frames after them, layer by layer, kept between passes.

A SoundStorm decoding pass runs the Conformer over the prompt's frames and the frames being
generated together. The prompt's codes never change, so most of what its frames contribute to
the others, their attention keys and values and the depthwise convolution's input at its last
frames, changes little from pass to pass: only through what the prompt's frames attend to
after the prompt, which the passes reveal. Recording it in one full pass
(`Conformer.forward(..., record=states)`) lets the next passes run over the frames after the
prompt alone (`Conformer.forward_after_prompt`). The prompt is 3 s of a dialogue turn's 6-7:
about half of each pass's work (docs/prompt_reuse.md measures the saving and what it costs).

Right after recording, before any code after the prompt changes, a pass after the prompt
computes what the full pass computed at those frames, up to float rounding
(tests/test_prompt_states.py); later passes see the prompt as it was when recorded.

Notation: B batch, P prompt frames (the longest prompt; shorter ones padded), H heads, Dh head
width, D model width, C = kernel_size // 2 frames of convolution context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class PromptStates:
    """The prompt's part of every Conformer layer, for the examples of one batch.

    Made empty with the prompt lengths, filled by a recording pass (one append per layer)."""

    lengths: Tensor  # int64 [B] prompt frames of each example (the first lengths[b] frames)
    keys: list[Tensor] = field(default_factory=list)  # per layer [B, H, P, Dh], rotated
    values: list[Tensor] = field(default_factory=list)  # per layer [B, H, P, Dh]
    conv_tails: list[Tensor] = field(default_factory=list)  # per layer [B, C, D]: conv input before each prompt's end
    # P: the longest prompt, the frames kept per example (read once: a device sync on a GPU).
    frames: int = field(init=False)

    def __post_init__(self) -> None:
        self.frames = int(self.lengths.max()) if len(self.lengths) else 0

    def record_attention(self, k: Tensor, v: Tensor) -> None:
        """Keep a layer's keys and values [B, H, T, Dh] at the prompt frames [0, P)."""
        P = self.frames
        self.keys.append(k[:, :, :P].contiguous())
        self.values.append(v[:, :, :P].contiguous())

    def record_conv_input(self, h: Tensor, context: int) -> None:
        """Keep a layer's depthwise convolution input h [B, T, D] at the `context` frames before
        each prompt's end; zeros where a prompt is shorter, as the convolution's zero padding
        before the first frame."""
        offsets = torch.arange(-context, 0, device=h.device)  # [C]
        rows = self.lengths.to(h.device)[:, None] + offsets  # [B, C]
        tail = h.gather(1, rows.clamp(min=0)[:, :, None].expand(-1, -1, h.shape[-1]))  # [B, C, D]
        self.conv_tails.append(tail.masked_fill((rows < 0)[:, :, None], 0.0))

    def key_mask(self, valid_after: Tensor) -> Tensor:
        """The keys a frame after the prompt attends to: its example's prompt frames, then the
        valid frames after the prompt. valid_after [B, G] -> bool [B, 1, 1, P + G]."""
        in_prompt = torch.arange(self.frames, device=valid_after.device) < self.lengths.to(valid_after.device)[:, None]
        return torch.cat([in_prompt, valid_after], dim=1)[:, None, None, :]
