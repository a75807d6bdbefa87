"""The CUDA backend: CuPy arrays and the fused ElementwiseKernels of kernels/.

The one place that knows how CUDA can fail: `probe()` turns each failure into a sentence
(CuPy missing, no driver, no GPU) that DeviceUnavailableError carries to the user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ._base import (
    Backend,
    CaptureError,
    DeviceUnavailableError,
    capture_copy_message,
    capture_read_message,
)

if TYPE_CHECKING:
    from .._device import Device
    from ._cuda_graph import CudaGraph


def probe() -> str | None:
    """Why CUDA is unusable, or None. Imports CuPy, so it runs only when CUDA is asked for.

    A GPU and a driver are not enough: every op compiles kernels with NVRTC (which needs the
    CUDA headers) and matrix products call cuBLAS, and CuPy's wheels bring neither (its `ctk`
    extra or a CUDA toolkit does). Each is tried here so the first op cannot be the one to fail.
    """
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
    fix = ("install tensorgrad-engine[cuda12] or [cuda13], which bring CuPy's 'ctk' extra (the "
           "NVIDIA wheels), or a CUDA toolkit that CuPy finds")
    try:
        cupy.cuda.nvrtc.getVersion()
    except Exception as err:  # the library is loaded on this first call
        return f"NVRTC, CUDA's runtime compiler, cannot be loaded ({err}); {fix}"
    try:
        with cupy.cuda.Device(0):
            _probe_kernel(cupy)(cupy.zeros(1, dtype=np.float16))
    except Exception as err:
        return f"CuPy cannot compile a kernel ({type(err).__name__}: {err}); {fix}"
    try:
        from ._cublas import _load_library

        with cupy.cuda.Device(0):
            _load_library(cupy)
    except Exception as err:
        return f"cuBLAS cannot be loaded ({type(err).__name__}: {err}); {fix}"
    return None


def _probe_kernel(cupy: Any) -> Any:
    """A float16 copy: compiling it needs NVRTC and the CUDA headers (cuda_fp16.h)."""
    return cupy.ElementwiseKernel("T x", "T y", "y = x", "tg_probe")


class CudaBackend(Backend):
    __slots__ = ("_cupy", "_device_ctx", "_rng", "_cublas")

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
        self.capturing = False
        self._cublas = None
        with self._device_ctx:
            self._rng = cupy.random.default_rng()

    def is_array(self, value: Any) -> bool:
        return isinstance(value, self._cupy.ndarray)

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        with self._device_ctx:
            if not isinstance(data, self._cupy.ndarray) and hasattr(
                    data, "__cuda_array_interface__"):
                data = self._cupy.asarray(data)  # another library's GPU array, no copy
            if isinstance(data, self._cupy.ndarray):
                if data.device.id != self.device.index:
                    data = data.copy()  # CuPy copies into the current device, peer to peer
                return data.astype(dtype, copy=False) if dtype is not None else data
            host = np.asarray(data, dtype=dtype)
            if host.ndim == 0:  # a fill kernel, not a host-to-device copy: capturable
                return self._cupy.full((), host[()], dtype=host.dtype)
            if self.capturing:
                # A captured copy would re-read CuPy's reused pinned staging buffer on replay.
                raise CaptureError(capture_copy_message(host.shape))
            return self._cupy.asarray(host)

    def to_numpy(self, array: Any, what: str = ".numpy()") -> np.ndarray:
        if self.capturing:
            raise CaptureError(capture_read_message(what))
        return self._cupy.asnumpy(array)

    def matmul(self, a: Any, b: Any) -> Any:
        if a.dtype != b.dtype or a.dtype.kind != "f":
            if self.capturing:
                raise CaptureError(f"matmul of {a.dtype} and {b.dtype} arrays cannot be "
                                   "captured; use floating-point tensors of one dtype")
            return self._cupy.matmul(a, b)
        return self.cublas().matmul(a, b)

    def cublas(self) -> Any:
        """This device's capture-safe cuBLAS handle, created on first use."""
        if self._cublas is None:
            from ._cublas import Cublas

            with self._device_ctx:
                self._cublas = Cublas(self._cupy)
        return self._cublas

    def new_graph(self) -> CudaGraph:
        from ._cuda_graph import CudaGraph

        return CudaGraph(self)

    def device_count(self) -> int:
        return int(self._cupy.cuda.runtime.getDeviceCount())

    def check(self, ok: Callable[[], Any], error: Callable[[], Exception]) -> None:
        pass  # reading ok() would wait for the GPU on every call (see Backend.check)

    def synchronize(self) -> None:
        # Every stream of the device (graph replays, other libraries' streams), not only the
        # current one.
        self._device_ctx.synchronize()

    def scatter_add(self, target: Any, index: Any, values: Any) -> None:
        self._cupy.add.at(target, index, values)  # cupyx.scatter_add is deprecated in CuPy 14

    def manual_seed(self, seed: int) -> None:
        # CuPy has no public way to reseed a Generator, so this makes a new one (XORWOW: about
        # 12 MiB of states on an H200) and drops ours. Graphs captured earlier hold the pointer
        # to the old one's states: each CudaGraph keeps the generator it captured alive, so
        # memory is bounded by the live graphs and replays never read freed memory.
        with self._device_ctx:
            self._rng = self._cupy.random.default_rng(seed)

    def random(self) -> Any:
        return self._rng
