"""Where an AR baseline decoding step spends its time: timings at fp32 and bf16 autocast, and a
torch.profiler table of the ops (CPU and, on a GPU, CUDA), for issue 7's GPU figures.

    python benchmarks/ar_step_profile.py --device cuda --frames 25
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soundstorm.baselines import ARAcousticConfig, ARAcousticModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=25, help="frames to generate (T x 8 passes)")
    parser.add_argument("--rows", type=int, default=30)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = ARAcousticModel(ARAcousticConfig(codebook_size=1024, num_quantizers=8, coarse_levels=4,
                                             semantic_vocab_size=512, semantic_rate_ratio=2, dim=512, depth=6,
                                             heads=8)).to(device).eval()
    semantic = torch.randint(0, 512, (1, -(-args.frames // 2)), device=device)

    def generate(bf16: bool) -> int:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            passes = model.generate(semantic, num_frames=args.frames).forward_passes
        if device.type == "cuda":
            torch.cuda.synchronize()
        return passes

    for bf16 in (False, True, False, True):
        start = time.perf_counter()
        passes = generate(bf16)
        seconds = time.perf_counter() - start
        print(f"{'bf16' if bf16 else 'fp32'}: {passes} passes in {seconds:.3f} s, {1000 * seconds / passes:.2f} ms/pass",
              flush=True)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profile:
        passes = generate(True)
    events = profile.key_averages()
    print(f"bf16 profile, {passes} passes; the last column counts calls over all of them")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if device.type == "cuda":
        print(events.table(sort_by="self_cuda_time_total", row_limit=15))
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx"))
    print(f"kernel launches per pass: {launches / passes:.0f}")


if __name__ == "__main__":
    main()
