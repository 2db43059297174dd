#!/usr/bin/env bash
# The GPU measurements of issue 7 as one script with a deadline, for a short loan of a GPU machine
# (the device tool gives a session about 15 minutes, start-up included). Run from the repository
# root on the GPU machine; results go to $OUT (default runs/gpu-check):
#
#     OUT=runs/gpu-check BUDGET_S=480 bash benchmarks/gpu_check.sh
#
# Only torch, einops and tqdm are needed (random weights: speed does not depend on them), so the
# bundled models need not travel: the device tool sends at most 64 MiB and the repository holds
# more (`git rm --cached` the models' safetensors and list them in .git/info/exclude for the call,
# then `git reset -- models/demo` and drop the lines: docs/gpu.md). Each step gets what is left
# of BUDGET_S; a step cut off leaves the JSON of the steps before it, and the progress lines of
# its own on stderr. Order: what the issue asks first (SoundStorm against the AR baseline at
# 30 s), then the rest.
set -u
OUT=${OUT:-runs/gpu-check}
BUDGET_S=${BUDGET_S:-480}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu dry-runs the script here
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
# `soundstorm bench` without the CLI, whose parser imports every command (soundfile, soxr, ...):
# a GPU machine's stock Python has torch, einops and tqdm but not the audio packages.
BENCH='import argparse, sys; from soundstorm.eval import bench; p = argparse.ArgumentParser(); bench.add_arguments(p); sys.exit(bench.run(p.parse_args()))'
START=$(date +%s)
left() { echo $((START + BUDGET_S - $(date +%s))); }

# step NAME ARGS...: `soundstorm bench ARGS` into a scratch folder; its JSON lands as $OUT/NAME.json
# (the markdown table is in the log; the device tool returns at most 8 files).
step() {
    local name=$1; shift
    local budget; budget=$(left)
    if [ "$budget" -lt 20 ]; then echo "== $name: skipped, ${budget} s left"; return; fi
    echo "== $name ($budget s left): soundstorm bench $*"
    local scratch; scratch=$(mktemp -d)
    timeout "$budget" "$PYTHON" -c "$BENCH" --device "$DEVICE" --bf16 --out "$scratch" "$@" \
        && cp "$scratch/bench.json" "$OUT/$name.json" || echo "== $name: failed or cut off (exit $?)"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
"$PYTHON" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"

# A smoke run first: a broken CUDA path shows in seconds, not after the budget.
step smoke --seconds 1 --batch 1 --repeats 1 --quiet
# SoundStorm alone at the project's size, every duration and batch, medians of 5.
step soundstorm-small --seconds 5 10 30 60 --batch 1 8 --no-ar --repeats 5
# The claim: SoundStorm against the same-size AR baseline (T x Q KV-cached passes), each in its
# fastest precision (the AR baseline's one-position passes: float32; docs/gpu.md).
step ar-b1 --seconds 5 10 30 60 --batch 1 --repeats 1 --ar-fp32
# A first bf16 run of the AR baseline's cached steps against a second: before the decoder kept
# cuDNN's attention out of cached passes, the first ran at 61 ms a step, the second at 2.8 ms.
budget=$(left)
if [ "$budget" -ge 30 ]; then
    echo "== AR step profile ($budget s left)"
    timeout "$budget" "$PYTHON" benchmarks/ar_step_profile.py --device "$DEVICE" --frames 10 --rows 15
fi
step ar-b8 --seconds 5 10 30 --batch 8 --repeats 1 --ar-fp32
# Training throughput and model FLOPs utilisation (H100 dense bf16 peak 989 TFLOP/s).
budget=$(left)
if [ "$budget" -ge 30 ]; then
    echo "== train throughput ($budget s left)"
    timeout "$budget" "$PYTHON" benchmarks/train_throughput.py --preset small --batch-size 16 --frames 500 \
        --device "$DEVICE" --bf16 --steps 10
    timeout "$(( $(left) > 1 ? $(left) : 1 ))" "$PYTHON" benchmarks/train_throughput.py --preset paper \
        --batch-size 8 --frames 1500 --device "$DEVICE" --bf16 --steps 10
fi
# The paper's model size (350M, Q = 12) alone: the paper quotes 30 s in 0.5 s on a TPU-v4.
step soundstorm-paper --preset paper --seconds 30 60 --batch 1 8 --no-ar --repeats 3
echo "== done in $(( $(date +%s) - START )) s"
