"""cupy.ElementwiseKernel of the emulator: the source CuPy generates, compiled by the host g++.

For each call the arguments are bound as CuPy binds them (placeholder types from the array
dtypes, declared types for scalars, broadcasting of the non-raw arrays including outputs,
outputs allocated with the broadcast shape when not passed, dimensions merged where the
strides allow), then the kernel text is generated as CuPy's `_get_elementwise_kernel_code`
does it, and compiled with `cupy_emulator.h` standing in for CUDA and CuPy's headers:
float32 flush-to-zero (CuPy's -ftz=true) through the SSE control register around the call,
floating-point contraction into FMA as NVRTC does (where the host has FMA). One shared object
per generated source, cached on disk under CUPY_CACHE_DIR keyed by a hash of the source.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from . import _emulator
from ._core import _SCALARS, _unsupported, check_device, ndarray
from .cuda.compiler import CompileException

_INCLUDE = Path(__file__).with_name("_include")
_SHIM = _INCLUDE / "cupy_emulator.h"
_TYPENAMES = {
    np.dtype(np.float64): "double", np.dtype(np.float32): "float",
    np.dtype(np.float16): "float16", np.dtype(np.int64): "long long",
    np.dtype(np.int32): "int", np.dtype(np.int16): "short", np.dtype(np.int8): "signed char",
    np.dtype(np.uint64): "unsigned long long", np.dtype(np.uint32): "unsigned int",
    np.dtype(np.uint16): "unsigned short", np.dtype(np.uint8): "unsigned char",
    np.dtype(np.bool_): "bool",
}
_FLOAT16_DECL = '#include "cupy/float16.cuh"'
_INT32_MAX = 2**31 - 1


def _host_flags() -> tuple[str, ...]:
    try:
        cpu = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return ()
    return tuple(f"-m{flag}" for flag in ("fma", "f16c") if flag in cpu)


# -ffp-contract=fast fuses a*b+c into one rounding as NVRTC does (--fmad=true, its default);
# without FMA instructions on the host there is nothing to contract into. F16C makes the half
# conversions single instructions (the same rounding as the software ones).
_FLAGS = ("-std=c++17", "-O2", "-fPIC", "-shared", "-fno-math-errno", "-ffp-contract=fast",
          *_host_flags(), "-I", str(_INCLUDE), "-include", str(_SHIM))


def _typename(dtype: np.dtype) -> str:
    try:
        return _TYPENAMES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"dtype {dtype} is not supported by the emulated kernels") from None


class _Param:
    """One parameter of an in_params/out_params string, as CuPy's ParameterInfo."""

    def __init__(self, text: str, is_const: bool) -> None:
        words = text.split()
        if len(words) < 2:
            raise Exception(f"Syntax error: {text}")
        t, self.name = words[-2:]
        self.is_const = is_const
        self.raw = False
        self.dtype: np.dtype | None = None
        if len(t) == 1:
            self.ctype = t  # a type placeholder, bound from the arrays' dtypes
        else:
            self.dtype = np.dtype(t)
            self.ctype = _typename(self.dtype)
        for word in words[:-2]:
            if word == "raw":
                self.raw = True
            elif word == "_non_const":
                self.is_const = False
            else:
                raise Exception(f'Unknown keyword "{word}"')


def _reads(operation: str, name: str) -> bool:
    """Whether operation reads name: any use but as the target of a plain assignment
    (`name = ...` or `name[...] = ...`)."""
    for use in re.finditer(rf"\b{name}\b", operation):
        if not re.match(r"\s*(\[[^\]]*\]\s*)?=(?!=)", operation[use.end():]):
            return True
    return False


def _params(text: str, is_const: bool) -> tuple[_Param, ...]:
    text = text.strip()
    return tuple(_Param(p, is_const) for p in text.split(",")) if text else ()


class _Scalar:
    __slots__ = ("value", "dtype")

    def __init__(self, value: Any) -> None:
        self.value = value
        if isinstance(value, np.generic):
            self.dtype = value.dtype
        elif isinstance(value, bool):
            self.dtype = np.dtype(np.bool_)
        elif isinstance(value, int):
            self.dtype = np.dtype(np.uint64 if value >= 2**63 else np.int64)
        elif isinstance(value, float):
            self.dtype = np.dtype(np.float64)
        else:
            raise _unsupported(value)


