"""Backends: one object per device that tells ops which array module and kernels to use.

`get_backend(device)` is the only way ops reach NumPy or CuPy; only this package imports CuPy,
and only when a CUDA device is first asked for.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ._base import (
    Backend,
    CaptureError,
    DeviceUnavailableError,
    capture_copy_message,
    capture_read_message,
)

if TYPE_CHECKING:  # _device imports this package (to resolve "auto"), never the reverse
    from .._device import Device

__all__ = ["Backend", "CaptureError", "DeviceUnavailableError", "array_device",
           "capture_copy_message", "capture_read_message", "cuda_unusable_reason",
           "get_backend"]


def array_device(data: Any) -> str | None:
    """The GPU an existing array lives on, as "cuda:N" (CuPy's, PyTorch's, any library's
    with __cuda_array_interface__), or None for host data (NumPy arrays, lists, scalars)."""
    if hasattr(data, "__cuda_array_interface__"):
        _, index = data.__dlpack_device__()  # CuPy, PyTorch and others all answer this
        return f"cuda:{index}"
    return None


@functools.cache
def cuda_unusable_reason() -> str | None:
    """Why CUDA cannot be used here, or None when it can."""
    from ._cuda import probe

    return probe()


@functools.cache
def get_backend(device: Device) -> Backend:
    if device.type == "cpu":
        from ._cpu import CpuBackend

        return CpuBackend(device)
    reason = cuda_unusable_reason()
    if reason is not None:
        raise DeviceUnavailableError(
            f"CUDA device {device} is not usable: {reason}. "
            "Use device='cpu', or device='auto' to fall back to the CPU when CUDA is unusable.")
    from ._cuda import CudaBackend

    return CudaBackend(device)
