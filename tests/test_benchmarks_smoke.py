"""Smoke test of the benchmark suite: `python -m benchmarks --quick` runs every workload on
the CPU, counts the launches and bytes of the MLP steps on the emulated CUDA, and writes the
report, the CSV and the plots. Times are not asserted (CI machines are shared and slow; the
suite's timed targets are judged in benchmarks/RESULTS.md); the counts, which no machine
changes, are held to their targets."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.host_only  # the suite runs its own emulated pass, in a subprocess
def test_quick_benchmarks_write_the_report(tmp_path: Path) -> None:
    pytest.importorskip("pytest_benchmark")
    pytest.importorskip("matplotlib")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--devices", "cpu,emulated", "--out",
         str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (out,) = tmp_path.iterdir()  # one folder, named by the device
    assert out.name.startswith("cpu-")
    report = (out / "report.md").read_text()
    for heading in ("## Targets", "Per-op overhead", "Activations on cpu", "Matmul",
                    "MLP training step", "CNN training step", "Tiny GPT training step", "Adam step",
                    "Loading a float32 state dict"):
        assert heading in report
    assert "| numpy |" in report and "not measured" in report  # versions; no GPU targets here
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    workloads = {r["workload"] for r in rows}
    assert workloads == {"overhead", "activation", "matmul", "mlp", "cnn", "gpt", "adam",
                         "checkpoint"}
    impls = {r["impl"] for r in rows}
    assert {"tensorgrad-cpu", "hand-numpy"} <= impls
    assert all(float(r["min_s"]) > 0 for r in rows)
    for plot in ("activations.png", "matmul.png", "training.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    counts = json.loads((out / "counts.json").read_text())
    assert [(c["size"], c["impl"]) for c in counts] == [
        (size, impl) for size in ("small", "medium") for impl in ("tensorgrad-cuda", "hand-cupy")]
    for c in counts:
        assert sum(c["by_name"].values()) == c["launches"] and c["gemms"] == 8, c
    assert "Launches and bytes per MLP step (emulated CUDA)" in report
    verdicts = [line.split(" | ")[3] for line in report.splitlines()
                if line.startswith("| emulated CUDA MLP step")]
    assert verdicts == ["yes"] * 4, report
