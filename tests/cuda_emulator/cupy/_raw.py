"""cupy.RawModule and cupy.RawKernel of the emulator: CUDA C++ compiled by the host g++ with
the thread model of `_include/cupy_emulator_raw.h` (each block's threads as fibers, so
__syncthreads and warp shuffles behave as on a GPU for block-wide reductions).

A launch `kernel(grid, block, args)` passes device arrays as pointers and scalars as their
bytes (NumPy scalars keep their type; Python ints go as int64, floats as float64), as CuPy.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from . import _emulator
from ._core import _unsupported, check_device, ndarray
from ._kernel import _FLAGS, _INCLUDE, compile_shared

_RAW_FLAGS = (*_FLAGS, "-include", str(_INCLUDE / "cupy_emulator_raw.h"))
_launch_lock = threading.Lock()  # the fiber scheduler's state is global to the library


def _dims(value: Any) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, int) else tuple(value)
    if not 1 <= len(dims) <= 3:
        raise ValueError(f"grid and block take 1 to 3 dimensions, got {value!r}")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))  # type: ignore[return-value]


class RawModule:
    """cupy.RawModule(code=..., name_expressions=[...]): get_function(name) by name or by
    template name expression."""

    def __init__(self, code: str | None = None, path: str | None = None,
                 options: tuple[str, ...] = (), backend: str = "nvrtc",
                 translate_cucomplex: bool = False, enable_cooperative_groups: bool = False,
                 name_expressions: Any = None, jitify: bool = False) -> None:
        if code is None:
            if path is None:
                raise TypeError("One of code and path must be given")
            with open(path) as f:
                code = f.read()
        self.code = code
        self.options = options
        self.name_expressions = tuple(name_expressions or ())
        self._names = list(self.name_expressions)
        self._lib: Any = None

    def _library(self, name: str) -> Any:
        if name not in self._names:
            self._names.append(name)
            self._lib = None
        if self._lib is None:
            launchers = "".join(
                f"static void __emu_invoke_{k}(void *const *a) {{ __emu_call(&{expr}, a); }}\n"
                f'extern "C" int _emu_launch_{k}(void *const *a, unsigned gx, unsigned gy, '
                f"unsigned gz, unsigned bx, unsigned by, unsigned bz, int ftz) {{\n"
                f"  unsigned int csr = _mm_getcsr();\n"
                f"  if (ftz) _mm_setcsr(csr | 0x8040);\n"
                f"  int r = __emu_run_grid(__emu_invoke_{k}, a, dim3{{gx, gy, gz}}, "
                f"dim3{{bx, by, bz}});\n"
                f"  _mm_setcsr(csr);\n  return r;\n}}\n"
                for k, expr in enumerate(self._names))
            source = f"{self.code}\n#include <xmmintrin.h>\n{launchers}"
            self._lib = compile_shared(source, "raw_module", flags=_RAW_FLAGS)
        return self._lib

    def get_function(self, name: str) -> RawKernel:
        self._library(name)
        return RawKernel(self, name)


class RawKernel:
    """One kernel of a RawModule; RawKernel(code, name) builds a module of its own."""

    def __init__(self, code: Any, name: str, options: tuple[str, ...] = (),
                 backend: str = "nvrtc", translate_cucomplex: bool = False,
                 enable_cooperative_groups: bool = False, jitify: bool = False) -> None:
        self.module = code if isinstance(code, RawModule) else RawModule(code=code)
        self.name = self.__name__ = name

    def __call__(self, grid: Any, block: Any, args: tuple[Any, ...], *, shared_mem: int = 0,
                 stream: Any = None) -> None:
        if shared_mem:
            raise NotImplementedError("dynamic shared memory is not emulated")
        lib = self.module._library(self.name)
        launch = getattr(lib, f"_emu_launch_{self.module._names.index(self.name)}")
        launch.argtypes = [ctypes.c_void_p, *[ctypes.c_uint] * 6, ctypes.c_int]
        launch.restype = ctypes.c_int
        arrays = [a for a in args if isinstance(a, ndarray)]
        check_device(arrays)
        buffers = [_argument(a) for a in args]
        argv = (ctypes.c_void_p * max(len(buffers), 1))(
            *(b.__array_interface__["data"][0] for b in buffers))
        dtypes = {a.dtype for a in arrays}
        ftz = int(bool(dtypes & {np.dtype(np.float32), np.dtype(np.float16)})
                  and np.dtype(np.float64) not in dtypes)
        dims = (*_dims(grid), *_dims(block))
        nbytes = sum(a.nbytes for a in arrays)
        name = self.name.split("<")[0]

        def run() -> None:
            with _launch_lock:
                if launch(argv, *dims, ftz) != 0:
                    raise ValueError(f"invalid block size {block!r} for {self.name}")
        run.keep = (buffers, args)  # type: ignore[attr-defined]
        capture = _emulator.current_capture()
        if capture is None:
            run()
            _emulator.count_launch(name, nbytes)
            return
        # Which arrays a raw kernel writes is unknown: it runs now only if all its arrays
        # are graph memory (so no memory from before the capture can change).
        if all(a._mem.capture is capture for a in arrays):
            run()
        capture.record(name, nbytes, run)


def _argument(a: Any) -> np.ndarray:
    """The bytes a kernel parameter is read from: a pointer for arrays, the value else."""
    if isinstance(a, ndarray):
        return np.array([a.data.ptr if a.size else 0], np.uint64)
    if isinstance(a, np.generic):
        return np.array([a])
    if isinstance(a, bool):
        return np.array([a], np.bool_)
    if isinstance(a, int):
        return np.array([a], np.int64)
    if isinstance(a, float):
        return np.array([a], np.float64)
    raise _unsupported(a)
