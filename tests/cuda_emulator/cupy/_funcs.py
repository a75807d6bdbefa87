"""The cupy namespace of the emulator: NumPy's functions and ufuncs behind `dispatch`, for the
names CuPy 14.2 has, plus the functions whose CuPy behaviour differs (array creation from host
data, asnumpy, from_dlpack, empty without a launch)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _emulator
from ._core import NAMES, _host_to_device, _unsupported, dispatch, ndarray
from ._raw import RawKernel, RawModule

_CUPY_UFUNCS = frozenset(NAMES["ufuncs"])
_SCALARS = (bool, int, float, complex, np.generic)


class ufunc:  # noqa: N801  (CuPy's name)
    """A NumPy ufunc run through dispatch; arguments must be device arrays or scalars."""

    def __init__(self, np_ufunc: np.ufunc) -> None:
        self._np = np_ufunc
        self.__name__ = self.name = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs

    def _check(self, args: tuple[Any, ...]) -> None:
        for x in args:
            if not isinstance(x, (ndarray, *_SCALARS)) and x is not None:
                raise _unsupported(x)

    def __call__(self, *args: Any, out: Any = None, **kwargs: Any) -> Any:
        self._check(args)
        if out is not None:
            kwargs["out"] = out
            writes = out if isinstance(out, tuple) else (out,)
            for w in writes:
                if not isinstance(w, ndarray):
                    raise TypeError("Output arguments type must be cupy.ndarray")
        else:
            writes = ()
        return dispatch(self.name, self._np, args, kwargs, writes=writes)

    def at(self, a: ndarray, indices: Any, b: Any = None) -> None:
        if not isinstance(a, ndarray):
            raise _unsupported(a)
        from ._core import _device_key

        args = (a, _device_key(indices)) if b is None else (a, _device_key(indices), b)
        dispatch(f"{self.name}.at", self._np.at, args, {}, writes=(a,))

    def reduce(self, a: ndarray, *args: Any, out: Any = None, **kwargs: Any) -> Any:
        self._check((a,))
        writes = (out,) if out is not None else ()
        if out is not None:
            kwargs["out"] = out
        return dispatch(f"{self.name}.reduce", self._np.reduce, (a, *args), kwargs,
                        writes=writes)

    def accumulate(self, a: ndarray, *args: Any, **kwargs: Any) -> Any:
        self._check((a,))
        return dispatch(f"{self.name}.accumulate", self._np.accumulate, (a, *args), kwargs)

    def outer(self, a: Any, b: Any, **kwargs: Any) -> Any:
        self._check((a, b))
        return dispatch(f"{self.name}.outer", self._np.outer, (a, b), kwargs)

    def __repr__(self) -> str:
        return f"<ufunc '{self.name}'>"


@functools.cache
def get_ufunc(name: str) -> ufunc | None:
    np_ufunc = getattr(np, name, None)
    if (name in _CUPY_UFUNCS or name == "matmul") and isinstance(np_ufunc, np.ufunc):
        return ufunc(np_ufunc)
    return None


def _function(name: str, np_fn: Callable[..., Any]) -> Callable[..., Any]:
    def fn(*args: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out")
        writes = (out,) if isinstance(out, ndarray) else ()
        return dispatch(name, np_fn, args, kwargs, writes=writes)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"cupy.{name} of the emulator (NumPy's {name} on the device's memory)."
    return fn


@functools.cache
def lookup(name: str, namespace: str = "cupy") -> Any:
    """The emulator's object for cupy.<name> (or cupy.linalg.<name>), or AttributeError."""
    if name not in NAMES[namespace]:
        raise AttributeError(f"module '{namespace}' has no attribute '{name}'")
    np_module = np if namespace == "cupy" else np.linalg
    if namespace == "cupy":
        special = _SPECIAL.get(name)
        if special is not None:
            return special
        u = get_ufunc(name)
        if u is not None:
            return u
    obj = getattr(np_module, name, None)
    if obj is None:
        raise AttributeError(f"module '{namespace}' has no attribute '{name}' in the emulator "
                             "(CuPy has it; NumPy, which the emulator runs on, does not)")
    if isinstance(obj, type) or not callable(obj):
        return obj  # dtypes, scalar types, constants: CuPy's are NumPy's
    return _function(name, obj)


# ---------------------------------------------------------------------------------------------
# Functions whose CuPy behaviour differs from applying NumPy's to the device arrays

