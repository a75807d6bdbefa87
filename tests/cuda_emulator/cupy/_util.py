"""cupy._util of the emulator: the warning CuPy gives when an array is used from another
device through peer access."""

from __future__ import annotations


class PerformanceWarning(RuntimeWarning):
    """Warning that indicates possible performance issues."""
