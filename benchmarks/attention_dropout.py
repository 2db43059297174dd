"""What dropout on the attention weights costs a CPU training step, for the three demo models.

    .venv/bin/python benchmarks/attention_dropout.py --threads 1 --repeats 5 --json docs/attention_dropout.json

PyTorch's fused CPU attention kernel has no dropout: with dropout_p > 0 in training,
scaled_dot_product_attention falls back to the math path, which materializes the [B, H, L, L]
weights. This times full training steps (forward, backward, AdamW; bf16 autocast as the demo
recipes train) of the demo SoundStorm (recipes/demo/soundstorm.toml: 16 crops of 500 frames), the
demo AR baseline (recipes/demo/ar.toml: 4 crops of 500 frames, a 2251-token coarse sequence) and
the text-to-semantic model (recipes/t2s-small.toml: 16 utterances of about 80 phonemes and 150
semantic tokens), on random tokens of those shapes, with attention_dropout 0.1 (the old
behaviour, = dropout) and 0. The two settings alternate step by step, so that a shared, noisy
machine slows both alike; medians and their ratio are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundstorm import SoundStorm, SoundStormConfig  # noqa: E402
from soundstorm.baselines import ARAcousticConfig, ARAcousticModel  # noqa: E402
from soundstorm.text.model import TextToSemantic, TextToSemanticConfig  # noqa: E402

K, Q, V = 1024, 8, 512  # the demo codec and semantic tokenizer


def acoustic_case(model: nn.Module, batch: int) -> tuple[nn.Module, Callable[[nn.Module], Tensor]]:
    """SoundStorm and the AR baseline take the same training inputs: codes, semantic, lengths."""
    T = 500
    g = torch.Generator().manual_seed(0)
    codes, semantic = torch.randint(K, (batch, T, Q), generator=g), torch.randint(V, (batch, T // 2), generator=g)
    lengths = torch.randint(T // 2, T + 1, (batch,), generator=g)
    return model, lambda m: m(codes, semantic, lengths, generator=torch.Generator().manual_seed(0)).loss


def soundstorm_case(attention_dropout: float) -> tuple[nn.Module, Callable[[nn.Module], Tensor]]:
    return acoustic_case(SoundStorm(SoundStormConfig(codebook_size=K, num_quantizers=Q, semantic_vocab_size=V, dim=256,
                                                     depth=6, heads=4, dropout=0.1,
                                                     attention_dropout=attention_dropout)), batch=16)


def ar_case(attention_dropout: float) -> tuple[nn.Module, Callable[[nn.Module], Tensor]]:
    return acoustic_case(ARAcousticModel(ARAcousticConfig(codebook_size=K, num_quantizers=Q, semantic_vocab_size=V,
                                                          dim=256, depth=6, heads=4, dropout=0.1,
                                                          attention_dropout=attention_dropout)), batch=4)


def t2s_case(attention_dropout: float) -> tuple[nn.Module, Callable[[nn.Module], Tensor]]:
    config = TextToSemanticConfig(semantic_vocab_size=V, dim=256, depth=6, heads=4, dropout=0.1,
                                  attention_dropout=attention_dropout)
    model = TextToSemantic(config)
    B, Lt, S = 16, 80, 150
    g = torch.Generator().manual_seed(0)
    text = torch.randint(model.config.text_vocab_size, (B, Lt), generator=g)
    semantic = torch.randint(V, (B, S), generator=g)
    text_lengths, semantic_lengths = torch.randint(Lt // 2, Lt + 1, (B,), generator=g), torch.randint(S // 2, S + 1, (B,), generator=g)
    return model, lambda m: m(text, text_lengths, semantic, semantic_lengths).loss


CASES = {"soundstorm": soundstorm_case, "ar": ar_case, "t2s": t2s_case}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per setting, after one warm-up step")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    print("| model | step s, attention dropout 0.1 | step s, 0 | ratio |")
    print("|---|---:|---:|---:|")
    for name in args.models:
        runs = {}
        for p in (0.1, 0.0):
            torch.manual_seed(0)
            model, loss_of = CASES[name](p)
            runs[p] = (model.train(), loss_of, torch.optim.AdamW(model.parameters(), lr=1e-4), [])
        for repeat in range(args.repeats + 1):
            for p, (model, loss_of, optimizer, times) in runs.items():
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = loss_of(model)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if repeat:  # the first step of each warms up allocators and kernels
                    times.append(time.perf_counter() - start)
        slow, fast = (statistics.median(runs[p][3]) for p in (0.1, 0.0))
        results.append({"model": name, "median_s_attention_dropout_0.1": slow, "median_s_attention_dropout_0": fast,
                        "ratio": slow / fast, "steps": args.repeats, "threads": args.threads})
        print(f"| {name} | {slow:.2f} | {fast:.2f} | {slow / fast:.2f}x |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
