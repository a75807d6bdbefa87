"""cupy.random of the emulator: `default_rng(seed)` and the Generator methods CuPy 14.2 has
(NumPy's PCG64 draws, not CuPy's XORWOW stream: same distributions, other numbers)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _emulator
from .._core import check_device, ndarray, new_like

__all__ = ["Generator", "default_rng"]


class Generator:
    """Draws are kernels: on a capturing stream they are recorded, and each replay draws anew
    from the generator's state then (which lives on the device in CuPy as here)."""

    def __init__(self, seed: Any = None) -> None:
        self._np = np.random.default_rng(seed)
        self._device_id = _emulator.current_device_id()

    def _draw(self, name: str, draw: Callable[[np.random.Generator], np.ndarray],
              out: ndarray | None = None) -> ndarray:
        capture = _emulator.current_capture()
        state = self._np if capture is None else copy.deepcopy(self._np)
        r = np.asarray(draw(state))
        if out is None:
            out = new_like(r)
        elif out.shape != r.shape or out.dtype != r.dtype:
            raise ValueError(f"out has shape {out.shape} and dtype {out.dtype}, the draw "
                             f"{r.shape} and {r.dtype}")
        check_device([out])
        if capture is None:
            np.copyto(out._a, r)
            _emulator.count_launch(f"random.{name}", out.nbytes)
            return out
        if out._mem.capture is capture:
            np.copyto(out._a, r)
        target = out._a
        capture.record(f"random.{name}", out.nbytes,
                       lambda: np.copyto(target, np.asarray(draw(self._np))))
        return out

    @staticmethod
    def _float(dtype: Any, what: str) -> np.dtype:
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"{what} supports only float32 and float64, got {dtype}")
        return dtype

    def random(self, size: Any = None, dtype: Any = np.float64, out: ndarray | None = None
               ) -> ndarray:
        dtype = self._float(dtype, "random")
        return self._draw("random", lambda g: g.random(size, dtype=dtype), out)

    def standard_normal(self, size: Any = None, dtype: Any = np.float64,
                        out: ndarray | None = None) -> ndarray:
        dtype = self._float(dtype, "standard_normal")
        return self._draw("standard_normal", lambda g: g.standard_normal(size, dtype=dtype),
                          out)

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None,
                dtype: Any = np.float64) -> ndarray:
        dtype = self._float(dtype, "uniform")
        return self._draw("uniform",
                          lambda g: g.uniform(low, high, size).astype(dtype, copy=False))

    def integers(self, low: int, high: int | None = None, size: Any = None,
                 dtype: Any = np.int64, endpoint: bool = False) -> ndarray:
        return self._draw("integers", lambda g: g.integers(low, high, size, dtype=dtype,
                                                           endpoint=endpoint))

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"'cupy.random.Generator' object has no attribute '{name}'"
                             + (" in the emulator" if name in _NAMES_GENERATOR else ""))


def _names() -> frozenset[str]:
    from .._core import NAMES

    return frozenset(NAMES["generator"])


_NAMES_GENERATOR = _names()


def default_rng(seed: Any = None) -> Generator:
    return Generator(seed)
