"""Manifests: one JSON object per line describing one utterance of a corpus.

Every corpus enters the project as a manifest, whether synthesized (`soundstorm corpus synth`)
or scanned from a user's folder (`soundstorm corpus scan`); the token cache is built from one.

    {"id": "slt/fortunes-000123", "path": "audio/slt/fortunes-000123.wav", "duration": 2.41,
     "sample_rate": 16000, "speaker": "flite-slt", "text": "Never trust a cat.",
     "phones": [["pau", 0.0, 0.12], ["n", 0.12, 0.19], ...], "split": "train"}

`path` is relative to the manifest's folder (or absolute); `phones` are (phone, start s, end s)
in time order, or null where unknown; `split` is train / valid / test / test-unseen-speaker, or
null when the corpus has no splits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from soundstorm.atomic import atomic_path

SPLITS = ("train", "valid", "test", "test-unseen-speaker")


@dataclass(frozen=True)
class Phone:
    phone: str
    start: float  # seconds
    end: float  # seconds


@dataclass(frozen=True)
class ManifestEntry:
    id: str  # unique within the manifest
    path: str  # audio file, relative to the manifest's folder or absolute
    duration: float  # seconds
    sample_rate: int  # Hz, of the file on disk
    speaker: str
    text: str | None = None
    phones: tuple[Phone, ...] | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # anything else a source records

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a manifest entry needs a non-empty id")
        if not self.duration > 0:
            raise ValueError(f"entry {self.id}: duration must be > 0 s, got {self.duration}")
        if self.sample_rate <= 0:
            raise ValueError(f"entry {self.id}: sample_rate must be > 0 Hz, got {self.sample_rate}")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"entry {self.id}: split must be one of {SPLITS} or null, got {self.split!r}")
        if self.phones is not None:
            previous_end = 0.0
            for phone in self.phones:
                if not (previous_end - 1e-6 <= phone.start <= phone.end):
                    raise ValueError(
                        f"entry {self.id}: phone timings must be in time order with start <= end; "
                        f"got {phone} after a phone ending at {previous_end:.3f} s"
                    )
                previous_end = phone.end

    def audio_path(self, root: Path) -> Path:
        """The audio file, resolved against the manifest's folder `root`."""
        path = Path(self.path)
        return path if path.is_absolute() else root / path

    def to_json(self) -> str:
        values = asdict(self)
        if self.phones is not None:
            values["phones"] = [[p.phone, round(p.start, 4), round(p.end, 4)] for p in self.phones]
        if not self.extra:
            del values["extra"]
        return json.dumps(values, ensure_ascii=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ManifestEntry:
        values = dict(values)
        phones = values.get("phones")
        if phones is not None:
            values["phones"] = tuple(Phone(str(p), float(s), float(e)) for p, s, e in phones)
        return cls(**values)


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """All entries of a JSONL manifest; a bad line raises ValueError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}: expected a JSONL file (soundstorm corpus scan writes one)")
    entries: list[ManifestEntry] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = ManifestEntry.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError, ValueError) as error:
                raise ValueError(f"{path}:{number}: not a valid manifest entry ({error})") from error
            if entry.id in seen:
                raise ValueError(f"{path}:{number}: duplicate id {entry.id!r}")
            seen.add(entry.id)
            entries.append(entry)
    return entries


def write_manifest(entries: Iterable[ManifestEntry], path: str | Path) -> None:
    """Write a JSONL manifest atomically."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for entry in entries:
            handle.write(entry.to_json() + "\n")
