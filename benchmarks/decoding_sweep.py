"""Decoding settings against quality: `soundstorm eval-tts` once per setting, one table.

    .venv/bin/python benchmarks/decoding_sweep.py --manifest data/synth/manifest.jsonl \
        --per-group 12 --threads 2 --out docs/decoding

Each setting changes one knob of DecodingOptions from the defaults (the first row); every run
speaks the same sentences in the same voices with the same seeds, so a row differs from the
first by its knob and by sampling noise alone. Writes SETTING/tts_eval.{md,json} for each and
decoding.md / decoding.json with the table. Run it alone: the dialogue's real-time factor is
a wall-clock figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.atomic import atomic_write_text  # noqa: E402
from soundstorm.cli import main as soundstorm  # noqa: E402

# name -> eval-tts flags; the first is the defaults.
SETTINGS: dict[str, list[str]] = {
    "defaults": [],
    "SoundStorm temperature 0.7": ["--temperature", "0.7"],
    "guidance 2": ["--guidance-scale", "2"],
    "t2s temperature 0.6": ["--t2s-temperature", "0.6"],
    "steps 8, 1, ...": ["--steps", "8", "1", "1", "1", "1", "1", "1", "1"],
}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def shown(path: Path) -> str:
    """A path as a reader would type it: relative to the working folder when inside it."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else relative


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--per-group", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    results = {}
    for name in args.settings:
        folder = args.out / slug(name)
        command = ["eval-tts", "--models", shown(args.models), "--manifest", str(args.manifest),
                   "--per-group", str(args.per_group), "--threads", str(args.threads),
                   "--out", str(folder), "--quiet", *SETTINGS[name]]
        sys.argv = ["soundstorm", *command]  # eval-tts writes the command it was run by from sys.argv
        code = soundstorm(command)
        if code != 0:
            return code
        results[name] = json.loads((folder / "tts_eval.json").read_text())

    lines = ["# Decoding settings against quality", "",
             "    .venv/bin/python benchmarks/decoding_sweep.py " + shlex.join(sys.argv[1:]), "",
             f"`soundstorm eval-tts` on {shown(args.models)} per setting ({args.per_group} held-out sentences per group, "
             "the same sentences, prompts and seeds in every row). WER: pocketsphinx; similarity: resemblyzer, to "
             "the 3 s prompt; RTF: the eval's ~30 s dialogue.", "",
             "| setting | WER training / held-out | CER training / held-out | similarity training / held-out | "
             "dialogue RTF |",
             "|---|---:|---:|---:|---:|"]
    table = []
    for name, result in results.items():
        rows = {r["group"]: r for r in result["rows"]}
        train, held = rows.get("training voices", {}), rows.get("held-out voices", {})
        rtf = result["dialogue"]["rtf"] if result["dialogue"] else float("nan")
        entry = {"setting": name, "flags": SETTINGS[name], "options": result["options"], "rtf": rtf,
                 **{f"{key}_{group}": r.get(key, float("nan")) for group, r in (("training", train), ("held_out", held))
                    for key in ("wer", "cer", "similarity")}}
        table.append(entry)
        lines.append(f"| {name} | {entry['wer_training']:.2f} / {entry['wer_held_out']:.2f} | "
                     f"{entry['cer_training']:.2f} / {entry['cer_held_out']:.2f} | "
                     f"{entry['similarity_training']:.3f} / {entry['similarity_held_out']:.3f} | {rtf:.3f} |")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    atomic_write_text(args.out / "decoding.md", markdown)
    atomic_write_text(args.out / "decoding.json", json.dumps({"rows": table}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
