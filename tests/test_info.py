"""python -m tensorgrad info, run as a user would: in a subprocess."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad.backend import cuda_unusable_reason

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    # The caller's PYTHONPATH stays (after the checkout): in the emulated run it holds the
    # stand-in CuPy, which the subprocess must see as this process does.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "PYTHONPATH": path, **env}
    return subprocess.run([sys.executable, "-m", "tensorgrad", *args], capture_output=True,
                          text=True, env=environment, timeout=120, check=False)


@pytest.fixture(scope="module")
def info_rows() -> dict[str, list[str]]:
    done = _run("info", TENSORGRAD_DEVICE="cpu")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    rows: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("  ")
        rows.setdefault(key.strip(), []).append(value.strip())
    return rows


def test_info_prints_versions(info_rows):
    assert info_rows["tensorgrad"][0].startswith(tg.__version__)
    assert info_rows["Python"][0].startswith(".".join(map(str, sys.version_info[:3])))
    assert info_rows["NumPy"] == [np.__version__]
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        assert info_rows["PyTorch"] == ["not installed"]
    else:
        assert info_rows["PyTorch"][0].startswith(torch_version)
    cupy = sys.modules.get("cupy")
    if cupy is not None:  # imported by the CUDA probe of this process, as of the subprocess's
        assert info_rows["CuPy"] == [f"{cupy.__version__} ({Path(cupy.__file__).parent})"]
    else:
        assert "CuPy" in info_rows


def test_info_reports_backends_and_cuda_state(info_rows):
    reason = cuda_unusable_reason()
    if reason is None:
        assert info_rows["backends"] == ["cpu (NumPy), cuda (CuPy)"]
        assert len(info_rows["GPU"]) == tg.cuda.device_count()
        assert all(row.startswith("cuda:") and len(row) > len("cuda:0 ") for row in
                   info_rows["GPU"])
    else:
        assert info_rows["backends"] == ["cpu (NumPy)"]
        assert info_rows["CUDA"] == [f"unusable: {reason}"]
        assert "GPU" not in info_rows


def test_info_shows_the_default_device(info_rows):
    assert info_rows["default device"] == ["cpu"]


def test_unknown_command_fails_with_usage():
    done = _run("frobnicate")
    assert done.returncode == 2 and "info" in done.stderr