def _decide_types(in_params: tuple[_Param, ...], out_params: tuple[_Param, ...],
                  in_dtypes: list[np.dtype | None], out_dtypes: list[np.dtype]
                  ) -> tuple[list[np.dtype], list[np.dtype], dict[str, np.dtype]]:
    """CuPy's _decide_params_type_core: bind placeholders, outputs first."""
    bound: dict[str, np.dtype] = {}
    for p, a in [*zip(out_params, out_dtypes), *zip(in_params, in_dtypes)]:
        if a is None:
            continue
        if p.dtype is not None:
            if np.dtype(a) != p.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {a} {p.dtype}")
        elif p.ctype in bound:
            if bound[p.ctype] != np.dtype(a):
                raise TypeError(f"Type is mismatched. {p.name} {a} {bound[p.ctype]} {p.ctype}")
        else:
            bound[p.ctype] = np.dtype(a)
    try:
        in_types = [bound[p.ctype] if p.dtype is None else p.dtype for p in in_params]
        out_types = [bound[p.ctype] if p.dtype is None else p.dtype for p in out_params]
    except KeyError as err:
        raise TypeError(f"type placeholder {err} is not bound by any array argument") from None
    return in_types, out_types, bound


def _reduce_dims(shape: tuple[int, ...], views: list[np.ndarray]
                 ) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """Drop unit axes and merge axes that are contiguous in every array (CuPy's
    reduce_dims), so the kernel indexes as few dimensions as the layout allows."""
    if len(shape) <= 1:
        return shape, views
    keep = [d for d in range(len(shape)) if shape[d] != 1]
    dims = [[shape[d], [v.strides[d] for v in views]] for d in keep]
    merged: list[list[Any]] = []
    for size, strides in dims:
        if merged and all(s_outer == s * size
                          for s_outer, s in zip(merged[-1][1], strides)):
            merged[-1][0] *= size
            merged[-1][1] = strides
        else:
            merged.append([size, strides])
    new_shape = tuple(m[0] for m in merged)
    reduced = [np.lib.stride_tricks.as_strided(v, new_shape, tuple(m[1][k] for m in merged))
               for k, v in enumerate(views)]
    return new_shape, reduced


def _index_32(view: np.ndarray) -> bool:
    extent = sum((n - 1) * abs(s) for n, s in zip(view.shape, view.strides)) + view.itemsize
    return view.size <= _INT32_MAX and extent <= _INT32_MAX


_lock = threading.Lock()
_loaded: dict[str, Any] = {}


def _cache_dir() -> Path:
    base = os.environ.get("CUPY_CACHE_DIR") or os.path.join(tempfile.gettempdir(),
                                                            "cupy-emulator-cache")
    path = Path(base) / "emulator"
    path.mkdir(parents=True, exist_ok=True)
    return path


def compile_shared(source: str, name: str, language: str = "c++",
                   flags: tuple[str, ...] = _FLAGS) -> Any:
    """The ctypes library built from source (cached on disk by a hash of source and flags)."""
    key = hashlib.sha256("\0".join((source, language, *flags, _SHIM.read_text())).encode()
                         ).hexdigest()[:32]
    with _lock:
        lib = _loaded.get(key)
        if lib is not None:
            return lib
        path = _cache_dir() / f"{name}-{key}.so"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            src = tmp.with_suffix(".src")
            src.write_text(source)
            compiler = "g++" if language == "c++" else "gcc"
            result = subprocess.run([compiler, *flags, "-x", language, str(src), "-o", str(tmp)],
                                    capture_output=True, text=True)
            src.unlink()
            if result.returncode != 0:
                raise CompileException(f"{compiler} failed for {name}:\n{result.stderr}", source,
                                       name, flags)
            os.replace(tmp, path)
        lib = _loaded[key] = ctypes.CDLL(str(path))
        return lib


