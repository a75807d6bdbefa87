#!/usr/bin/env bash
# Set up a virtual environment (created on first use, in .venv) with tensorgrad and its test
# dependencies, lint, then run the test suite twice: on the CPU (and a real GPU if there is
# one), then with the emulated CUDA of tests/cuda_emulator, a CuPy stand-in that runs every
# CUDA case on the host. Extra arguments go to both pytest runs.
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k engine  # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TENSORGRAD_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# torch is the reference the tests compare against, never a runtime dependency; pinned to the
# CPU build (an unpinned torch pulls a CUDA build of several GB).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -e ".[dev,examples]" "torch==2.13.0"
"$venv/bin/python" -m ruff check tensorgrad tests benchmarks examples
"$venv/bin/python" -m pytest "$@"
echo "== the same suite on the emulated GPU (tests/cuda_emulator) =="
exec env PYTHONPATH="tests/cuda_emulator${PYTHONPATH:+:$PYTHONPATH}" \
    "$venv/bin/python" -m pytest "$@"
