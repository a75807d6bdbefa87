#!/usr/bin/env bash
# Everything to check on a GPU machine, in one call, in under 8 minutes on an H200 (a lent
# machine gives 15 minutes of device time per session, its start-up included). Such machines
# have no network: this runs from the source tree with the CuPy, PyTorch and pytest already
# there. Most important first, so that a run cut short has still answered what matters:
#   1. the device and `python -m tensorgrad info` (stops here if CUDA is unusable)
#   2. the CUDA kernels against their NumPy twins, graph capture, the CUDA backend's tests
#   3. every other CUDA case of the suite (-m cuda)
#   4. the examples with --device cuda --smoke, then the main job (train_digits) in full
#   5. the benchmark suite's GPU cases in quick mode
# Each step has a time budget, cut to what is left of the whole; its full log goes to $OUT (the
# device tool's output folder, at most 8 files come back) or /tmp/tg-gpu. The last screen is a
# summary, one line per step; the exit status is non-zero when any step failed or was cut.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CUPY_CACHE_DIR="${CUPY_CACHE_DIR:-/tmp/tg-cupy-cache}"  # kernels compile once per run
out="${OUT:-/tmp/tg-gpu}"
scratch="$(mktemp -d /tmp/tg-gpu-scratch.XXXXXX)"
mkdir -p "$out"
start=$(date +%s)
budget=$(( ${TG_GPU_CHECK_SECONDS:-450} ))  # 7.5 minutes for all steps together
summary=()
failed=0

# step NAME SECONDS LOG COMMAND...: run COMMAND with its output in $out/LOG, for at most SECONDS
# (or what is left of the budget), and record one summary line.
step() {
    local name=$1 seconds=$2 log=$3
    shift 3
    local left=$(( budget - ($(date +%s) - start) ))
    if (( left < 15 )); then
        summary+=("$(printf '%-34s %s' "$name" "SKIPPED (no time left)")")
        failed=1
        return
    fi
    (( seconds > left )) && seconds=$left
    echo "== $name (up to ${seconds} s, log: $out/$log)"
    local t0=$(date +%s) status
    { echo "\$ $*"; timeout --kill-after=10 "$seconds" "$@"; } >>"$out/$log" 2>&1
    status=$?
    local took=$(( $(date +%s) - t0 )) verdict=ok
    if (( status == 124 || status == 137 )); then
        verdict="CUT at ${seconds} s"
    elif (( status != 0 )); then
        verdict="FAILED (exit $status)"
    fi
    [[ $verdict == ok ]] || failed=1
    # pytest's last line ("3 failed, 120 passed, 4 skipped in 61.2s") says more than ok.
    local detail
    detail=$(grep -E '[0-9]+ (passed|failed|errors?|skipped|deselected).* in [0-9.]+s' \
             "$out/$log" | tail -n 1 | tr -d '=' | sed 's/^ *//;s/ *$//')
    summary+=("$(printf '%-34s %-20s %4d s  %s' "$name" "$verdict" "$took" "$detail")")
}

pytest_args=(-p no:cacheprovider -q -rfE --durations=15)

step "device and tensorgrad info" 60 info.log \
    bash -c '{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true; }
             python3 -m tensorgrad info && python3 -c "import sys, tensorgrad as tg;
sys.exit(0 if tg.cuda.is_available() else 1)"'
if (( failed )); then
    echo "CUDA is not usable here: see $out/info.log"
    printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
    exit 1
fi

step "kernels, capture, CUDA backend" 150 tests-kernels.log \
    python3 -m pytest "${pytest_args[@]}" tests/test_kernels_cuda.py tests/test_capture.py \
    tests/test_cuda_backend.py tests/test_cuda_cublas.py

# The largest step: four workers where pytest-xdist is there (it is in the H200 image), a file
# to a worker so that the distributed tests of one file never run at once; the GPU has room.
workers=()
python3 -c "import xdist" 2>/dev/null && workers=(-n 4 --dist loadfile)
step "every other CUDA case (-m cuda)" 150 tests-cuda.log \
    python3 -m pytest "${pytest_args[@]}" "${workers[@]}" -m cuda \
    --ignore tests/test_kernels_cuda.py --ignore tests/test_capture.py \
    --ignore tests/test_cuda_backend.py --ignore tests/test_cuda_cublas.py

examples() {
    local script status=0
    for script in train_digits cnn_digits spirals tiny_gpt vanishing_gradients \
                  linear_regression_gd circuit; do
        echo "--- $script --device cuda --smoke"
        python3 "examples/$script.py" --device cuda --smoke --out "$scratch/$script-smoke" \
            || { echo "FAILED: $script (exit $?)"; status=1; }
    done
    echo "--- train_digits --device cuda (the main job, in full)"
    python3 examples/train_digits.py --device cuda --out "$scratch/train_digits" \
        || { echo "FAILED: train_digits in full (exit $?)"; status=1; }
    return $status
}
export scratch
export -f examples
step "examples on cuda, train_digits" 90 examples.log bash -c examples

step "benchmarks, GPU cases, quick" 60 bench.log \
    python3 -m benchmarks --quick --devices cuda --out "$scratch/bench"
cp "$scratch"/bench/*/report.md "$out/bench-report.md" 2>/dev/null

echo
echo "tensorgrad GPU check, $(( $(date +%s) - start )) s; logs in $out"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
grep -h -E '^(FAILED|ERROR) ' "$out"/tests-*.log 2>/dev/null | head -n 15
exit $failed
