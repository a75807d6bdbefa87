"""The implementations every workload runs on, and the machine they run on.

An `Impl` is one (family, device) pair: tensorgrad on a backend, the hand-written NumPy/CuPy
reference with no autodiff (the floor of tensorgrad's overhead), or PyTorch. Each knows whether
it can run here (and why not), how to put a host array on its device, and how to wait for its
device, so that a CUDA timing ends when the GPU work does.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FAMILIES = ("tensorgrad", "hand", "torch")
DEVICES = ("cpu", "cuda")


@functools.cache
def _torch() -> Any:
    import torch

    return torch


@functools.cache
def _cupy() -> Any:
    import cupy

    return cupy


@functools.cache
def tensorgrad_cuda_reason() -> str | None:
    """Why tensorgrad's CUDA backend is unusable here, or None."""
    import tensorgrad as tg

    try:
        tg.backend.get_backend(tg.Device("cuda"))
    except tg.DeviceUnavailableError as err:
        return str(err)
    return None


@functools.cache
def cupy_reason() -> str | None:
    try:
        cupy = _cupy()
    except ImportError as err:
        return f"CuPy is not installed ({err})"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "CuPy finds no GPU"
    except Exception as err:  # CuPy raises several types, all meaning "no usable driver"
        return f"CuPy finds no usable CUDA driver ({type(err).__name__})"
    return None


@functools.cache
def torch_reason(device: str) -> str | None:
    try:
        torch = _torch()
    except ImportError as err:
        return f"PyTorch is not installed ({err})"
    if device == "cuda" and not torch.cuda.is_available():
        return f"PyTorch {torch.__version__} has no usable CUDA device"
    return None


@dataclass(frozen=True)
class Impl:
    """One implementation on one device; `name` is what tables and plots call it."""

    family: str
    device: str

    @property
    def name(self) -> str:
        if self.family == "hand":
            return "hand-numpy" if self.device == "cpu" else "hand-cupy"
        return f"{self.family}-{self.device}"

    def unavailable(self) -> str | None:
        """Why this implementation cannot run here, or None."""
        wanted = os.environ.get("TG_BENCH_DEVICES")
        if wanted and self.device not in wanted.split(","):
            return f"device {self.device} not selected (--devices {wanted})"
        if self.device == "cpu":
            return torch_reason("cpu") if self.family == "torch" else None
        if self.family == "tensorgrad":
            return tensorgrad_cuda_reason()
        if self.family == "hand":
            return cupy_reason()
        return torch_reason("cuda")

    @property
    def xp(self) -> Any:
        """NumPy or CuPy: the array module of the hand-written reference on this device."""
        return np if self.device == "cpu" else _cupy()

    def array(self, host: np.ndarray, requires_grad: bool = False) -> Any:
        """A copy of a host array as this implementation's array type on its device."""
        if self.family == "tensorgrad":
            import tensorgrad as tg

            return tg.tensor(host, device=self.device, requires_grad=requires_grad)
        if self.family == "torch":
            return _torch().tensor(host, device=self.device, requires_grad=requires_grad)
        return self.xp.asarray(host).copy()

    def sync(self) -> None:
        """Wait for this device's queued work (nothing to wait for on the CPU)."""
        if self.device == "cpu":
            return
        if self.family == "torch":
            _torch().cuda.synchronize()
        elif self.family == "tensorgrad":
            import tensorgrad as tg

            tg.cuda.synchronize()
        else:
            _cupy().cuda.get_current_stream().synchronize()

    def synchronizer(self) -> Callable[[], None]:
        """`sync` resolved once, so the timed loop pays no dispatch."""
        if self.device == "cpu":
            return _nothing
        self.sync()
        if self.family == "torch":
            return _torch().cuda.synchronize
        return _cupy().cuda.get_current_stream().synchronize


def _nothing() -> None:
    pass


ALL = tuple(Impl(f, d) for d in DEVICES for f in FAMILIES)


def impl_param(impl: Impl) -> Any:
    """A pytest parameter for an implementation, skipped with its reason where unavailable."""
    import pytest

    reason = impl.unavailable()
    marks = [pytest.mark.skip(reason=f"{impl.name}: {reason}")] if reason else []
    return pytest.param(impl, id=impl.name, marks=marks)


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict[str, str]:
    """Device names and library versions, for the report's header."""
    import tensorgrad as tg

    env = {
        "cpu": f"{_cpu_model()} ({os.cpu_count()} logical cores)",
        "gpu": "none",
        "nvidia driver": "n/a",
        "cuda runtime": "n/a",
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "cupy": _version("cupy"),
        "torch": _version("torch"),
        "tensorgrad": f"{tg.__version__} (git {_git_commit()})",
        "platform": platform.platform(),
    }
    if cupy_reason() is None:
        cupy = _cupy()
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        env["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        driver = cupy.cuda.runtime.driverGetVersion()
        runtime = cupy.cuda.runtime.runtimeGetVersion()
        env["cuda runtime"] = f"{runtime // 1000}.{runtime % 1000 // 10}"
        env["nvidia driver"] = (f"{_nvidia_smi_driver()} "
                                f"(CUDA {driver // 1000}.{driver % 1000 // 10})")
    return env


def _nvidia_smi_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_slug(env: dict[str, str]) -> str:
    """The results folder name: the GPU where there is one, else the CPU model."""
    name = env["gpu"] if env["gpu"] != "none" else "cpu-" + env["cpu"].split(" (")[0]
    keep = "".join(c if c.isalnum() else "-" for c in name)
    return "-".join(part for part in keep.split("-") if part)