class ElementwiseKernel:
    """cupy.ElementwiseKernel: see the module docstring."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str = "kernel",
                 reduce_dims: bool = True, preamble: str = "", no_return: bool = False,
                 return_tuple: bool = False, loop_prep: str = "", after_loop: str = "",
                 options: tuple[str, ...] = ()) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f'Invalid kernel name: "{name}"')
        self.in_params = _params(in_params, True)
        self.out_params = _params(out_params, False)
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout
        self.params = self.in_params + self.out_params
        if "i" in [p.name for p in self.params]:
            raise ValueError("Can not use 'i' as a parameter name")
        self.operation = operation
        self.name = self.__name__ = name
        self.reduce_dims = reduce_dims
        self.preamble = preamble
        self.no_return = no_return
        self.return_tuple = return_tuple
        self.loop_prep = loop_prep
        self.after_loop = after_loop
        self.options = options
        self.cached_codes: dict[tuple[np.dtype, ...], str] = {}
        # Outputs the operation also reads (p in "p = p - lr * g") are loaded and stored: their
        # bytes count twice, as a ufunc's out= that is also an operand does.
        self._read_outputs = [k for k, p in enumerate(self.out_params, self.nin)
                              if _reads(operation, p.name)]

    def __call__(self, *args: Any, size: int = -1, stream: Any = None,
                 block_size: int = 128) -> Any:
        if block_size <= 0:
            raise ValueError("block_size must be greater than zero")
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either "
                            f"{self.nin} or {self.nargs} (with outputs), but given {len(args)}.")
        pre: list[Any] = []
        for a in args:
            if isinstance(a, ndarray):
                pre.append(a)
            elif isinstance(a, _SCALARS):
                pre.append(_Scalar(a))
            else:
                raise _unsupported(a)
        check_device([a for a in pre if isinstance(a, ndarray)])
        nonraw = [a for a, p in zip(pre, self.params) if isinstance(a, ndarray) and not p.raw]
        if size != -1:
            if nonraw:
                raise ValueError("Specified 'size' can be used only if all of the ndarray are "
                                 "'raw'.")
            shape: tuple[int, ...] = (size,)
        else:
            if not nonraw:
                raise ValueError("Loop size is undecided.")
            try:
                shape = np.broadcast_shapes(*(a.shape for a in nonraw))
            except ValueError:
                shapes = ", ".join(str(a.shape) for a in nonraw)
                raise ValueError(f"operands could not be broadcast together with shapes "
                                 f"{shapes}") from None
        in_args, out_args = pre[:self.nin], pre[self.nin:]
        in_types, out_types, bound = _decide_types(
            self.in_params, self.out_params,
            [a.dtype if isinstance(a, ndarray) else None for a in in_args],
            [a.dtype for a in out_args])
        if not out_args:
            for p in self.out_params:
                if p.raw and size == -1:
                    raise ValueError("Output array size is Undecided")
            out_args = [ndarray(shape, t) for t in out_types]
        else:
            for p, a in zip(self.out_params, out_args):
                if not isinstance(a, ndarray):
                    raise TypeError("Output arguments type must be cupy.ndarray")
                if not p.raw and a.shape != shape:
                    raise ValueError("Out shape is mismatched")
        if self.no_return:
            ret = None
        elif not self.return_tuple and self.nout == 1:
            ret = out_args[0]
        else:
            ret = tuple(out_args)
        if 0 in shape:
            return ret
        self._launch(in_args + out_args, in_types, shape, bound)
        return ret

    def _launch(self, inout: list[Any], in_types: list[np.dtype], shape: tuple[int, ...],
                bound: dict[str, np.dtype]) -> None:
        # The non-raw arrays, broadcast to the loop shape, then with merged dimensions.
        slots = [k for k, (a, p) in enumerate(zip(inout, self.params))
                 if isinstance(a, ndarray) and not p.raw]
        views = [np.broadcast_to(inout[k]._a, shape) if k < self.nin else inout[k]._a
                 for k in slots]
        if self.reduce_dims:
            shape, views = _reduce_dims(shape, views)
        view_of = dict(zip(slots, views))
        # ("array", dtype, ndim, c_contiguous, index_32_bits) or ("scalar", dtype) per argument
        infos: list[tuple[Any, ...]] = []
        buffers: list[Any] = []
        for k, a in enumerate(inout):
            if isinstance(a, ndarray):
                v = view_of.get(k, a._a)
                infos.append(("array", v.dtype, v.ndim, bool(v.flags.c_contiguous),
                              _index_32(v)))
                buffers.append(_carray(v))
            else:
                with np.errstate(all="ignore"):
                    value = np.array(a.value).astype(in_types[k])
                infos.append(("scalar", value.dtype))
                buffers.append(value)
        size = int(np.prod(shape, dtype=np.int64))
        ndim = len(shape)
        infos.append(("indexer", ndim, size <= _INT32_MAX))
        indexer = np.zeros(1 + 2 * max(ndim, 1), np.int64)
        indexer[0] = size
        indexer[1:1 + ndim] = shape
        buffers.append(indexer)
        source, ftz = self._source(infos, bound)
        lib = compile_shared(source, self.name)
        argv = (ctypes.c_void_p * len(buffers))(
            *(b.__array_interface__["data"][0] for b in buffers))
        launch = lib._emu_launch
        launch.argtypes = [ctypes.c_void_p, ctypes.c_int]
        outs = inout[self.nin:]
        nbytes = sum(a.nbytes for a in inout if isinstance(a, ndarray))
        nbytes += sum(inout[k].nbytes for k in self._read_outputs)

        def run() -> None:
            launch(argv, ftz)
        run.keep = (buffers, inout)  # type: ignore[attr-defined]
        capture = _emulator.current_capture()
        if capture is None:
            run()
            _emulator.count_launch(self.name, nbytes)
            return
        if all(o._mem.capture is capture for o in outs):
            run()  # only graph memory is written: let the values flow for later shapes
        capture.record(self.name, nbytes, run)

    def _source(self, infos: list[tuple[Any, ...]], bound: dict[str, np.dtype]
                ) -> tuple[str, int]:
        """The kernel text CuPy generates, plus the emulator's launcher, and the FTZ flag."""
        decls: set[str] = set()
        params, refs, casts = [], [], []
        for p, info in zip([*self.params, None], infos):
            if info[0] == "indexer":
                ctype = f"CIndexer<{info[1]}, {int(info[2])}>"
                params.append(f"{ctype} _ind")
                casts.append(f"*({ctype} *)a[{len(casts)}]")
                continue
            tname = _typename(info[1])
            if info[1] == np.float16:
                decls.add(_FLOAT16_DECL)
            if info[0] == "array":
                ctype = f"CArray<{tname}, {info[2]}, {int(info[3])}, {int(info[4])}>"
                var = p.name if p.raw else f"_raw_{p.name}"
                if not p.raw:
                    const = "const " if p.is_const else ""
                    refs.append(f"{const}{p.ctype} &{p.name} = _raw_{p.name}[_ind.get()];")
            else:
                ctype, var = tname, p.name
            params.append(f"{'const ' if p.is_const else ''}{ctype} {var}")
            casts.append(f"*({ctype} *)a[{len(casts)}]")
        for dtype in bound.values():
            if dtype == np.float16:
                decls.add(_FLOAT16_DECL)
        type_decls = "\n".join(sorted(decls)) + "\n\n" if decls else ""
        typedefs = "".join(f"typedef {_typename(t)} {c};\n" for c, t in sorted(bound.items()))
        operation = "\n".join([*refs, self.operation])
        code = f"""
    {type_decls}{typedefs}
    {self.preamble}
    extern "C" __global__ void {self.name}({", ".join(params)}) {{
      {self.loop_prep};
      #pragma unroll 1
      CUPY_FOR(i, _ind.size()) {{
        _ind.set(i);
        {operation};
      }}
      {self.after_loop};
    }}
    """
        key = tuple(info[1] for info in infos if info[0] == "array")
        self.cached_codes.setdefault(key, code)
        dtypes = {info[1] for info in infos if info[0] != "indexer"} | set(bound.values())
        ftz = int(bool(dtypes & {np.dtype(np.float32), np.dtype(np.float16)}))
        launcher = f"""
#include <xmmintrin.h>
// The emulator's entry point: a[k] points at argument k's value (CArray fields, a scalar, the
// indexer). FTZ|DAZ in MXCSR flush float32 subnormals as CuPy's -ftz=true does.
extern "C" void _emu_launch(void *const *a, int ftz) {{
  unsigned int csr = _mm_getcsr();
  if (ftz) _mm_setcsr(csr | 0x8040);
  {self.name}({", ".join(casts)});
  _mm_setcsr(csr);
}}
"""
        return code + launcher, ftz

    @property
    def cached_code(self) -> str:
        return next(iter(self.cached_codes.values()))


def _carray(view: np.ndarray) -> np.ndarray:
    """The CArray fields (data, size, shape, strides) of a view, as int64s."""
    ndim = view.ndim
    fields = np.zeros(2 + 2 * max(ndim, 1), np.int64)
    fields[0] = view.__array_interface__["data"][0]
    fields[1] = view.size
    fields[2:2 + ndim] = view.shape
    fields[2 + max(ndim, 1):2 + max(ndim, 1) + ndim] = view.strides
    return fields
