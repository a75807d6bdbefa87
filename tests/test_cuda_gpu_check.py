"""scripts/gpu_check.sh, the one call a lent GPU machine gets: where CUDA is unusable it stops
after its first step and fails, with the summary and the log in its output folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_check_fails_and_says_why_without_cuda(tmp_path):
    # A CuPy that cannot be imported makes CUDA unusable in the check's processes, whatever
    # this machine has (a GPU, the emulator, nothing).
    (tmp_path / "blocked" / "cupy").mkdir(parents=True)
    (tmp_path / "blocked" / "cupy" / "__init__.py").write_text(
        'raise ImportError("cupy is blocked for this test")\n')
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHONPATH": str(tmp_path / "blocked"),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CUDA is not usable here" in done.stdout
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert summary.startswith("device and tensorgrad info") and "FAILED (exit 1)" in summary
    assert "unusable: CuPy is not installed (cupy is blocked" in (
        tmp_path / "out" / "info.log").read_text()
