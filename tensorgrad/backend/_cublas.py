"""Matrix products through libcublas called directly (ctypes), so they can be captured into a
CUDA graph.

CuPy's matmul, and its own cuBLAS binding, refuse to run while a stream is capturing: they set
the handle's stream on every call, and cublasSetStream also resets the handle's workspace to
one cuBLAS allocates itself. Here one handle per device is bound to a stream once, with a
workspace allocated up front, and rebound only when the current stream changes outside capture.
Row-major products are computed as the column-major product of the transposes, with transposed
(column-major) operands passed as cuBLAS transpose flags and row-padded ones (a slice of a
wider matrix) with their leading dimension, instead of copies. Sizes, leading dimensions and
batch counts go through cuBLAS's `_64` entry points (cuBLAS 12 and later), so none wraps at
2**31 (the plain ones take C int).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
from typing import Any

import numpy as np

from ._base import CaptureError

_OP_N, _OP_T = 0, 1
_CUDA_R_16F = 2
_CUBLAS_COMPUTE_32F = 68
_CUBLAS_GEMM_DEFAULT = -1
_WORKSPACE_BYTES = 32 * 1024 * 1024  # cuBLAS's recommendation for Hopper

# Argument types of the _64 entry points, as declared in cublas_api.h of cuBLAS 12.9 and 13.10:
# sizes, leading dimensions and the batch count int64_t, strides long long, enums int.
_vp, _i32, _i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
_GEMM_ARGTYPES = [_vp, _i32, _i32, _i64, _i64, _i64, _vp, _vp, _i64, _i64, _vp, _i64, _i64,
                  _vp, _vp, _i64, _i64, _i64]
_GEMM_EX_ARGTYPES = [_vp, _i32, _i32, _i64, _i64, _i64, _vp, _vp, _i32, _i64, _i64, _vp, _i32,
                     _i64, _i64, _vp, _vp, _i32, _i64, _i64, _i64, _i32, _i32]


def _load_library(cupy: Any) -> ctypes.CDLL:
    """The libcublas CuPy already uses (found in this process's memory map), so both agree on
    the CUDA version; else whatever the dynamic loader finds."""
    _ = cupy.cuda.Device().cublas_handle  # makes CuPy load libcublas into this process
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip().split(" ")[-1]
                if os.path.basename(path).startswith("libcublas.so"):
                    return ctypes.CDLL(path)
    except OSError:
        pass
    name = ctypes.util.find_library("cublas")
    if name is None:
        raise RuntimeError("libcublas was not found; install the CUDA toolkit's cuBLAS or the "
                           "nvidia-cublas wheel matching your CuPy")
    return ctypes.CDLL(name)


class Cublas:
    """One cuBLAS handle bound to one device's current stream, with its own workspace."""

    def __init__(self, cupy: Any) -> None:
        self._cupy = cupy
        self._lib = lib = _load_library(cupy)
        for name, argtypes in (("cublasSgemmStridedBatched_64", _GEMM_ARGTYPES),
                               ("cublasDgemmStridedBatched_64", _GEMM_ARGTYPES),
                               ("cublasGemmStridedBatchedEx_64", _GEMM_EX_ARGTYPES)):
            try:
                getattr(lib, name).argtypes = argtypes
            except AttributeError:
                raise RuntimeError(f"{lib._name} has no {name}: cuBLAS 12 or newer is needed "
                                   "(install the nvidia-cublas wheel matching your CuPy)") from None
        self._handle = ctypes.c_void_p()
        self._check(lib.cublasCreate_v2(ctypes.byref(self._handle)), "cublasCreate")
        self._workspace = cupy.empty(_WORKSPACE_BYTES, dtype=np.uint8)
        self._stream = None
        self._alpha = {np.dtype(np.float64): ctypes.c_double(1.0),
                       np.dtype(np.float32): ctypes.c_float(1.0),
                       np.dtype(np.float16): ctypes.c_float(1.0)}
        self._beta = {k: type(v)(0.0) for k, v in self._alpha.items()}

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    def bind(self, stream: Any) -> None:
        """Use `stream` from now on. Must happen before a capture begins, never during one."""
        if self._stream is not None and self._stream == stream.ptr:
            return
        self._check(self._lib.cublasSetStream_v2(self._handle, ctypes.c_void_p(stream.ptr)),
                    "cublasSetStream")
        # SetStream drops the user workspace; give it back so cuBLAS never allocates its own.
        self._check(self._lib.cublasSetWorkspace_v2(
            self._handle, ctypes.c_void_p(self._workspace.data.ptr),
            ctypes.c_size_t(_WORKSPACE_BYTES)), "cublasSetWorkspace")
        self._stream = stream.ptr

    def matmul(self, a: Any, b: Any) -> Any:
        """a @ b for float16/32/64 arrays of at least 2 dims, batch dims broadcast."""
        cupy = self._cupy
        dtype = a.dtype
        m, k = a.shape[-2:]
        n = b.shape[-1]
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        out = cupy.empty(batch + (m, n), dtype=dtype)
        if out.size == 0:
            return out
        if k == 0:
            out.fill(0)
            return out
        stream = cupy.cuda.get_current_stream()
        if stream.ptr != self._stream:
            if stream.is_capturing():
                raise CaptureError("cuBLAS is bound to another stream than the capturing "
                                   "one; capture through tg.capture or tg.cuda.CUDAGraph")
            self.bind(stream)
        count = math.prod(batch)
        a, op_a, lda, stride_a = _operand(cupy, a, batch)
        b, op_b, ldb, stride_b = _operand(cupy, b, batch)
        alpha, beta = ctypes.byref(self._alpha[dtype]), ctypes.byref(self._beta[dtype])
        if dtype == np.float16:  # float16 storage, float32 accumulation
            status = self._lib.cublasGemmStridedBatchedEx_64(
                self._handle, op_b, op_a, n, m, k, alpha, b.data.ptr, _CUDA_R_16F, ldb,
                stride_b, a.data.ptr, _CUDA_R_16F, lda, stride_a, beta, out.data.ptr,
                _CUDA_R_16F, n, m * n, count, _CUBLAS_COMPUTE_32F, _CUBLAS_GEMM_DEFAULT)
        else:
            gemm = (self._lib.cublasSgemmStridedBatched_64 if dtype == np.float32
                    else self._lib.cublasDgemmStridedBatched_64)
            status = gemm(self._handle, op_b, op_a, n, m, k, alpha, b.data.ptr, ldb, stride_b,
                          a.data.ptr, lda, stride_a, beta, out.data.ptr, n, m * n, count)
        self._check(status, "cuBLAS gemm")
        return out


def _operand(cupy: Any, x: Any, batch: tuple[int, ...]) -> tuple[Any, int, int, int]:
    """(array, transpose flag, leading dimension, batch stride in elements) for one operand,
    copied to a contiguous array first only when its layout has no cuBLAS description."""
    layout = _layout(x.shape, x.strides, x.itemsize, batch)
    if layout is None:
        x = cupy.ascontiguousarray(cupy.broadcast_to(x, batch + x.shape[-2:]))
        layout = _layout(x.shape, x.strides, x.itemsize, batch)
    return (x, *layout)


def _layout(shape: tuple[int, ...], strides: tuple[int, ...], item: int,
            batch: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(transpose flag, leading dimension, batch stride), in elements, of the matrices of an
    array of this shape and byte strides, broadcast to `batch`; None when cuBLAS cannot read
    it in place. Row-major matrices (unit steps along a row) go with flag N for the transposed
    product, column-major ones (a .mT view) with flag T; the step between rows (or columns) is
    the leading dimension, so a row-padded slice needs no copy."""
    if any(s % item for s in strides):
        return None
    rows, cols = shape[-2:]
    step_r, step_c = strides[-2] // item, strides[-1] // item
    if (cols == 1 or step_c == 1) and (rows == 1 or step_r >= cols):
        flag, ld = _OP_N, step_r if rows > 1 else cols
    elif (rows == 1 or step_r == 1) and (cols == 1 or step_c >= rows):
        flag, ld = _OP_T, step_c if cols > 1 else rows
    else:
        return None
    stride = _batch_stride(shape[:-2], strides[:-2], item, batch)
    return None if stride is None else (flag, max(ld, 1), stride)


def _batch_stride(shape: tuple[int, ...], strides: tuple[int, ...], item: int,
                  batch: tuple[int, ...]) -> int | None:
    """One stride (in elements, 0 for a broadcast matrix) that steps through the matrices in
    the order of `batch`, or None."""
    lead = len(batch) - len(shape)
    steps = []  # (count, element stride) of each batch dim that moves
    for d, count in enumerate(batch):
        if count == 1:
            continue
        own = d - lead
        broadcast = own < 0 or shape[own] == 1
        steps.append((count, 0 if broadcast else strides[own] // item))
    if all(step == 0 for _, step in steps):
        return 0
    for (_, outer), (count, inner) in zip(steps, steps[1:]):
        if outer != inner * count:
            return None
    return steps[-1][1] if steps[-1][1] > 0 else None
