"""Capture on the CPU: record the NumPy work of a step once, replay it as a straight list.

While a CpuGraph records, every array the step reads from a tensor is handed out as a
`_Traced` view (a NumPy subclass sharing the memory). NumPy routes what is done to such an
array through three hooks: ufuncs and the operators (`__array_ufunc__`: elementwise math,
matmul, reductions, `ufunc.at`), NumPy functions (`__array_function__`: concatenate, where,
einsum ...) and the ndarray methods overridden below (copies, indexing, assignment). Each hook
runs the operation on plain arrays, keeps a fresh result as a buffer owned by the graph, and
appends to the graph's list the same call writing into that buffer (`out=`) or, where NumPy
has no `out=`, a copy into it. A result that is a view of its input needs no entry: it sees
its buffer's new values by itself. The backend's kernels, random generator and array
creation are swapped for recording stand-ins for the same time, so a fused kernel is one
entry (it reads its learning rate and step count when it runs), a random draw draws anew on
every replay, and a zeros() buffer is zeroed again.

Replay then runs the list: NumPy calls on the buffers, with no Tensor, tape or dispatch, and
no allocation beyond the temporaries inside kernels and the few NumPy functions without
`out=`. A read of values on the host (float(), bool(), .item(), printing) or an op whose
output size depends on the data raises CaptureError, as it would on CUDA.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ._base import CaptureError

if TYPE_CHECKING:
    from ._cpu import CpuBackend

_Entry = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]

_active: CpuGraph | None = None  # the graph recording now (captures do not nest)
_owner = 0  # the thread recording: arrays other threads touch meanwhile act as plain ones


def _recording() -> CpuGraph | None:
    """The graph that records what this thread does, if any."""
    return _active if _active is not None and threading.get_ident() == _owner else None

# NumPy functions whose result size depends on the values, or that answer on the host.
_DATA_DEPENDENT = frozenset({
    "nonzero", "argwhere", "flatnonzero", "unique", "extract", "compress", "count_nonzero",
    "array_equal", "array_equiv", "allclose", "searchsorted", "histogram", "bincount",
    "array2string", "array_repr", "array_str", "save", "savez", "tolist"})
# NumPy functions and ndarray methods that take out=, so a replay writes in place.
_TAKES_OUT = frozenset({
    "concatenate", "einsum", "dot", "take", "clip", "cumsum", "cumprod", "sum", "prod",
    "mean", "amax", "amin", "max", "min", "any", "all", "argmax", "argmin", "round",
    "around", "matmul", "var", "std", "stack"})
# Draws of numpy.random.Generator that fill out= (the others are drawn and copied in).
_RNG_OUT = frozenset({"random", "standard_normal", "standard_exponential"})


def _plain(value: Any) -> Any:
    """value with every _Traced array (also inside lists, tuples and dicts) as a plain view."""
    if isinstance(value, _Traced):
        return value.view(np.ndarray)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _arrays(value: Any) -> Iterator[np.ndarray]:
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _arrays(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _arrays(v)


def _copy_result(buf: np.ndarray, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
    """Replay of a call without out=: run it and copy the result into its buffer."""
    np.copyto(buf, fn(*args, **kwargs), casting="unsafe")


def _copy_results(bufs: tuple[np.ndarray, ...], fn: Callable[..., Any], args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> None:
    for buf, r in zip(bufs, fn(*args, **kwargs)):
        np.copyto(buf, r, casting="unsafe")


def _under_errstate(changed: dict[str, str], fn: Callable[..., Any], *args: Any,
                    **kwargs: Any) -> Any:
    """Replay of a call recorded inside np.errstate: under the settings it changed."""
    with np.errstate(**changed):  # type: ignore[arg-type]
        return fn(*args, **kwargs)


def _out_position(fn: Callable[..., Any]) -> int | None:
    """Where fn takes its `out` argument, or None if it has none."""
    names = list(inspect.signature(fn).parameters)
    return names.index("out") if "out" in names else None


class CpuGraph:
    """Capture on the CPU: same interface as the CUDA backend's graph (see Backend.new_graph);
    unlike CUDA, recording runs the work once."""

    runs_when_captured = True

    def __init__(self, backend: CpuBackend) -> None:
        self.reads_through = (self.trace, self.untrace)
        self._views: dict[int, tuple[np.ndarray, _Traced]] = {}
        self._backend = backend
        self._entries: list[_Entry] | None = None
        self._buffers: list[np.ndarray] = []

    # ---- recording --------------------------------------------------------------------------
    @contextlib.contextmanager
    def capture(self) -> Iterator[CpuGraph]:
        global _active, _owner
        backend = self._backend
        if self._entries is not None:
            raise RuntimeError("this graph already holds a capture; create a new one")
        if _active is not None:
            raise CaptureError("a capture is already running")
        entries: list[_Entry] = []
        saved = backend.xp, backend.kernels, backend._rng
        backend.xp = _RecordingXp(self)
        backend.kernels = _RecordingKernels(self, saved[1])
        backend._rng = _RecordingRng(self, saved[2])
        backend.capturing = True
        _active, _owner = self, threading.get_ident()
        self._pending = entries
        self._errors = np.geterr()
        try:
            yield self
        finally:
            self._views.clear()
            _active = None
            backend.capturing = False
            backend.xp, backend.kernels, backend._rng = saved
            del self._pending, self._errors
        self._entries = entries
        self._calls = [functools.partial(fn, *args, **kwargs) for fn, args, kwargs in entries]

    def trace(self, array: Any) -> Any:
        """The array as the recording sees it: a _Traced view of the same memory, the same
        view object each time (the engine tells arrays apart by identity)."""
        if type(array) is not np.ndarray:
            if hasattr(array, "__cuda_array_interface__"):
                raise CaptureError(
                    "a CPU recording read a CUDA tensor: the step's tensor arguments choose "
                    "the device it is recorded for (the default device when it has none); "
                    "pass one of its tensors on the GPU, or set the default device")
            return array
        hit = self._views.get(id(array))
        if hit is not None and hit[0] is array:
            return hit[1]
        view = array.view(_Traced)
        self._views[id(array)] = (array, view)
        return view

    @staticmethod
    def untrace(array: Any) -> Any:
        """The plain array behind a traced one (the very array it was made from, if any)."""
        if not isinstance(array, _Traced):
            return array
        origin = np.ndarray.base.__get__(array)
        return origin if _retyped(array, origin) else array.view(np.ndarray)

    def add(self, fn: Callable[..., Any], args: tuple[Any, ...],
            kwargs: dict[str, Any] | None = None) -> None:
        # An op that silences NumPy (np.errstate around 1 / 0 of an all-ignored batch) must be
        # as silent on replay, when its errstate block is long gone.
        changed = {k: v for k, v in np.geterr().items() if v != self._errors[k]}
        if changed:
            fn, args = _under_errstate, (changed, fn, *args)
        self._pending.append((fn, args, kwargs or {}))

    def own(self, result: Any) -> np.ndarray:
        """A fresh result (array or NumPy scalar) as a buffer this graph keeps."""
        buf = np.array(result) if isinstance(result, np.generic) else result
        self._buffers.append(buf)
        return buf

    def record(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
               takes_out: bool, source: np.ndarray | None = None) -> Any:
        """Run fn on plain arguments now and record it; the result as the step will see it.
        `source`: fn copies this array (copy, astype, reshape ...), so a replay copies it
        straight into the buffer."""
        _check_recorded((args, kwargs), fn)
        result = fn(*args, **kwargs)
        if result is None or kwargs.get("out") is not None:  # it wrote into an argument
            self.add(fn, args, kwargs)
            return None if result is None else self.trace(result)
        inputs = list(_arrays((args, kwargs)))
        if isinstance(result, np.ndarray) and any(np.may_share_memory(result, a)
                                                  for a in inputs):
            return result.view(_Traced)  # a view: it follows its base on every replay
        if isinstance(result, (np.ndarray, np.generic)):
            buf = self.own(result)
            if source is not None and buf.size == source.size:
                self.add(np.copyto, (buf.reshape(source.shape), source), {"casting": "unsafe"})
            elif takes_out:
                self.add(fn, args, {**kwargs, "out": buf})
            else:
                self.add(_copy_result, (buf, fn, args, kwargs))
            return buf.view(_Traced)
        if isinstance(result, (list, tuple)) and all(isinstance(r, np.ndarray) for r in result):
            fresh = [not any(np.may_share_memory(r, a) for a in inputs) for r in result]
            if any(fresh):
                bufs = tuple(self.own(r) for r in result)
                if takes_out:
                    self.add(fn, args, {**kwargs, "out": bufs})
                else:
                    self.add(_copy_results, (bufs, fn, args, kwargs))
                return type(result)(b.view(_Traced) for b in bufs)
            return type(result)(r.view(_Traced) for r in result)
        return result  # shapes, dtypes: no values

    # ---- replay -----------------------------------------------------------------------------
    def replay(self) -> None:
        """Run the recorded calls again, in order."""
        if self._entries is None:
            raise RuntimeError("replay() before anything was captured")
        for call in self._calls:
            call()

    def pool_bytes(self) -> int:
        """Bytes of the buffers the recording allocated (flat across replays)."""
        return sum(b.nbytes for b in self._buffers)

    def __len__(self) -> int:
        """Number of recorded calls a replay makes."""
        return len(self._entries or ())


def _host_read(name: str) -> Callable[..., Any]:
    base = getattr(np.ndarray, name)

    def read(self: _Traced, *args: Any, **kwargs: Any) -> Any:
        if _recording() is not None:
            raise CaptureError(
                f"{name.strip('_')}() reads an array's values on the host inside a capture, "
                "which the replay could not repeat; keep the values in tensors and read them "
                "after the call")
        return base(self.view(np.ndarray), *args, **kwargs)
    read.__name__ = name
    return read


def _method(name: str) -> Callable[..., Any]:
    base = getattr(np.ndarray, name)
    takes_out = name in _TAKES_OUT
    copies = name in ("copy", "astype", "flatten", "ravel", "reshape", "__copy__",
                      "__deepcopy__")

    def method(self: _Traced, *args: Any, **kwargs: Any) -> Any:
        plain = self.view(np.ndarray)
        args, kwargs = _plain(args), _plain(kwargs)
        graph = _recording()
        if graph is None:
            return base(plain, *args, **kwargs)
        # A C-order copy of plain, whatever its new shape; order="F" reorders the elements.
        c_order = "order" not in kwargs and not (name in ("flatten", "ravel") and args)
        return graph.record(base, (plain, *args), kwargs, takes_out,
                              plain if copies and c_order else None)
    method.__name__ = name
    return method


def _check_recorded(value: Any, fn: Any) -> None:
    """Refuse an array that NumPy made as a _Traced of its own: an operation none of the hooks
    saw produced it, so a replay would read its values from the recording forever. (Every
    array the hooks hand out is a view of a plain array: a buffer, a tensor's, a constant.)"""
    for a in _arrays(value):
        root = a
        while isinstance(np.ndarray.base.__get__(root), np.ndarray):
            root = np.ndarray.base.__get__(root)
        if isinstance(root, _Traced):
            raise CaptureError(
                f"{getattr(fn, '__name__', fn)} inside a capture reads an array made by a NumPy "
                "operation the CPU capture does not record; use tensorgrad ops (or the "
                "backend's xp) for it")


def _along_axis(arr: np.ndarray, indices: np.ndarray, axis: int
                ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """np.take_along_axis(arr, indices, axis) as (arr, key) for arr[key]: the fancy index
    NumPy builds on every call (in Python, about 20 us), built once with the other axes'
    ranges and the indices buffer itself, which the replay refills."""
    axis %= arr.ndim
    key = tuple(indices if d == axis else
                np.arange(n).reshape([-1 if k == d else 1 for k in range(arr.ndim)])
                for d, n in enumerate(arr.shape))
    return arr, key


def _retyped(view: np.ndarray, origin: Any) -> bool:
    """Whether view is origin itself, only retyped (same memory, shape, strides, dtype)."""
    return (type(origin) is np.ndarray and origin.shape == view.shape
            and origin.strides == view.strides and origin.dtype == view.dtype
            and origin.ctypes.data == view.ctypes.data)


class _Traced(np.ndarray):
    """An array whose operations are recorded into the active CpuGraph (see the module)."""

    @property  # type: ignore[override]
    def base(self) -> Any:
        """The base as the untraced array would answer: None for a buffer of its own."""
        base = np.ndarray.base.__get__(self)
        return base.base if _retyped(self, base) else base

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any
                        ) -> Any:
        if any(getattr(type(x), "__array_ufunc__", 0) is None for x in inputs):
            return NotImplemented  # a Tensor operand: its reflected dunder answers
        fn = getattr(ufunc, method)
        args = _plain(inputs)
        out = kwargs.get("out")
        kwargs = _plain(kwargs)
        graph = _recording()
        if graph is None:
            return fn(*args, **kwargs)
        if method != "__call__":  # NumPy's defaults, spelled out by the array methods
            for name, default in (("where", True), ("dtype", None), ("keepdims", False)):
                if name in kwargs and kwargs[name] is default:
                    del kwargs[name]
        _check_recorded(inputs, ufunc)
        if method == "at" or out is not None:  # writes into memory that already exists
            fn(*args, **kwargs)
            graph.add(fn, args, kwargs)
            if out is None:
                return None
            return out[0] if len(out) == 1 else out
        result = fn(*args, **kwargs)
        if isinstance(result, tuple):
            bufs = tuple(graph.own(r) for r in result)
            graph.add(fn, args, {**kwargs, "out": bufs})
            return tuple(b.view(_Traced) for b in bufs)
        buf = graph.own(result)
        graph.add(fn, args, {**kwargs, "out": (buf,)})
        return buf.view(_Traced)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        name = func.__name__
        graph = _recording()
        if graph is None:
            return func(*_plain(args), **_plain(kwargs))
        if name in _DATA_DEPENDENT:
            raise CaptureError(
                f"np.{name} inside a capture: its result's size or value depends on the data "
                "(boolean masks, nonzero, unique) or is read on the host, which a replay "
                "cannot repeat")
        if name == "take_along_axis" and len(args) + len(kwargs) == 3 \
                and (args + tuple(kwargs.values()))[2] is not None:
            return graph.record(np.ndarray.__getitem__, _along_axis(*_plain(args),
                                                                    **_plain(kwargs)),
                                {}, False)
        return graph.record(func, _plain(args), _plain(kwargs), name in _TAKES_OUT)

    def __getitem__(self, key: Any) -> Any:
        plain = self.view(np.ndarray)
        key = _plain(key)
        graph = _recording()
        if graph is None:
            return plain[key]
        if any(a.dtype == np.bool_ for a in _arrays(key)):
            raise CaptureError("boolean-mask indexing inside a capture: the result's size "
                               "depends on the data; use where() or masked_fill instead")
        return graph.record(np.ndarray.__getitem__, (plain, key), {}, False)

    def __iter__(self) -> Iterator[Any]:
        # Through __getitem__, so elements of a 1-d array are recorded 0-d buffers, not values.
        return (self[k] for k in range(len(self)))

    def __setitem__(self, key: Any, value: Any) -> None:
        plain = self.view(np.ndarray)
        key, value = _plain(key), _plain(value)
        plain[key] = value
        graph = _recording()
        if graph is not None:
            graph.add(np.ndarray.__setitem__, (plain, key, value))

    for _name in ("copy", "astype", "flatten", "ravel", "reshape", "transpose", "swapaxes",
                  "squeeze", "take", "repeat", "dot", "argmax", "argmin", "argsort", "sort",
                  "cumsum", "cumprod", "round", "fill", "put", "diagonal", "trace",
                  "nonzero", "searchsorted", "__copy__", "__deepcopy__"):
        locals()[_name] = _method(_name)
    for _name in ("item", "tolist", "tobytes", "__float__", "__int__", "__index__",
                  "__complex__", "__bool__", "__repr__", "__str__", "__format__"):
        locals()[_name] = _host_read(_name)
    del _name


class _RecordingXp:
    """NumPy as an op sees it during recording: creation functions hand out buffers that
    the replay refills, and conversions of traced arrays stay traced."""

    def __init__(self, graph: CpuGraph) -> None:
        self._graph = graph
        self.lib = _Lib(graph)

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    def _filled(self, buf: np.ndarray, value: Any) -> _Traced:
        self._graph.own(buf)
        if value is not None:
            self._graph.add(np.ndarray.fill, (buf, value))
        return buf.view(_Traced)

    def zeros(self, *args: Any, **kwargs: Any) -> _Traced:
        return self._filled(np.zeros(*args, **kwargs), 0)

    def ones(self, *args: Any, **kwargs: Any) -> _Traced:
        return self._filled(np.ones(*args, **kwargs), 1)

    def empty(self, *args: Any, **kwargs: Any) -> _Traced:
        return self._filled(np.empty(*args, **kwargs), None)

    def full(self, shape: Any, fill_value: Any, *args: Any, **kwargs: Any) -> _Traced:
        if isinstance(fill_value, np.ndarray):
            raise CaptureError("full() with an array fill value inside a capture")
        buf = np.full(shape, fill_value, *args, **kwargs)
        return self._filled(buf, buf.reshape(-1)[0] if buf.size else None)

    def _convert(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
        if any(isinstance(a, _Traced) for a in _arrays((args, kwargs))):
            return self._graph.record(fn, _plain(args), _plain(kwargs), False)
        return fn(*args, **kwargs)

    def asarray(self, *args: Any, **kwargs: Any) -> Any:
        return self._convert(np.asarray, args, kwargs)

    def asanyarray(self, *args: Any, **kwargs: Any) -> Any:
        return self._convert(np.asarray, args, kwargs)

    def ascontiguousarray(self, *args: Any, **kwargs: Any) -> Any:
        return self._convert(np.ascontiguousarray, args, kwargs)

    def array(self, *args: Any, **kwargs: Any) -> Any:
        return self._convert(np.array, args, kwargs)


class _Lib:
    def __init__(self, graph: CpuGraph) -> None:
        self.stride_tricks = _StrideTricks(graph)

    def __getattr__(self, name: str) -> Any:
        return getattr(np.lib, name)


class _StrideTricks:
    def __init__(self, graph: CpuGraph) -> None:
        self._graph = graph

    def __getattr__(self, name: str) -> Any:
        return getattr(np.lib.stride_tricks, name)

    def as_strided(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        view = np.lib.stride_tricks.as_strided(_plain(x), *args, **kwargs)
        return view.view(_Traced) if isinstance(x, _Traced) else view


class _RecordingKernels:
    """The CPU kernels as ops see them during recording: each call is one entry (run whole,
    so it reads learning rates and step counts from their arrays on every replay)."""

    def __init__(self, graph: CpuGraph, kernels: Any) -> None:
        self._graph = graph
        self._kernels = kernels

    def __getattr__(self, name: str) -> Any:
        kernel = getattr(self._kernels, name)
        if not callable(kernel):
            return kernel
        out_at = _out_position(kernel)

        def call(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = _plain(args), _plain(kwargs)
            if out_at is not None and len(args) > out_at:  # out given by position
                kwargs["out"] = args[out_at]
                args = args[:out_at] + args[out_at + 1:]
            return self._graph.record(kernel, args, kwargs, out_at is not None)
        return call


class _RecordingRng:
    """The random generator as ops see it during recording: each draw is an entry that draws
    anew (from this generator's stream) on every replay."""

    def __init__(self, graph: CpuGraph, rng: np.random.Generator) -> None:
        self._graph = graph
        self._rng = rng

    def __getattr__(self, name: str) -> Any:
        draw = getattr(self._rng, name)
        if not callable(draw):
            return draw

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._graph.record(draw, _plain(args), _plain(kwargs), name in _RNG_OUT)
        return call
