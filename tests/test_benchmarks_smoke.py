"""Smoke test of the benchmark suite: `python -m benchmarks --quick` runs every workload on
the CPU and writes the report, the CSV and the plots. Numbers are not asserted (CI machines
are shared and slow); the suite's own targets are judged in benchmarks/RESULTS.md."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmarks_write_the_report(tmp_path: Path) -> None:
    pytest.importorskip("pytest_benchmark")
    pytest.importorskip("matplotlib")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--devices", "cpu", "--out",
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
