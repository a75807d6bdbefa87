"""tg.cuda: is CUDA usable, how many GPUs, synchronize, and CUDA-graph capture of a whole
training step (`capture`), with the lower-level `CUDAGraph` beneath it."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import numpy as np

from ._device import Device, as_device
from ._tensor import Tensor
from .backend import CaptureError, cuda_unusable_reason, get_backend

__all__ = ["CUDAGraph", "CaptureError", "CapturedStep", "capture", "device_count",
           "is_available", "synchronize"]


def is_available() -> bool:
    """Whether CuPy and a GPU are usable here (the reason, if not, is in
    `python -m tensorgrad info` and in the error that device="cuda" raises)."""
    return cuda_unusable_reason() is None


def device_count() -> int:
    """Number of usable GPUs (0 where CUDA is unusable)."""
    if not is_available():
        return 0
    return get_backend(Device("cuda")).device_count()


def synchronize(device: str | Device | None = None) -> None:
    """Wait for all work queued on a GPU (the current one by default) to finish."""
    get_backend(Device("cuda" if device is None else device)).synchronize()


class CUDAGraph:
    """A CUDA graph, as torch.cuda.CUDAGraph: record work inside `with g.capture():`, then
    `g.replay()` runs it again. Tensors created during capture live in the graph's private
    memory pool and are rewritten by every replay; keep references to the ones you read.
    Random draws continue the stream of the generator that was current at capture, also after
    a later tg.manual_seed (unlike PyTorch, whose replays follow the new seed)."""

    def __init__(self, device: str | Device = "cuda") -> None:
        dev = as_device(device)
        if dev.type != "cuda":
            raise ValueError(f"CUDAGraph needs a CUDA device, got {dev}")
        self._graph = get_backend(dev).new_graph()

    @contextlib.contextmanager
    def capture(self) -> Iterator[CUDAGraph]:
        """Record the CUDA work of the block instead of running it. Host reads (.item(),
        .numpy(), print, an if on a tensor) raise tg.cuda.CaptureError inside."""
        try:
            with self._graph.capture():
                yield self
        except CaptureError:
            raise
        except Exception as err:
            if "captur" in str(err).lower():  # CuPy's and the CUDA runtime's capture errors
                raise CaptureError(
                    f"the captured code did something a CUDA graph cannot record ({err}). "
                    "Typical causes: reading values on the host, boolean-mask indexing or other "
                    "ops whose output size depends on the data, or random numbers from a "
                    "generator that synchronizes.") from err
            raise

    def replay(self) -> None:
        """Run the captured work again."""
        self._graph.replay()

    def pool_bytes(self) -> int:
        """Bytes held by the graph's private memory pool (flat across replays)."""
        return self._graph.pool_bytes()


class CapturedStep:
    """What `tg.cuda.capture(fn)` returns. Per combination of input shapes and dtypes: the
    first `warmup` calls run eagerly (kernels compile, optimizer state and memory pools fill),
    the next one captures fn into a CUDA graph, and later calls copy their tensor arguments into
    the graph's static input buffers and replay it. Each call returns fn's outputs; after a
    replay they are the same Tensor objects as the call before, rewritten in place, so clone
    what you keep. A call with shapes or dtypes not seen before warms up and captures again,
    up to `max_graphs` graphs; past that it raises CaptureError. Non-tensor arguments are part
    of that key too, by value: they are baked into the graph, so a call with other values
    captures again. Numbers, strings, None, NumPy arrays and lists, tuples and dicts of these
    are accepted; tensors inside a container, and other objects that cannot be compared by
    value, raise TypeError (pass tensors as arguments of their own). On the CPU fn simply
    runs."""

    def __init__(self, fn: Callable[..., Any], warmup: int = 2, max_graphs: int = 8) -> None:
        if warmup < 1:
            raise ValueError(f"capture needs at least one warm-up call, got warmup={warmup}")
        self.fn = fn
        self.warmup = warmup
        self.max_graphs = max_graphs
        self._warm: dict[Any, int] = {}
        self._graphs: dict[Any, tuple[list[Tensor], Any, CUDAGraph]] = {}
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any) -> Any:
        tensors = [a for a in args if isinstance(a, Tensor)]
        cuda = [t for t in tensors if t.device.type == "cuda"]
        if not cuda:
            return self.fn(*args)
        key = tuple((a.shape, a.dtype.name, str(a.device), a.requires_grad)
                    if isinstance(a, Tensor) else ("const", _by_value(a, f"argument {k}"))
                    for k, a in enumerate(args))
        entry = self._graphs.get(key)
        if entry is not None:
            static_inputs, outputs, graph = entry
            for static, t in zip(static_inputs, tensors):
                static._data[...] = t._data
            graph.replay()
            return outputs
        done = self._warm.get(key, 0)
        if done < self.warmup:
            self._warm[key] = done + 1
            return self.fn(*args)
        if len(self._graphs) >= self.max_graphs:
            raise CaptureError(
                f"{self.fn.__name__} was already captured for {self.max_graphs} different input "
                "shapes/dtypes; pad inputs to a fixed shape (for example drop_last=True in the "
                "DataLoader) or raise max_graphs")
        return self._capture(key, args, tensors, cuda[0].device)

    def _capture(self, key: Any, args: tuple[Any, ...], tensors: list[Tensor],
                 device: Device) -> Any:
        static_inputs = [Tensor._make(t._data.copy(), t._backend, t.requires_grad)
                         for t in tensors]
        it = iter(static_inputs)
        static_args = [next(it) if isinstance(a, Tensor) else a for a in args]
        graph = CUDAGraph(device)
        with graph.capture():
            outputs = self.fn(*static_args)
        graph.replay()  # capturing recorded this step without running it
        self._graphs[key] = (static_inputs, outputs, graph)
        return outputs


def _by_value(value: Any, where: str) -> Hashable:
    """A hashable stand-in for a non-tensor argument that equals another's exactly when their
    values do (a list becomes a tuple, an array its dtype, shape and bytes)."""
    if isinstance(value, Tensor):
        raise TypeError(f"tg.cuda.capture: {where} holds a tensor inside a container; pass "
                        "each tensor as an argument of its own so that its values are copied "
                        "in on every call")
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
        raise TypeError(f"tg.cuda.capture: {where} is a {type(value).__name__}, which cannot "
                        "be compared by value; the captured graph bakes in non-tensor "
                        "arguments, so pass numbers, strings, NumPy arrays or lists/tuples/"
                        "dicts of them, or a tensor") from None
    return type(value), value  # 1, 1.0 and True are equal but may give other dtypes


def capture(fn: Callable[..., Any] | None = None, *, warmup: int = 2,
            max_graphs: int = 8) -> Any:
    """Capture a whole training step into a CUDA graph and replay it on later calls; usable
    as `step = tg.cuda.capture(train_step)` or as a decorator (with or without arguments).
    See CapturedStep. On the CPU the function runs as it is."""
    if fn is None:
        return lambda f: CapturedStep(f, warmup=warmup, max_graphs=max_graphs)
    return CapturedStep(fn, warmup=warmup, max_graphs=max_graphs)
