"""The CUDA backend: CuPy arrays and the fused ElementwiseKernels of kernels/.

The one place that knows how CUDA can fail: `probe()` turns each failure into a sentence
(CuPy missing, no driver, no GPU) that DeviceUnavailableError carries to the user.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._device import Device, DeviceUnavailableError
from . import Backend


def probe() -> str | None:
    """Why CUDA is unusable, or None. Imports CuPy, so it runs only when CUDA is asked for."""
    try:
        import cupy
    except ImportError as err:
        return (f"CuPy is not installed ({err}); install tensorgrad-engine[cuda12] or "
                "tensorgrad-engine[cuda13] to match your CUDA driver")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CuPy raises several types here, all meaning "no driver"
        return f"no usable CUDA driver ({type(err).__name__}: {err})"
    if count == 0:
        return "no GPU was found by the CUDA driver"
    return None


class CudaBackend(Backend):
    __slots__ = ("_cupy", "_device_ctx", "_rng")

    def __init__(self, device: Device) -> None:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        if device.index >= count:
            raise DeviceUnavailableError(
                f"CUDA device {device} does not exist: this machine has {count} GPU(s), "
                f"cuda:0 to cuda:{count - 1}")
        from ._cuda_kernels import CudaKernels

        self.device = device
        self.xp = cupy
        self.kernels = CudaKernels()
        self._cupy = cupy
        self._device_ctx = cupy.cuda.Device(device.index)
        self.switch = None if count == 1 else (lambda: cupy.cuda.Device(device.index))
        with self._device_ctx:
            self._rng = cupy.random.default_rng()

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        with self._device_ctx:
            if isinstance(data, self._cupy.ndarray):
                return data.astype(dtype, copy=False) if dtype is not None else data
            return self._cupy.asarray(np.asarray(data, dtype=dtype))

    def to_numpy(self, array: Any) -> np.ndarray:
        return self._cupy.asnumpy(array)

    def device_count(self) -> int:
        return int(self._cupy.cuda.runtime.getDeviceCount())

    def synchronize(self) -> None:
        with self._device_ctx:
            self._cupy.cuda.get_current_stream().synchronize()

    def scatter_add(self, target: Any, index: Any, values: Any) -> None:
        import cupyx

        cupyx.scatter_add(target, index, values)

    def manual_seed(self, seed: int) -> None:
        with self._device_ctx:
            self._rng = self._cupy.random.default_rng(seed)

    def random(self) -> Any:
        return self._rng
