"""cupy.linalg of the emulator: NumPy's linalg for the names CuPy 14.2 has."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from .._funcs import lookup

    return lookup(name, "linalg")
