"""cupy.cuda.runtime of the emulator: device count and properties, versions, CUDARuntimeError.

The device name says what it is, so `python -m tensorgrad info` shows an emulated GPU.
"""

from __future__ import annotations

from typing import Any

from .._emulator import DEVICE_COUNT, DEVICE_NAME, CUDARuntimeError, host_sync
from .._emulator import current_device_id as getDevice  # noqa: N813, F401

__all__ = ["CUDARuntimeError", "deviceSynchronize", "driverGetVersion", "getDevice",
           "getDeviceCount", "getDeviceProperties", "is_hip", "runtimeGetVersion"]

is_hip = False
streamCaptureModeGlobal = 0  # noqa: N816  (CuPy's names)
streamCaptureModeThreadLocal = 1  # noqa: N816
streamCaptureModeRelaxed = 2  # noqa: N816


def getDeviceCount() -> int:  # noqa: N802
    return DEVICE_COUNT


def setDevice(device: int) -> None:  # noqa: N802
    from . import Device

    Device(device).use()


def getDeviceProperties(device: int) -> dict[str, Any]:  # noqa: N802
    if not 0 <= device < DEVICE_COUNT:
        raise CUDARuntimeError(101)
    return {"name": DEVICE_NAME.encode(), "totalGlobalMem": 16 * 2**30, "major": 9,
            "minor": 0, "multiProcessorCount": 1, "warpSize": 32, "maxThreadsPerBlock": 1024,
            "pciBusID": device, "uuid": b"emulator-%d" % device}


def runtimeGetVersion() -> int:  # noqa: N802
    return 12090


def driverGetVersion() -> int:  # noqa: N802
    return 12090


def deviceSynchronize() -> None:  # noqa: N802
    host_sync()


def memGetInfo() -> tuple[int, int]:  # noqa: N802
    return 16 * 2**30, 16 * 2**30
