"""A folder's record of the settings its files were made with, so that a resumed or repeated run
cannot mix files made otherwise into it (`corpus augment`, `corpus join`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from soundstorm.atomic import atomic_write_text


def check_made_with(record: Path, settings: Mapping[str, object], what: str,
                    defaults: Mapping[str, object] | None = None) -> None:
    """Write `settings` to the JSON file `record` if there is none; otherwise raise ValueError
    naming the first setting that differs from the one recorded. A key the record lacks reads as
    defaults[key]: the value folders made before that setting existed had. `what` names the
    folder's files in the message ("copies", "utterances")."""
    if not record.is_file():
        atomic_write_text(record, json.dumps(dict(settings), indent=2) + "\n")
        return
    found = json.loads(record.read_text())
    for key, value in settings.items():
        made_with = found.get(key, (defaults or {}).get(key))
        if made_with != value:
            raise ValueError(f"{record.parent} holds {what} made with {key} = {made_with!r}, but this run has "
                             f"{key} = {value!r}: use another folder, or delete that one to remake it")
