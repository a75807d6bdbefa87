"""tg.capture: record a whole training step once and replay it, on every device.

The one home of capture above the backends. Each backend makes its own graph
(`backend.new_graph()`: a CUDA graph on CUDA, a list of recorded NumPy calls on the CPU, both
in backend/); this module gives them one contract (CapturedStep) and the CUDA-only
`tg.cuda.CUDAGraph` that PyTorch users know.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import numpy as np

from ._device import Device, as_device, get_default_device
from ._tensor import Tensor
from .backend import CaptureError, get_backend

__all__ = ["CUDAGraph", "CaptureError", "CapturedStep", "capture"]

_baked_version = 0  # counts changes of Python-side state that recordings bake in


def baked_state_changed() -> None:
    """Python-side state that a recording reads once and bakes in has changed: an optimizer
    hyperparameter other than the learning rate, an optimizer's state tensors (load_state_dict
    replaces them) or parameter groups, a module's train/eval mode, whether a parameter
    requires gradients, the array behind a tensor (`.data = `, `module.to(...)`), the random
    generators (tg.manual_seed makes new ones). Every captured step then warms up and records
    again on its next call, so that no replay runs with the old values (as torch.compile
    compiles again when a value it guards changes)."""
    global _baked_version
    _baked_version += 1


class _ReadThrough:
    """Stands in for Tensor's `_data` slot while a graph records whose backend must see every
    array the step reads (the CPU's): reads pass through `trace`, writes through `untrace`,
    so tensors never keep the recording's views."""

    def __init__(self, slot: Any, trace: Callable[[Any], Any], untrace: Callable[[Any], Any]
                 ) -> None:
        self._slot, self._trace, self._untrace = slot, trace, untrace

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        if obj is None:
            return self
        return self._trace(self._slot.__get__(obj, cls))

    def __set__(self, obj: Any, value: Any) -> None:
        self._slot.__set__(obj, self._untrace(value))


@contextlib.contextmanager
def _recording(graph: Any) -> Iterator[None]:
    """graph.capture(), with tensors' arrays read through the graph where it asks for that."""
    if graph.reads_through is None:
        with graph.capture():
            yield
        return
    slot = Tensor.__dict__["_data"]
    Tensor._data = _ReadThrough(slot, *graph.reads_through)  # type: ignore[assignment]
    try:
        with graph.capture():
            yield
    finally:
        Tensor._data = slot  # type: ignore[assignment]


class CUDAGraph:
    """A CUDA graph, as torch.cuda.CUDAGraph: record work inside `with g.capture():`, then
    `g.replay()` runs it again. Tensors created during capture live in the graph's private
    memory pool and are rewritten by every replay; keep references to the ones you read.
    Random draws continue the stream of the generator that was current at capture, also after
    a later tg.manual_seed (unlike PyTorch, whose replays follow the new seed)."""

    def __init__(self, device: str | Device = "cuda") -> None:
        dev = as_device(device)
        if dev.type != "cuda":
            raise ValueError(f"CUDAGraph needs a CUDA device, got {dev}; tg.capture records "
                             "a step on any device")
        self._graph = get_backend(dev).new_graph()

    @contextlib.contextmanager
    def capture(self) -> Iterator[CUDAGraph]:
        """Record the CUDA work of the block instead of running it. Host reads (.item(),
        .numpy(), print, an if on a tensor) raise tg.CaptureError inside."""
        with self._graph.capture():
            yield self

    def replay(self) -> None:
        """Run the captured work again."""
        self._graph.replay()

    def pool_bytes(self) -> int:
        """Bytes held by the graph's private memory pool (flat across replays)."""
        return self._graph.pool_bytes()


class CapturedStep:
    """What `tg.capture(fn)` returns. Per combination of input shapes and dtypes: the first
    `warmup` calls run eagerly (kernels compile, optimizer state and memory pools fill), the
    next one records fn (a CUDA graph on CUDA; on the CPU the list of NumPy calls it makes,
    each writing into a buffer allocated then), and later calls copy their tensor arguments
    into the recording's static inputs and replay it: no Tensor objects, tape or dispatch.
    Each call returns fn's outputs; after a replay they are the same Tensor objects as the
    call before, rewritten in place, so clone what you keep. A call with shapes or dtypes not
    seen before warms up and records again, up to `max_graphs` recordings; past that it
    raises CaptureError. Non-tensor arguments are part of that key too, by value: they are
    baked into the recording, so a call with other values records again. Numbers, strings,
    None, NumPy arrays and lists, tuples and dicts of these are accepted; tensors inside a
    container, and other objects that cannot be compared by value, raise TypeError (pass
    tensors as arguments of their own). Inside the recording, reading values on the host
    (.item(), .numpy(), printing, bool() or a Python branch on a tensor) and ops whose output
    size depends on the data raise CaptureError, on every device. Random draws draw anew on
    every replay; learning rates set by schedulers are read on every replay. A change of the
    Python-side state that recordings read once (an optimizer's momentum, betas or weight
    decay, optimizer.load_state_dict or add_param_group, train()/eval(), a parameter's
    requires_grad, `tensor.data = `, module.to(...), tg.manual_seed) makes every captured step
    warm up and record again on its next call, so that it goes on matching the eager step.
    Other Python values the step reads (a module attribute you change, a global) are baked
    in, as in a CUDA graph: pass them as arguments. The recording holds the arrays the step
    used: changes in place (load_state_dict into a model, a new learning rate) are seen. Every
    intermediate keeps its own buffer, as in a CUDA graph's private pool."""

    def __init__(self, fn: Callable[..., Any], warmup: int = 2, max_graphs: int = 8) -> None:
        if warmup < 1:
            raise ValueError(f"capture needs at least one warm-up call, got warmup={warmup}")
        if max_graphs < 1:
            raise ValueError(f"capture needs max_graphs >= 1, got {max_graphs}")
        self.fn = fn
        self.warmup = warmup
        self.max_graphs = max_graphs
        self._warm: dict[Any, int] = {}
        self._graphs: dict[Any, tuple[list[Tensor], Any, Any]] = {}
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any) -> Any:
        tensors = [a for a in args if isinstance(a, Tensor)]
        key = tuple((a.shape, a.dtype.name, str(a.device), a.requires_grad)
                    if isinstance(a, Tensor) else ("const", _by_value(a, f"argument {k}"))
                    for k, a in enumerate(args))
        entry = self._graphs.get(key)
        if entry is not None:
            static_inputs, outputs, graph, version = entry
            if version == _baked_version:
                for static, t in zip(static_inputs, tensors):
                    static._data[...] = t._data
                graph.replay()
                return outputs
            del self._graphs[key]  # recorded with state that has changed since: start over
            self._warm.pop(key)
        done = self._warm.get(key, 0)
        if done < self.warmup:
            self._warm[key] = done + 1
            return self.fn(*args)
        if len(self._graphs) >= self.max_graphs:
            raise CaptureError(
                f"{self.fn.__name__} was already captured for {self.max_graphs} different input "
                "shapes/dtypes; pad inputs to a fixed shape (for example drop_last=True in the "
                "DataLoader) or raise max_graphs")
        device = tensors[0].device if tensors else get_default_device()
        return self._capture(key, args, tensors, device)

    def _capture(self, key: Any, args: tuple[Any, ...], tensors: list[Tensor],
                 device: Device) -> Any:
        static_inputs = [Tensor._make(t._data.copy(), t._backend, t.requires_grad)
                         for t in tensors]
        it = iter(static_inputs)
        static_args = [next(it) if isinstance(a, Tensor) else a for a in args]
        graph = get_backend(device).new_graph()
        with _recording(graph):
            outputs = self.fn(*static_args)
        if not graph.runs_when_captured:
            graph.replay()  # the recording did not run this step
        # Read after the recording: a step that sets such state itself (model.train() at its
        # top) records with the values it set.
        self._graphs[key] = (static_inputs, outputs, graph, _baked_version)
        return outputs


