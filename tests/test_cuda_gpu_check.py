"""scripts/gpu_check.sh, the one call a lent GPU machine gets: where CUDA is unusable it stops
after its first step and fails, with the summary and the log in its output folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cuda_unusable_reason

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(cuda_unusable_reason() is None,
                    reason="CUDA is usable here: the check would run in full (minutes)")
def test_the_gpu_check_fails_and_says_why_without_cuda(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CUDA is not usable here" in done.stdout
    summary = (tmp_path / "summary.txt").read_text()
    assert summary.startswith("device and tensorgrad info") and "FAILED (exit 1)" in summary
    assert "unusable:" in (tmp_path / "info.log").read_text()
