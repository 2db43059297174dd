"""Training throughput of SoundStorm: tokens per second, and model FLOPs utilisation on a GPU.

    .venv/bin/python benchmarks/train_throughput.py --preset small --batch-size 16 --frames 500
    .venv/bin/python benchmarks/train_throughput.py --preset paper --batch-size 8 --frames 1500 --device cuda --bf16

Times full optimizer steps (forward, backward, AdamW) of a model on random tokens, which cost
what real tokens cost. Tokens = B * T * Q acoustic tokens per step. FLOPs per step are counted
as 6 * (parameters touched per frame) * B * T plus attention (12 * depth * B * T^2 * dim), the
usual estimate; MFU divides achieved FLOP/s by the device's peak (--peak-tflops, default 989
for an H100's dense bf16).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from soundstorm import SoundStorm, SoundStormConfig


def step_flops(config: SoundStormConfig, batch: int, frames: int) -> float:
    D, L, F = config.dim, config.depth, config.ff_dim
    per_block = 2 * (2 * D * F) + 4 * D * D + (2 * D * D + D * D + config.conv_kernel_size * D)
    per_frame = L * per_block + D * config.codebook_size  # one level's head per example
    dense = 6 * per_frame * batch * frames
    attention = 12 * L * batch * frames * frames * D
    return dense + attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    config = SoundStormConfig.preset(args.preset, semantic_vocab_size=500)
    torch.manual_seed(0)
    model = SoundStorm(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    B, T, Q = args.batch_size, args.frames, config.num_quantizers
    codes = torch.randint(0, config.codebook_size, (B, T, Q), device=device)
    semantic = torch.randint(0, 500, (B, -(-T // config.semantic_rate_ratio)), device=device)
    lengths = torch.full((B,), T, device=device)
    generator = torch.Generator(device=device).manual_seed(0)

    times = []
    for step in range(args.steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(codes, semantic, lengths, generator=generator).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:  # warm-up steps excluded
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    flops = step_flops(config, B, T)
    print(f"{args.preset}: {model.num_parameters() / 1e6:.1f}M parameters, batch {B} x {T} frames x {Q} levels, "
          f"{args.device}{' bf16' if args.bf16 else ''}, {args.threads} threads")
    print(f"median step {median * 1000:.1f} ms, {B * T * Q / median:,.0f} tokens/s, "
          f"{B * T / median / 50:.1f} audio seconds/s, {flops / median / 1e12:.2f} TFLOP/s", end="")
    if device.type == "cuda":
        print(f", MFU {flops / median / (args.peak_tflops * 1e12):.1%}")
    else:
        print()


if __name__ == "__main__":
    main()
