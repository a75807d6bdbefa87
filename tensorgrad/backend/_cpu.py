"""The CPU backend: NumPy arrays and the NumPy twins of the CUDA kernels."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ._base import Backend, CaptureError, capture_copy_message, capture_read_message
from ._cpu_graph import CpuGraph
from ._cpu_kernels import CpuKernels

if TYPE_CHECKING:
    from .._device import Device


def _scatter_add_rows(target: np.ndarray, index: Any, values: np.ndarray) -> bool:
    """target[rows] += values for one integer index array over the first axis (an embedding's
    gradient), by rows sorted stably and each row's values summed along axis 0: the same
    sequential sums in order of occurrence as np.add.at, so on a zero target (IndexGrad's) the
    same bits. Returns False, doing nothing, where np.add.at is the faster or the only way.

    np.add.at pays per index (~N (0.13 + 0.0085 D) us for N indices of D columns); this pays
    per distinct row (~4 us each, measured with N 1408 to 4096 and D 16 to 256): (4096, 256)
    onto 10 rows 8.9 -> 0.4 ms, onto 2048 rows 9.3 -> 5.0 ms.
    """
    if not (isinstance(index, tuple) and len(index) == 1 and isinstance(index[0], np.ndarray)
            and index[0].dtype.kind in "iu" and target.ndim >= 1):
        return False
    rows = index[0].reshape(-1)
    if values.shape != index[0].shape + target.shape[1:] or rows.size == 0:
        return False
    rows = np.where(rows < 0, rows + target.shape[0], rows)  # -1 and n - 1: one segment
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    if rows[0] < 0 or rows[-1] >= target.shape[0]:
        return False  # np.add.at names the index out of range
    bounds = np.flatnonzero(rows[1:] != rows[:-1]) + 1
    width = values.size // rows.size
    # One column would be summed along the contiguous axis, pairwise: not np.add.at's order.
    if width < 2 or (bounds.size + 1) * 32 >= rows.size * (1 + width / 16):
        return False
    grouped = values.reshape(rows.size, *target.shape[1:])[order]
    starts = [0, *bounds.tolist()]
    for start, end in zip(starts, [*starts[1:], rows.size]):
        target[rows[start]] += grouped[start:end].sum(axis=0)
    return True


def _keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the OS.

    A training step allocates and frees the same activation and gradient arrays every step.
    By default glibc serves arrays above 128 KiB with fresh mmaps and trims its heap after
    frees, so every step pays page faults to zero new pages: measured on a 784-256-256-10 MLP
    step (batch 64, one thread), backward 1.77 -> 1.13 ms and the SGD step 0.72 -> 0.21 ms with
    this. The cost is that the process keeps its peak heap. It applies process-wide, so it is
    skipped when the user set glibc's own MALLOC_* variables, and off glibc (macOS, musl).
    """
    if not sys.platform.startswith("linux") or any(
            name in os.environ for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's largest allowed threshold
    mallopt(m_trim_threshold, 1024 * 1024 * 1024)


class CpuBackend(Backend):
    __slots__ = ("_rng",)

    def __init__(self, device: Device) -> None:
        _keep_freed_memory()
        self.device = device
        self.xp = np
        self.kernels = CpuKernels()
        self.switch = None
        self.capturing = False
        self._rng = np.random.default_rng()

    def check(self, ok: Callable[[], Any], error: Callable[[], Exception]) -> None:
        if self.capturing:
            return  # a read of values, which a replay could not repeat (as on CUDA)
        if not ok().all():
            raise error()

    def is_array(self, value: Any) -> bool:
        return isinstance(value, np.ndarray)

    def asarray(self, data: Any, dtype: Any = None) -> np.ndarray:
        if hasattr(data, "__cuda_array_interface__"):
            data = data.get()
        if self.capturing:
            if isinstance(data, np.ndarray):
                return self.xp.asarray(data, dtype=dtype)  # a cast is recorded
            if np.ndim(data):
                raise CaptureError(capture_copy_message(np.shape(data)))
        return np.asarray(data, dtype=dtype)

    def to_numpy(self, array: np.ndarray, what: str = ".numpy()") -> np.ndarray:
        if self.capturing:
            raise CaptureError(capture_read_message(what))
        return array

    def new_graph(self) -> CpuGraph:
        return CpuGraph(self)

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # a @ w.T for a weight w (M, K) and a few rows of a (Linear's forward): OpenBLAS packs
        # the transposed operand slowly, so w @ a.T, copied back to C order, is faster. Single
        # thread, (64, K) @ (K, M): K 784, M 256: 335 -> 288 us; K 256, M 256: 110 -> 101 us;
        # K 1024, M 1024: 1959 -> 1529 us. From 128 rows on (or below 128 columns) the copy
        # costs more than the packing saves.
        xp = self.xp
        if (a.ndim == 2 and b.ndim == 2 and a.shape[0] <= 64 and b.shape[1] >= 128
                and b.flags.f_contiguous and not b.flags.c_contiguous):
            zt = xp.matmul(b.T, a.T)
            z = xp.empty(zt.shape[::-1], dtype=zt.dtype)
            xp.copyto(z, zt.T)
            return z
        return xp.matmul(a, b)

    def scatter_add(self, target: np.ndarray, index: Any, values: np.ndarray) -> None:
        # The row grouping depends on the index values, which a replay must not bake in.
        if self.capturing or not _scatter_add_rows(target, index, values):
            np.add.at(target, index, values)

    def manual_seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def random(self) -> np.random.Generator:
        return self._rng
