"""cupy.cuda.nvrtc of the emulator: kernels are compiled by the host g++, which stands in for
NVRTC; its version is the CUDA version the emulator claims."""

from __future__ import annotations


def getVersion() -> tuple[int, int]:  # noqa: N802
    return (12, 9)
