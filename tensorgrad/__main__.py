"""python -m tensorgrad info: versions, backends, GPUs, and why CUDA is unusable when it is.

PyTorch's version comes from package metadata, so it is not imported here; CuPy is imported
by the CUDA backend's own probe, as for any first use of CUDA, and its row names the module
that probe imported (which may be a stand-in, such as the test suite's emulator).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
from pathlib import Path

import numpy as np

import tensorgrad as tg
from tensorgrad.backend import cuda_unusable_reason, get_backend


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cupy_version() -> str | None:
    cupy = sys.modules.get("cupy")  # imported by the probe wherever it is importable
    if cupy is not None:
        return f"{cupy.__version__} ({Path(cupy.__file__).parent})"
    # CuPy ships as cupy-cuda12x, cupy-cuda13x, cupy (from source), ...: ask which one.
    for name in importlib.metadata.packages_distributions().get("cupy", []):
        version = _version(name)
        if version is not None:
            return f"{version} ({name})"
    return None


def _gpu_names() -> list[str]:
    names = []
    for i in range(tg.cuda.device_count()):
        backend = get_backend(tg.Device(f"cuda:{i}"))
        properties = backend.xp.cuda.runtime.getDeviceProperties(i)
        name = properties["name"]
        names.append(f"cuda:{i} {name.decode() if isinstance(name, bytes) else name}")
    return names


def info() -> list[tuple[str, str]]:
    """The rows `python -m tensorgrad info` prints."""
    torch = _version("torch")
    reason = cuda_unusable_reason()
    rows = [
        ("tensorgrad", f"{tg.__version__} ({Path(tg.__file__).parent})"),
        ("Python", f"{platform.python_version()} ({platform.platform()})"),
        ("NumPy", np.__version__),
        ("CuPy", _cupy_version() or "not installed"),
        ("PyTorch", f"{torch} (reference for tests only)" if torch else "not installed"),
    ]
    if reason is None:
        rows.append(("backends", "cpu (NumPy), cuda (CuPy)"))
        rows.extend(("GPU", name) for name in _gpu_names())
    else:
        rows.append(("backends", "cpu (NumPy)"))
        rows.append(("CUDA", f"unusable: {reason}"))
    rows.append(("default device", str(tg.get_default_device())))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tensorgrad",
                                     description="tensorgrad command-line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, backends, GPUs and why CUDA is unusable")
    parser.parse_args(argv)
    rows = info()
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
