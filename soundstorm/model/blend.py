"""Keep a share of a fine-tune's change: W0 + share (W1 - W0) for every weight (WiSE-FT,
Wortsman et al., 2022).

A fine-tune on a minute of one voice moves a model towards that minute and away from what it
did well on everything else; interpolating the weights back towards the original keeps much of
the new (the voice) and gives back much of the old. On the held-out flite-rms in text to speech,
SoundStorm enrolled at share 0.5 kept 0.79 of the whole fine-tune's 0.84 similarity to the
prompt and lost none of the words the whole fine-tune lost (CER -0.08; docs/enrolment.md).

    blend_weights(adapted, original, 0.5)   # adapted, in place
"""

from __future__ import annotations

import torch
from torch import nn


def blend_weights(adapted: nn.Module, original: nn.Module, share: float) -> nn.Module:
    """Set each floating-point tensor of `adapted` to original + share (adapted - original), in
    place; the two must have the same state_dict names and shapes. -> adapted."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the share of a fine-tune's change to keep must be in [0, 1], got {share}")
    if share == 1.0:
        return adapted
    before = original.state_dict()
    with torch.no_grad():
        for name, tensor in adapted.state_dict().items():
            if tensor.is_floating_point():
                start = before[name].to(tensor.device, tensor.dtype)
                tensor.copy_(start + share * (tensor - start))
    return adapted
