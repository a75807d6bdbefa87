"""Matrix products through libcublas called directly (ctypes), so they can be captured into a
CUDA graph.

CuPy's matmul, and its own cuBLAS binding, refuse to run while a stream is capturing: they set
the handle's stream on every call, and cublasSetStream also resets the handle's workspace to
one cuBLAS allocates itself. Here one handle per device is bound to a stream once, with a
workspace allocated up front, and rebound only when the current stream changes outside capture.
Row-major products are computed as the column-major product of the transposes, with transposed
(column-major) operands passed as cuBLAS transpose flags instead of copies.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

import numpy as np

_OP_N, _OP_T = 0, 1
_CUDA_R_16F = 2
_CUBLAS_COMPUTE_32F = 68
_CUBLAS_GEMM_DEFAULT = -1
_WORKSPACE_BYTES = 32 * 1024 * 1024  # cuBLAS's recommendation for Hopper


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
        self._handle = ctypes.c_void_p()
        self._check(lib.cublasCreate_v2(ctypes.byref(self._handle)), "cublasCreate")
        self._workspace = cupy.empty(_WORKSPACE_BYTES, dtype=np.uint8)
        self._stream = None
        self._alpha = {np.dtype(np.float64): ctypes.c_double(1.0),
                       np.dtype(np.float32): ctypes.c_float(1.0),
                       np.dtype(np.float16): ctypes.c_float(1.0)}
        self._beta = {k: type(v)(0.0) for k, v in self._alpha.items()}
        i64, i32, vp = ctypes.c_longlong, ctypes.c_int, ctypes.c_void_p
        for name in ("cublasSgemmStridedBatched", "cublasDgemmStridedBatched"):
            getattr(lib, name).argtypes = [vp, i32, i32, i32, i32, i32, vp, vp, i32, i64, vp,
                                           i32, i64, vp, vp, i32, i64, i32]
        lib.cublasGemmStridedBatchedEx.argtypes = [
            vp, i32, i32, i32, i32, i32, vp, vp, i32, i32, i64, vp, i32, i32, i64, vp, vp, i32,
            i32, i64, i32, i32, i32]

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
                raise RuntimeError("cuBLAS is bound to another stream than the capturing one; "
                                   "capture through tg.cuda.CUDAGraph")
            self.bind(stream)
        count = int(np.prod(batch)) if batch else 1
        a, op_a, lda, stride_a = _operand(cupy, a, batch)
        b, op_b, ldb, stride_b = _operand(cupy, b, batch)
        args = (self._handle, op_b, op_a, n, m, k, ctypes.byref(self._alpha[dtype]),
                b.data.ptr, ldb, stride_b, a.data.ptr, lda, stride_a,
                ctypes.byref(self._beta[dtype]), out.data.ptr, n, m * n, count)
        if dtype == np.float32:
            status = self._lib.cublasSgemmStridedBatched(*args)
        elif dtype == np.float64:
            status = self._lib.cublasDgemmStridedBatched(*args)
        else:  # float16 storage, float32 accumulation
            h, oa, ob, n_, m_, k_, alpha, pb, ldb_, sb, pa, lda_, sa, beta, pc, ldc, sc, cnt = args
            status = self._lib.cublasGemmStridedBatchedEx(
                h, oa, ob, n_, m_, k_, alpha, pb, _CUDA_R_16F, ldb_, sb, pa, _CUDA_R_16F, lda_,
                sa, beta, pc, _CUDA_R_16F, ldc, sc, cnt, _CUBLAS_COMPUTE_32F,
                _CUBLAS_GEMM_DEFAULT)
        self._check(status, "cuBLAS gemm")
        return out


def _operand(cupy: Any, x: Any, batch: tuple[int, ...]) -> tuple[Any, int, int, int]:
    """(array, transpose flag, leading dimension, batch stride in elements) for one operand.
    Row-major matrices go as they are (flag N for the transposed product); column-major ones
    (a .mT view) with flag T; anything else, or irregular batch strides, is copied first."""
    rows, cols = x.shape[-2:]
    item = x.itemsize
    stride_r, stride_c = x.strides[-2:]
    row_major = stride_c == item and (rows == 1 or stride_r == cols * item)
    col_major = stride_r == item and (cols == 1 or stride_c == rows * item)
    batch_stride = _batch_stride(x, batch, item)
    if not (row_major or col_major) or batch_stride is None:
        x = cupy.ascontiguousarray(cupy.broadcast_to(x, batch + (rows, cols)))
        row_major, batch_stride = True, (rows * cols if batch else 0)
    if row_major:
        return x, _OP_N, max(cols, 1), batch_stride
    return x, _OP_T, max(rows, 1), batch_stride


def _batch_stride(x: Any, batch: tuple[int, ...], item: int) -> int | None:
    """One stride (in elements) that steps through x's matrices in batch order, or None."""
    if not batch:
        return 0
    lead = len(batch) - (x.ndim - 2)
    shape = (1,) * lead + x.shape[:-2]
    strides = (0,) * lead + x.strides[:-2]
    if all(s == 0 or n == 1 for n, s in zip(shape, strides)):
        return 0  # every batch entry is the same matrix
    if shape != batch:
        return None
    expected = x.shape[-2] * x.shape[-1] * item
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1 and s != expected:
            return None
        expected *= n
    return x.shape[-2] * x.shape[-1]
