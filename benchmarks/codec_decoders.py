"""The codec's two decoders side by side: a decoder-only training step and decoding speed.

    .venv/bin/python benchmarks/codec_decoders.py --threads 1 --json docs/codec_decoders.json

SoundStream with the SEANet decoder and with the Vocos-style one (recipes/demo/codec-vocos.toml's
size), the same encoder and quantizer, randomly initialised (speed does not depend on the weights).
A training step is recipes/demo/codec-vocos.toml's: 8 crops of 1 s, decoder only (encoder and
codebooks frozen and in eval mode), the reconstruction losses, bf16 autocast, Adam. Decoding is
`decode` of 20 s of codes, all 8 levels, float32 as the pipeline decodes. The decoders run in
turn --repeats times so that machine noise falls on both; the table gives medians. Run it alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soundstorm.codecs.soundstream import SoundStream, SoundStreamConfig  # noqa: E402
from soundstorm.codecs.soundstream.training import SoundStreamLossConfig, SoundStreamObjective  # noqa: E402

DECODERS = {
    "seanet": SoundStreamConfig(),
    "vocos": SoundStreamConfig(decoder="vocos", vocos_dim=384, vocos_depth=8, vocos_n_fft=1280),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--decode-seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    objective = SoundStreamObjective(SoundStreamLossConfig(quantizer_dropout=0.5, decoder_only=True), 16000)
    batch = 0.1 * torch.randn(8, 1, 16000)  # [B, 1, N]: 8 crops of 1 s
    long = 0.1 * torch.randn(1, 1, int(16000 * args.decode_seconds))
    models, optimizers, codes = {}, {}, None
    for name, config in DECODERS.items():
        model = SoundStream(config)
        for parameter in [*model.encoder.parameters(), *model.quantizer.parameters()]:
            parameter.requires_grad_(False)
        model.encoder.eval()
        model.quantizer.eval()
        models[name] = model
        optimizers[name] = torch.optim.Adam(model.decoder.parameters(), lr=1e-4)
        if codes is None:  # any valid codes cost the same to decode: both decode these
            with torch.inference_mode():
                codes = model.encode(long)  # [1, T, Q]

    def train_step(name: str) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = objective.generator_losses(models[name], None, batch, step=0).losses["total"]
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()
        return time.perf_counter() - start

    def decode(name: str) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            models[name].decode(codes)
        return time.perf_counter() - start

    for name in models:  # warm-up
        train_step(name)
        decode(name)
    times: dict[str, dict[str, list[float]]] = {name: {"train_step": [], "decode": []} for name in models}
    for _ in range(args.repeats):
        for name in models:
            times[name]["train_step"].append(train_step(name))
            times[name]["decode"].append(decode(name))

    rows = []
    for name, model in models.items():
        step, seconds = statistics.median(times[name]["train_step"]), statistics.median(times[name]["decode"])
        rows.append({"decoder": name, "decoder_parameters": sum(p.numel() for p in model.decoder.parameters()),
                     "train_step_seconds": step, "decode_seconds": seconds, "decode_rtf": seconds / args.decode_seconds})
    base = rows[0]
    print(f"{args.threads} torch threads, medians of {args.repeats} (torch {torch.__version__}):\n")
    print("| decoder | parameters | training step (s) | relative | decode 20 s (s) | decode RTF | relative |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['decoder']} | {row['decoder_parameters'] / 1e6:.2f}M | {row['train_step_seconds']:.3f} | "
              f"{row['train_step_seconds'] / base['train_step_seconds']:.2f}x | {row['decode_seconds']:.3f} | "
              f"{row['decode_rtf']:.4f} | {row['decode_seconds'] / base['decode_seconds']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "repeats": args.repeats, "rows": rows,
                                         "runs": times, "torch": torch.__version__}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
