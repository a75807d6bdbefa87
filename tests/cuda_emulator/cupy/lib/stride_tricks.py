"""cupy.lib.stride_tricks of the emulator: views of the same allocation, no launch."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core import ndarray


def as_strided(x: ndarray, shape: Any = None, strides: Any = None) -> ndarray:
    return ndarray._view(np.lib.stride_tricks.as_strided(x._a, shape, strides), x._mem)


def sliding_window_view(x: ndarray, window_shape: Any, axis: Any = None, *,
                        subok: bool = False, writeable: bool = False) -> ndarray:
    view = np.lib.stride_tricks.sliding_window_view(x._a, window_shape, axis,
                                                    writeable=writeable)
    return ndarray._view(view, x._mem)
