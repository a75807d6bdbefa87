#!/usr/bin/env bash
# Everything to check on a GPU machine, in one call (such machines have no network: this runs
# from the source tree with the CuPy, PyTorch and pytest already there). Logs go to $OUT (the
# device tool's output folder) or /tmp/tg-gpu. Order: cheapest and most fundamental first, so a
# failure shows early: the kernels against their NumPy twins, graph capture, the whole suite on
# CUDA, the examples on both devices, then the benchmark suite.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
export CUPY_CACHE_DIR="${CUPY_CACHE_DIR:-/tmp/tg-cupy-cache}"
out="${OUT:-/tmp/tg-gpu}"
mkdir -p "$out"
step() { echo "== $*"; }

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -m tensorgrad info | tee "$out/info.txt"

step "CUDA kernels vs NumPy twins, capture"
python3 -m pytest -q -p no:cacheprovider tests/test_kernels_cuda.py tests/test_capture.py \
    2>&1 | tee "$out/tests-kernels-capture.log" | tail -n 15

step "the whole suite, CUDA cases"
python3 -m pytest -q -p no:cacheprovider -m cuda 2>&1 | tee "$out/tests-cuda.log" | tail -n 15

step "examples, --device cuda then cpu (milliseconds)"
for script in train_digits cnn_digits spirals vanishing_gradients linear_regression_gd circuit; do
    for device in cuda cpu; do
        start=$(date +%s%N)
        python3 "examples/$script.py" --device "$device" --out "$out/examples/$script-$device" \
            > "$out/examples-$script-$device.log" 2>&1
        status=$?
        echo "$script $device exit=$status $(( ($(date +%s%N) - start) / 1000000 )) ms"
    done
done | tee "$out/examples.txt"

step "benchmarks"
python3 -m benchmarks --out "$out/bench" 2>&1 | tee "$out/bench.log" | tail -n 40
