"""The CPU backend: NumPy arrays and the NumPy twins of the CUDA kernels."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._device import Device
from . import Backend
from ._cpu_kernels import CpuKernels


class CpuBackend(Backend):
    __slots__ = ("_rng",)

    def __init__(self, device: Device) -> None:
        self.device = device
        self.xp = np
        self.kernels = CpuKernels()
        self.switch = None
        self.capturing = False
        self._rng = np.random.default_rng()

    def asarray(self, data: Any, dtype: Any = None) -> np.ndarray:
        if hasattr(data, "__cuda_array_interface__"):
            data = data.get()
        return np.asarray(data, dtype=dtype)

    def to_numpy(self, array: np.ndarray, what: str = ".numpy()") -> np.ndarray:
        return array

    def scatter_add(self, target: np.ndarray, index: Any, values: np.ndarray) -> None:
        np.add.at(target, index, values)

    def manual_seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def random(self) -> np.random.Generator:
        return self._rng