def _by_value(value: Any, where: str) -> Hashable:
    """A hashable stand-in for a non-tensor argument that equals another's exactly when their
    values do (a list becomes a tuple, an array its dtype, shape and bytes)."""
    if isinstance(value, Tensor):
        raise TypeError(f"tg.capture: {where} holds a tensor inside a container; pass each "
                        "tensor as an argument of its own so that its values are copied in on "
                        "every call")
    if isinstance(value, (list, tuple)):
        return (type(value).__name__,
                tuple(_by_value(v, f"{where}[{k}]") for k, v in enumerate(value)))
    if isinstance(value, dict):
        return ("dict", tuple((_by_value(k, where), _by_value(v, f"{where}[{k!r}]"))
                              for k, v in value.items()))
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"tg.capture: {where} is a {type(value).__name__}, which cannot be "
                        "compared by value; the recording bakes in non-tensor arguments, so "
                        "pass numbers, strings, NumPy arrays or lists/tuples/dicts of them, or "
                        "a tensor") from None
    return type(value), value  # 1, 1.0 and True are equal but may give other dtypes


def capture(fn: Callable[..., Any] | None = None, *, warmup: int = 2,
            max_graphs: int = 8) -> Any:
    """Record a whole training step once and replay it on later calls, on any device; usable
    as `step = tg.capture(train_step)` or as a decorator (with or without arguments). See
    CapturedStep. `tg.cuda.capture` is the same function."""
    if fn is None:
        return lambda f: CapturedStep(f, warmup=warmup, max_graphs=max_graphs)
    return CapturedStep(fn, warmup=warmup, max_graphs=max_graphs)
