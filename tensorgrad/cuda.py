"""tg.cuda: is CUDA usable, how many GPUs, synchronize; `capture` (tg.capture, which records a
step on any device) and `CUDAGraph` are re-exported from their home, _capture.py."""

from __future__ import annotations

from ._capture import CapturedStep, CUDAGraph, capture
from ._device import Device
from .backend import CaptureError, cuda_unusable_reason, get_backend

__all__ = ["CUDAGraph", "CaptureError", "CapturedStep", "capture", "device_count",
           "is_available", "synchronize"]


def is_available() -> bool:
    """Whether CuPy and a GPU are usable here (the reason, if not, is in
    `python -m tensorgrad info` and in the error that device="cuda" raises)."""
    return cuda_unusable_reason() is None


def device_count() -> int:
    """Number of usable GPUs (0 where CUDA is unusable)."""
    if not is_available():
        return 0
    return get_backend(Device("cuda")).device_count()


def synchronize(device: str | Device | None = None) -> None:
    """Wait for all work queued on a GPU (the current one by default) to finish."""
    get_backend(Device("cuda" if device is None else device)).synchronize()
