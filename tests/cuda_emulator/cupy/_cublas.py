"""The emulator's libcublas: built from ../cublas_emu.c on first use and loaded into the
process, so tensorgrad's _cublas.py finds it in /proc/self/maps as it finds the real one.

Each GEMM comes back here through a hook before it runs: its operands are checked against the
live allocations (a wrong leading dimension, stride or batch count fails the call loudly), and
on a capturing stream it is recorded into the graph instead of running.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

from . import _emulator
from ._kernel import _FLAGS, compile_shared

_SOURCE = Path(__file__).resolve().parents[1] / "cublas_emu.c"
_STATUS_EXECUTION_FAILED = 13
_ITEMSIZE = {0: 4, 1: 8, 2: 2}
# -O3 vectorizes the axpy loop; FMA contraction as cuBLAS's kernels use FMA.
_C_FLAGS = ("-O3", *(f for f in _FLAGS if f in ("-fPIC", "-shared", "-ffp-contract=fast",
                                                "-mfma", "-mf16c")))

# The bounds-check message of the last failed call, for tests.
last_error: str | None = None


class _Gemm(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in ("dtype", "transa", "transb", "m", "n", "k")]
    _fields_ += [("alpha", ctypes.c_double), ("beta", ctypes.c_double),
                 ("A", ctypes.c_void_p), ("lda", ctypes.c_int64), ("stride_a", ctypes.c_int64),
                 ("B", ctypes.c_void_p), ("ldb", ctypes.c_int64), ("stride_b", ctypes.c_int64),
                 ("C", ctypes.c_void_p), ("ldc", ctypes.c_int64), ("stride_c", ctypes.c_int64),
                 ("batch", ctypes.c_int64), ("stream", ctypes.c_void_p)]


_HOOK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_Gemm))
_lib: ctypes.CDLL | None = None
_handles: dict[int, int] = {}


def _check(name: str, ptr: int | None, rows: int, cols: int, ld: int, stride: int, batch: int,
           item: int) -> tuple[str | None, object]:
    """(problem, allocation) for one operand: every element it spans must lie in one live
    allocation, within the bytes that allocation asked for."""
    first = min(0, (batch - 1) * stride)
    last = max(0, (batch - 1) * stride) + (cols - 1) * ld + rows - 1
    start, end = (ptr or 0) + first * item, (ptr or 0) + (last + 1) * item
    mem = _emulator.find_allocation(start)
    if mem is None:
        return f"{name} at {start:#x} is not in any live device allocation", None
    if end > mem.ptr + mem.requested:
        return (f"{name} ({rows}x{cols}, ld={ld}, stride={stride}, batch={batch}) spans "
                f"{end - start} bytes from offset {start - mem.ptr} of a {mem.requested}-byte "
                f"allocation: {end - mem.ptr - mem.requested} bytes past its end"), mem
    return None, mem


def _hook(gp: ctypes._Pointer) -> int:  # type: ignore[type-arg]
    global last_error
    g = gp.contents
    item = _ITEMSIZE[g.dtype]
    shapes = {"A": (g.k, g.m) if g.transa else (g.m, g.k),
              "B": (g.n, g.k) if g.transb else (g.k, g.n), "C": (g.m, g.n)}
    problems, mems = [], {}
    for name, (rows, cols) in shapes.items():
        if name != "C" and g.k == 0:
            continue
        problem, mem = _check(name, getattr(g, name), rows, cols, getattr(g, f"ld{name.lower()}"),
                              getattr(g, f"stride_{name.lower()}"), g.batch, item)
        mems[name] = mem
        if problem:
            problems.append(problem)
    if problems:
        last_error = "; ".join(problems)
        print(f"cuBLAS emulator: GEMM out of bounds (a GPU would read or write outside the "
              f"operands): {last_error}", file=sys.stderr)
        return _STATUS_EXECUTION_FAILED
    call = _Gemm.from_buffer_copy(g)
    nbytes = g.batch * item * (g.m * g.k + g.k * g.n + g.m * g.n * (2 if g.beta else 1))
    assert _lib is not None
    run_gemm = _lib.emu_gemm_run
    from .cuda import streams

    stream = streams.get(g.stream or 0)
    capture = stream._capture if stream is not None else None
    if capture is None:
        status = run_gemm(ctypes.byref(call))
        _emulator.count_launch("gemm", nbytes, gemm=True)
        return status
    if mems["C"].capture is capture:
        run_gemm(ctypes.byref(call))  # only graph memory is written: let the values flow
    capture.record("gemm", nbytes, lambda: run_gemm(ctypes.byref(call)), gemm=True)
    return 0


_hook_ref = _HOOK_TYPE(_hook)


def library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        lib = compile_shared(_SOURCE.read_text(), "libcublas.so", language="c", flags=_C_FLAGS)
        lib.emu_gemm_run.argtypes = [ctypes.POINTER(_Gemm)]
        lib.emu_set_hook.argtypes = [_HOOK_TYPE]
        lib.emu_set_hook(_hook_ref)
        _lib = lib
    return _lib


def handle_for(device_id: int) -> int:
    """The device's cuBLAS handle (CuPy keeps one per device and thread), created on first use."""
    handle = _handles.get(device_id)
    if handle is None:
        lib = library()
        h = ctypes.c_void_p()
        lib.cublasCreate_v2(ctypes.byref(h))
        handle = _handles[device_id] = int(h.value or 0)
    return handle
