"""Phone inventories and frame-level phone targets, from the timings a manifest stores.

The corpus spells every phone in flite's lower-case CMU set (flite and festival print it,
pocketsphinx alignments are mapped to it: soundstorm.data.align); stress digits and the names
of silence differ between tools, so both are normalised here. A frame's target is the phone
whose interval holds the frame's centre; frames outside every phone, or with a phone the
inventory lacks, get IGNORE (no loss, no accuracy).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from soundstorm.data.manifest import Phone

IGNORE = -100  # cross_entropy's ignore_index
SILENCE = "sil"
_SILENCES = {"pau", "sil", "h#", "sp", "spn", "brth", "#", ""}


def normalize_phone(phone: str) -> str:
    """`AH0` -> `ah`, `pau` / `SIL` / `h#` -> `sil`."""
    name = phone.strip().lower().rstrip("0123456789")
    return SILENCE if name in _SILENCES else name


def build_inventory(utterances: Iterable[Sequence[Phone] | None], min_count: int = 1) -> tuple[str, ...]:
    """The sorted phones seen at least min_count times, silence first."""
    counts = Counter(normalize_phone(p.phone) for phones in utterances if phones for p in phones)
    names = sorted(name for name, count in counts.items() if count >= min_count and name != SILENCE)
    return (SILENCE, *names)


def frame_targets(phones: Sequence[Phone] | None, inventory: Sequence[str], num_frames: int,
                  frame_seconds: float, offset_seconds: float = 0.0) -> Tensor:
    """int64 [T] phone indices of frames whose centres lie at offset + (t + 0.5) * frame_seconds;
    IGNORE where no phone of the inventory covers the centre (or phones is None)."""
    targets = torch.full((num_frames,), IGNORE, dtype=torch.long)
    if not phones:
        return targets
    index = {name: i for i, name in enumerate(inventory)}
    starts = torch.tensor([p.start for p in phones], dtype=torch.float64)
    ends = torch.tensor([p.end for p in phones], dtype=torch.float64)
    labels = torch.tensor([index.get(normalize_phone(p.phone), IGNORE) for p in phones], dtype=torch.long)
    centres = offset_seconds + (torch.arange(num_frames, dtype=torch.float64) + 0.5) * frame_seconds  # [T]
    # The last phone starting at or before each centre; it counts if it has not ended yet.
    position = torch.searchsorted(starts, centres, right=True) - 1  # [T]
    inside = position >= 0
    safe = position.clamp(min=0)
    inside &= centres < ends[safe]
    targets[inside] = labels[safe[inside]]
    return targets