def array(obj: Any, dtype: Any = None, copy: bool = True, order: str = "K",
          subok: bool = False, ndmin: int = 0, blocking: bool = False) -> ndarray:
    if isinstance(obj, ndarray):
        return dispatch("copy", lambda a: np.array(a, dtype=dtype, copy=copy, order=order,
                                                    ndmin=ndmin), (obj,), {})
    if hasattr(obj, "__cuda_array_interface__"):
        return _from_cuda_array_interface(obj)
    if isinstance(obj, (list, tuple)) and any(isinstance(v, ndarray) for v in obj):
        return dispatch("stack", lambda *xs: np.array(xs, dtype=dtype), tuple(obj), {})
    host = np.array(obj, dtype=dtype, order=order if order != "K" else "C", ndmin=ndmin)
    return _host_to_device(host)


def asarray(a: Any, dtype: Any = None, order: Any = None, *, blocking: bool = False) -> ndarray:
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype, copy=False)
    if hasattr(a, "__cuda_array_interface__"):
        view = _from_cuda_array_interface(a)
        return view if dtype is None else view.astype(dtype, copy=False)
    return array(a, dtype=dtype, order=order or "K")


def ascontiguousarray(a: Any, dtype: Any = None) -> ndarray:
    if not isinstance(a, ndarray):
        raise _unsupported(a)
    if a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    return dispatch("ascontiguousarray", np.ascontiguousarray, (a,), {"dtype": dtype})


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None,
            blocking: bool = True) -> np.ndarray:
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out)
    if hasattr(a, "__cuda_array_interface__"):
        return _from_cuda_array_interface(a).get(order=order, out=out)
    return np.asarray(a, order=order)


def empty(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    return ndarray(shape, dtype, order=order)  # allocation only: no kernel


def empty_like(a: Any, dtype: Any = None, order: str = "K", subok: Any = None,
               shape: Any = None) -> ndarray:
    if not isinstance(a, ndarray):
        raise _unsupported(a)
    shape = a.shape if shape is None else shape
    return ndarray(shape, a.dtype if dtype is None else dtype,
                   order="F" if order in ("F", "A", "K") and a.flags.f_contiguous
                   and not a.flags.c_contiguous else "C")


def get_array_module(*args: Any) -> Any:
    import cupy

    return cupy if any(isinstance(a, ndarray) for a in args) else np


def from_dlpack(x: Any, *, device: Any = None, copy: Any = None) -> ndarray:
    if isinstance(x, ndarray):
        return ndarray._view(x._a, x._mem)
    if hasattr(x, "__dlpack_device__") and x.__dlpack_device__()[0] != 2:
        raise RuntimeError("CuPy's from_dlpack takes CUDA arrays (kDLCUDA); this one is on "
                           f"device type {x.__dlpack_device__()[0]}")
    host = np.from_dlpack(x)
    if host.size == 0:
        return ndarray(host.shape, host.dtype)
    mem = _emulator.find_allocation(host.__array_interface__["data"][0])
    if mem is None:
        raise RuntimeError("from_dlpack: the capsule does not point into device memory")
    return ndarray._view(host, mem)


def _from_cuda_array_interface(obj: Any) -> ndarray:
    """A zero-copy view of another library's device array (it must point into an emulated
    allocation: the emulator has no other device memory)."""
    info = obj.__cuda_array_interface__
    ptr = info["data"][0]
    shape, dtype = tuple(info["shape"]), np.dtype(info["typestr"])
    if not ptr or 0 in shape:
        return ndarray(shape, dtype)
    mem = _emulator.find_allocation(ptr)
    if mem is None:
        raise ValueError(f"__cuda_array_interface__ pointer {ptr:#x} is not device memory")
    strides = info.get("strides")
    a = np.ndarray(shape, dtype, buffer=mem.host, offset=ptr - mem.ptr, strides=strides)
    return ndarray._view(a, mem)


def _refused(name: str, reason: str) -> Callable[..., Any]:
    def fn(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"cupy.{name} is not emulated: {reason}")
    return fn


def fuse(*args: Any, **kwargs: Any) -> Any:
    """cupy.fuse runs the function unfused (one launch per operation, unlike CuPy)."""
    if args and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f


def get_default_memory_pool() -> Any:
    from .cuda import get_default_memory_pool as pool

    return pool()


def is_available() -> bool:
    return _emulator.DEVICE_COUNT > 0


_SPECIAL: dict[str, Any] = {
    "array": array, "asarray": asarray, "asanyarray": asarray,
    "ascontiguousarray": ascontiguousarray, "asnumpy": asnumpy, "empty": empty,
    "empty_like": empty_like, "get_array_module": get_array_module, "from_dlpack": from_dlpack,
    "fuse": fuse, "get_default_memory_pool": get_default_memory_pool,
    "is_available": is_available, "ndarray": ndarray, "ufunc": ufunc,
    "RawKernel": RawKernel, "RawModule": RawModule,
    "ReductionKernel": _refused("ReductionKernel", "tensorgrad does not use it"),
}
