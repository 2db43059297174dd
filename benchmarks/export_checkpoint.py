"""Export the raw (or EMA) weights of a training checkpoint as a model folder.

    .venv/bin/python benchmarks/export_checkpoint.py runs/eq-ar/checkpoints/step-00001250 runs/eq-ar/raw

A run exports its EMA weights (`best/`, `model/`). Runs trained before the EMA warm-up
(soundstorm.train.ema.warmed_up_decay) kept decay ** steps of their random initialization in
that average, 16-29% for the few thousand steps of a CPU run, so a comparison of such runs reads
the raw weights at the end of the schedule instead. The config comes from the run's `best/`
(or `model/`) folder next to `checkpoints/`; the weights are written in float32.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.train.state import load_state  # noqa: E402


def model_class(config_folder: Path) -> type:
    import json

    from soundstorm import SoundStorm
    from soundstorm.baselines import ARAcousticModel
    from soundstorm.text.model import TextToSemantic

    known = {cls.__name__: cls for cls in (SoundStorm, ARAcousticModel, TextToSemantic)}
    saved = json.loads((config_folder / "config.json").read_text())
    name = saved.get("model_type")
    if name not in known:
        raise SystemExit(f"{config_folder}/config.json: not a model this script knows ({sorted(known)})")
    return known[name]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a run's checkpoints/step-N folder")
    parser.add_argument("out", type=Path, help="the model folder to write")
    parser.add_argument("--ema", action="store_true", help="the EMA weights instead of the raw ones")
    args = parser.parse_args()
    run = args.checkpoint.parent.parent
    config_folder = next((run / name for name in ("model", "best") if (run / name / "config.json").is_file()), None)
    if config_folder is None:
        raise SystemExit(f"{run}: no model/ or best/ folder to read the config from")
    cls = model_class(config_folder)
    model = cls.from_pretrained(config_folder)
    state = load_state(args.checkpoint)
    weights = state["ema"] if args.ema else state["modules"]["model"]
    if weights is None:
        raise SystemExit(f"{args.checkpoint}: the run kept no EMA")
    model.load_state_dict(weights, strict=True)
    model.save_pretrained(args.out)
    step = state["progress"]["step"]
    print(f"{args.out}: {cls.__name__} at step {step}, {'EMA' if args.ema else 'raw'} weights")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
