"""cupyx of the emulator: scatter_add, deprecated in CuPy 14 (through ndarray.scatter_add,
which warns) in favour of cupy.add.at."""

from __future__ import annotations

from typing import Any


def scatter_add(a: Any, slices: Any, value: Any) -> None:
    a.scatter_add(slices, value)
