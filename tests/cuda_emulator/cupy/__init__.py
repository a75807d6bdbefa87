"""A test-only stand-in for the part of CuPy 14.2 that tensorgrad uses, running on the host.

Put tests/cuda_emulator first on PYTHONPATH and `import cupy` finds this package: arrays live
in host memory behind CuPy's interfaces, ElementwiseKernels are compiled from their CUDA
source by g++, cuBLAS is a host library, and streams and graphs follow CUDA's capture rules.
See README.md in this folder for what it checks and what only a real GPU can.
"""

from __future__ import annotations

from typing import Any

from . import _emulator, cuda, lib, linalg, random  # noqa: F401  (cupy._emulator)
from ._core import ndarray
from ._funcs import array, asarray, asnumpy, empty, from_dlpack, get_array_module, ufunc
from ._kernel import ElementwiseKernel

__all__ = ["ElementwiseKernel", "array", "asarray", "asnumpy", "cuda", "empty", "from_dlpack",
           "get_array_module", "lib", "linalg", "ndarray", "random", "ufunc"]

__version__ = "14.2.0+emulator"


def __getattr__(name: str) -> Any:
    from ._funcs import lookup

    return lookup(name)
