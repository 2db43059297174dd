"""What SoundStorm's first level makes of a voice prompt, voice by voice, read off a token cache.

    .venv/bin/python benchmarks/prompt_probe.py --models models/demo --cache data/synth-tokens-4f372b210713 \
        --json docs/voices/prompt_probe.json

For up to --per-voice utterances of every voice in the cache's held-out splits (test,
test-unseen-speaker), of at least 6 s: the first 3 s are the prompt, the next 3 s are masked
at every level, as at the first pass of decoding; SoundStorm is given the semantic tokens of
all 6 s. Scored on the true level-1 codes of the masked 3 s:

- `ll` / `acc`: mean log-likelihood and argmax accuracy, with the prompt;
- `ll none` / `acc none`: the same with the prompt masked too (what the voice is worth to it);
- `in prompt`: the share of the true codes that occur anywhere in the prompt;
- `knn tau lambda`: kNN-LM (Khandelwal et al., 2020) over the prompt: keys are SoundStorm's
  hidden states at the prompt's frames, each computed with that frame masked (even and odd
  frames in two passes), values are their true codes; the model's distribution is mixed with
  softmax(-distance / tau) over the keys at weight lambda. A decoder could use it to pull the
  prompt's own codes into the continuation; this measures whether that would help first.

It answers two questions asked for issue 8 (docs/voices.md, 2026-12-06): can the model's own
reading of a prompt tell a voice it was trained on from one it was not (so that voice
guidance could switch itself on for unseen voices only), and would the prompt's own codes help.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm.data.cache import TokenCache  # noqa: E402
from soundstorm.model.soundstorm import SoundStorm  # noqa: E402

PROMPT = 150  # frames: 3 s at 50 Hz, eval-tts's prompt


def scores(logp: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """logp [M, K] log-probabilities, target [M] -> (mean log-likelihood, argmax accuracy)."""
    return logp.gather(1, target[:, None]).mean().item(), (logp.argmax(-1) == target).float().mean().item()


@torch.no_grad()
def probe(model: SoundStorm, codes: torch.Tensor, semantic: torch.Tensor, knn: list[tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """codes [1, 2P, Q], semantic [1, S] of one utterance's first 6 s -> {variant: (ll, acc)}."""
    mask_id = model.config.mask_id
    frames = codes.shape[1]
    condition = model.embed_condition(semantic, frames)
    target = codes[0, PROMPT:, 0]  # [P]
    grid = codes.clone()
    grid[:, PROMPT:] = mask_id
    hidden = model.hidden_states(grid, condition, None)[0, PROMPT:]  # [P, D]
    logp = F.log_softmax(model.level_logits(hidden, 0), -1)  # [P, K]
    out = {"prompt": scores(logp, target)}
    bare = torch.full_like(codes, mask_id)
    out["none"] = scores(F.log_softmax(model.level_logits(model.hidden_states(bare, condition, None)[0, PROMPT:], 0), -1), target)
    keys, values = [], []
    for parity in (0, 1):
        masked = grid.clone()
        hide = torch.arange(PROMPT) % 2 == parity  # [P]
        masked[0, :PROMPT][hide] = mask_id
        keys.append(model.hidden_states(masked, condition, None)[0, :PROMPT][hide])
        values.append(codes[0, :PROMPT, 0][hide])
    key, value = torch.cat(keys), torch.cat(values)  # [P, D], [P]
    distance = torch.cdist(hidden, key) ** 2 / hidden.shape[-1]  # [P, P]
    for tau, weight in knn:
        prior = torch.zeros_like(logp).index_add_(1, value, F.softmax(-distance / tau, -1))  # [P, K]
        mixed = ((1 - weight) * logp.exp() + weight * prior).clamp_min(1e-12).log()
        out[f"knn {tau} {weight}"] = scores(mixed, target)
    out["in prompt"] = (0.0, torch.isin(target, value).float().mean().item())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo", help="a models folder (its soundstorm/) or a SoundStorm folder")
    parser.add_argument("--cache", type=Path, required=True, help="a token cache of the models' codec and semantic tokenizer")
    parser.add_argument("--per-voice", type=int, default=10)
    parser.add_argument("--knn", nargs="*", default=["0.2:0.1", "0.2:0.25", "0.05:0.1"], help="TAU:LAMBDA pairs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = args.models / "soundstorm" if (args.models / "soundstorm").is_dir() else args.models
    model = SoundStorm.from_pretrained(folder).eval()
    cache = TokenCache(args.cache)
    cache.check_compatible(model.config)
    knn = [(float(t), float(w)) for t, w in (pair.split(":") for pair in args.knn)]

    chosen: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(cache.items):
        if item.split in ("test", "test-unseen-speaker") and cache.num_frames[i] >= 2 * PROMPT:
            if len(chosen[item.speaker]) < args.per_voice:
                chosen[item.speaker].append(i)
    results: dict[str, dict[str, float]] = {}
    for speaker, indices in sorted(chosen.items()):
        rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for i in indices:
            codes = torch.from_numpy(cache.codes(i)[: 2 * PROMPT].astype(np.int64))[None]
            semantic = torch.from_numpy(cache.semantic(i)[: -(-2 * PROMPT // cache.ratio)].astype(np.int64))[None]
            for name, value in probe(model, codes, semantic, knn).items():
                rows[name].append(value)
        split = cache.items[indices[0]].split
        entry: dict[str, float] = {"utterances": len(indices), "unseen": split == "test-unseen-speaker"}
        for name, values in rows.items():
            ll, acc = np.mean(values, axis=0)
            if name != "in prompt":
                entry[f"ll {name}"] = round(float(ll), 4)
            entry[f"acc {name}"] = round(float(acc), 4)
        results[speaker] = entry
    names = [k for k in next(iter(results.values())) if k not in ("utterances", "unseen")]
    print("| voice | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for speaker, entry in results.items():
        label = speaker + (" (unseen)" if entry["unseen"] else "")
        print(f"| {label} | " + " | ".join(f"{entry[k]:.3f}" for k in names) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        command = "benchmarks/prompt_probe.py " + " ".join(sys.argv[1:])
        args.json.write_text(json.dumps({"command": command, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
