"""Tensor: an array of one device plus what autograd needs to know about it.

What lives here: the Tensor class with its properties, conversions, and the dunders and
methods (in-place ones included) that call the op functions in `tensorgrad.ops`. The math
lives in the ops; the backward walk in autograd/_engine.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ._device import Device, as_device
from ._dtype import DType, as_dtype, from_numpy_dtype


class Tensor:
    """An n-dimensional array on a device that records the ops applied to it."""

    __slots__ = ("_data", "_backend", "_requires_grad", "_grad", "_grad_fn", "_out_idx",
                 "_version", "_hooks", "__weakref__")

    __array_priority__ = 1000  # so ndarray + Tensor defers to Tensor.__radd__

    def __init__(self, data: Any, dtype: Any = None, device: Any = None,
                 requires_grad: bool = False) -> None:
        from .backend import get_backend

        if isinstance(data, Tensor):
            data = data._data
        backend = get_backend(_device_of(data) if device is None else as_device(device))
        self._data = backend.asarray(data, _infer_np_dtype(data, dtype))
        from_numpy_dtype(self._data.dtype)  # refuses unsupported element types by name
        self._backend = backend
        self._requires_grad = False
        self._grad: Tensor | None = None
        self._grad_fn = None
        self._out_idx = 0
        # [count of in-place changes], shared by views of one memory; a recorded view appends
        # True (see Op.apply), which _records_inplace reads.
        self._version = [0]
        self._hooks: list[Callable[..., Any]] | None = None
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, data: Any, backend: Any, requires_grad: bool = False, grad_fn: Any = None,
              out_idx: int = 0, version: list[int] | None = None) -> Tensor:
        """Wrap an array of `backend`'s device without copying or checking (the ops' path)."""
        t = object.__new__(cls)
        t._data = data
        t._backend = backend
        t._requires_grad = requires_grad
        t._grad = None
        t._grad_fn = grad_fn
        t._out_idx = out_idx
        t._version = [0] if version is None else version
        t._hooks = None
        return t

    # ---- properties -------------------------------------------------------------------------
    @property
    def data(self) -> Any:
        """The raw NumPy or CuPy array."""
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        from ._capture import baked_state_changed

        self._data = self._backend.asarray(value.data if isinstance(value, Tensor) else value)
        self._version[0] += 1
        baked_state_changed()  # captured steps hold the array this one replaces

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def dtype(self) -> DType:
        return from_numpy_dtype(self._data.dtype)

    @property
    def device(self) -> Device:
        return self._backend.device

    @property
    def is_cuda(self) -> bool:
        return self._backend.device.type == "cuda"

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self.requires_grad_(value)

    @property
    def grad(self) -> Tensor | None:
        """The gradient backward accumulated here (None until then)."""
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        # Refused as PyTorch does: a later backward would broadcast into a wrong-shaped .grad
        # (a (1,) gradient of a 3-vector became [3, 3, 3]) or add in another dtype.
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad must be a Tensor or None, got "
                                f"{type(value).__name__}")
            if value.shape != self.shape:
                raise RuntimeError(f"assigned grad has shape {value.shape}, but the tensor has "
                                   f"shape {self.shape}")
            if value._data.dtype != self._data.dtype:
                raise RuntimeError(f"assigned grad has dtype {value.dtype.name}, but the tensor "
                                   f"has dtype {self.dtype.name}")
            if value._backend is not self._backend:
                raise RuntimeError(f"assigned grad is on {value.device}, but the tensor is on "
                                   f"{self.device}")
        self._grad = value

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    @property
    def grad_fn(self) -> Any:
        return self._grad_fn

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Tensor:
        return self.transpose(-2, -1)

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return int(self._data.size)

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if not isinstance(requires_grad, bool):
            raise TypeError(f"requires_grad must be a bool, got {requires_grad!r}")
        if self._grad_fn is not None and not requires_grad:
            raise RuntimeError("requires_grad can only be turned off on a leaf tensor; "
                               "use .detach() to get a tensor outside the graph")
        if requires_grad and self._data.dtype.kind not in "f":
            raise TypeError(f"only floating-point tensors can require gradients, this one is "
                            f"{self.dtype.name}; convert it with .to(dtype=tg.float32)")
        self._requires_grad = requires_grad
        return self

    # ---- conversion -------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The values as a NumPy array: the array itself on the CPU, a copy from a GPU."""
        return self._backend.to_numpy(self._data)

    def item(self) -> Any:
        if self._data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape "
                             f"{self.shape}")
        return self._backend.to_numpy(self._data, ".item()").item()

    def tolist(self) -> Any:
        return self._backend.to_numpy(self._data, ".tolist()").tolist()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._data.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self._data.__dlpack_device__()

    def to(self, *args: Any, device: Any = None, dtype: Any = None) -> Tensor:
        """A tensor on another device and/or of another dtype, differentiable, as torch's .to.
        Positional arguments may be a device, a dtype or both."""
        for arg in args:
            if isinstance(arg, (str, Device)):
                device = arg
            else:
                dtype = arg
        from .ops import conversion

        out = self
        if dtype is not None and as_dtype(dtype).np != self._data.dtype:
            out = conversion.to_dtype(out, as_dtype(dtype))
        if device is not None and as_device(device) != self.device:
            out = conversion.to_device(out, as_device(device))
        return out

    def cpu(self) -> Tensor:
        return self.to(device="cpu")

    def cuda(self, index: int | None = None) -> Tensor:
        return self.to(device="cuda" if index is None else f"cuda:{index}")

    def float(self) -> Tensor:
        return self.to(dtype="float32")

    def double(self) -> Tensor:
        return self.to(dtype="float64")

    def half(self) -> Tensor:
        return self.to(dtype="float16")

    def long(self) -> Tensor:
        return self.to(dtype="int64")

    def int(self) -> Tensor:
        return self.to(dtype="int32")

    def bool(self) -> Tensor:
        return self.to(dtype="bool")

    def detach(self) -> Tensor:
        """The same values, sharing memory and version counter, outside the graph."""
        return Tensor._make(self._data, self._backend, version=self._version)

    def clone(self) -> Tensor:
        from .ops import conversion

        return conversion.clone(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Tensor:
        """A leaf copy with its own memory (and a copy of .grad), of the same class (so a
        Parameter stays one), as torch's deepcopy; the backend is shared, not copied."""
        if self._grad_fn is not None:
            raise RuntimeError("only leaf tensors support deepcopy; use .detach().clone()")
        t = type(self)._make(self._data.copy(), self._backend, self._requires_grad)
        memo[id(self)] = t
        if self.grad is not None:
            t.grad = self.grad.__deepcopy__(memo)
        return t

    def contiguous(self) -> Tensor:
        return self.clone() if not self._data.flags.c_contiguous else self

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors with one element can be used as an index")
        return int(self.item())

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self._data.size} elements "
                               "is ambiguous; use .any() or .all()")
        return bool(self._backend.to_numpy(self._data, "a Python branch on a tensor (bool())"))

    def __iter__(self) -> Iterator[Tensor]:
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __repr__(self) -> str:
        values = self._backend.to_numpy(self._data, "printing a tensor")
        body = np.array2string(values, separator=", ", prefix="tensor(", precision=4)
        extras = []
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if self._data.dtype not in (np.float32, np.int64, np.bool_):
            extras.append(f"dtype={self.dtype!r}")
        if self._grad_fn is not None:
            extras.append(f"grad_fn={self._grad_fn!r}")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body, *extras]) + ")"

    __hash__ = object.__hash__

    # ---- autograd ---------------------------------------------------------------------------
    def backward(self, gradient: Tensor | None = None, retain_graph: bool | None = None,
                 create_graph: bool = False) -> None:
        """Fill .grad of every leaf that requires grad and that this tensor depends on."""
        from .autograd import backward

        backward(self, gradient, retain_graph, create_graph)

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> Any:
        """Call hook(grad) when this tensor's gradient is computed; it may return a new one."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        if self._grad_fn is not None:
            return self._grad_fn.register_hook(self._out_idx, hook)
        if self._hooks is None:
            self._hooks = []
        from .autograd._op import _RemovableHandle

        self._hooks.append(hook)
        return _RemovableHandle(self._hooks, hook)

    # ---- in place (ops/inplace.py) -----------------------------------------------------------
    def __iadd__(self, other: Any) -> Tensor:
        return _inplace.binary_(self, other, "add")

    def __isub__(self, other: Any) -> Tensor:
        return _inplace.binary_(self, other, "sub")

    def __imul__(self, other: Any) -> Tensor:
        return _inplace.binary_(self, other, "mul")

    def __itruediv__(self, other: Any) -> Tensor:
        return _inplace.binary_(self, other, "div")

    def add_(self, other: Any, alpha: float = 1.0) -> Tensor:
        return _inplace.binary_(self, other if alpha == 1.0 else other * alpha, "add")

    def sub_(self, other: Any, alpha: float = 1.0) -> Tensor:
        return _inplace.binary_(self, other if alpha == 1.0 else other * alpha, "sub")

    def mul_(self, other: Any) -> Tensor:
        return _inplace.binary_(self, other, "mul")

    def div_(self, other: Any) -> Tensor:
        return _inplace.binary_(self, other, "div")

    def zero_(self) -> Tensor:
        return _inplace.zero_(self)

    def fill_(self, value: float) -> Tensor:
        return _inplace.fill_(self, value)

    def copy_(self, src: Any) -> Tensor:
        return _inplace.copy_(self, src)

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Tensor:
        return _inplace.uniform_(self, a, b)

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        return _inplace.normal_(self, mean, std)

    # ---- operators --------------------------------------------------------------------------
    def __add__(self, other: Any) -> Tensor:
        return _ar.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _ar.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _ar.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _ar.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _ar.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _ar.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _ar.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _ar.div(other, self)

    def __floordiv__(self, other: Any) -> Tensor:
        return _ar.floor_divide(self, other)

    def __rfloordiv__(self, other: Any) -> Tensor:
        return _ar.floor_divide(other, self)

    def __mod__(self, other: Any) -> Tensor:
        return _ar.remainder(self, other)

    def __pow__(self, other: Any) -> Tensor:
        return _ar.pow(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return _ar.pow(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _linalg.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _linalg.matmul(other, self)

    def __neg__(self) -> Tensor:
        return _ar.neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return _ar.abs(self)

    def __invert__(self) -> Tensor:
        return _ar.bitwise_not(self)

    def __and__(self, other: Any) -> Tensor:
        return _ar.bitwise_and(self, other)

    def __rand__(self, other: Any) -> Tensor:
        return _ar.bitwise_and(other, self)

    def __or__(self, other: Any) -> Tensor:
        return _ar.bitwise_or(self, other)

    def __ror__(self, other: Any) -> Tensor:
        return _ar.bitwise_or(other, self)

    def __xor__(self, other: Any) -> Tensor:
        return _ar.bitwise_xor(self, other)

    def __rxor__(self, other: Any) -> Tensor:
        return _ar.bitwise_xor(other, self)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _ar.eq(self, other)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _ar.ne(self, other)

    def __lt__(self, other: Any) -> Tensor:
        return _ar.lt(self, other)

    def __le__(self, other: Any) -> Tensor:
        return _ar.le(self, other)

    def __gt__(self, other: Any) -> Tensor:
        return _ar.gt(self, other)

    def __ge__(self, other: Any) -> Tensor:
        return _ar.ge(self, other)

    def __getitem__(self, index: Any) -> Tensor:
        return _indexing.getitem(self, index)

    def __setitem__(self, index: Any, value: Any) -> None:
        _indexing.setitem(self, index, value)

    # ---- methods (each calls the function of the same name) ---------------------------------
    def add(self, other: Any) -> Tensor:
        return _ar.add(self, other)

    def sub(self, other: Any) -> Tensor:
        return _ar.sub(self, other)

    def mul(self, other: Any) -> Tensor:
        return _ar.mul(self, other)

    def div(self, other: Any) -> Tensor:
        return _ar.div(self, other)

    def pow(self, exponent: Any) -> Tensor:
        return _ar.pow(self, exponent)

    def neg(self) -> Tensor:
        return _ar.neg(self)

    def abs(self) -> Tensor:
        return _ar.abs(self)

    def maximum(self, other: Any) -> Tensor:
        return _ar.maximum(self, other)

    def minimum(self, other: Any) -> Tensor:
        return _ar.minimum(self, other)

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        return _ar.clamp(self, min, max)

    clip = clamp

    def masked_fill(self, mask: Tensor, value: float) -> Tensor:
        return _ar.masked_fill(self, mask, value)

    def where(self, condition: Tensor, other: Any) -> Tensor:
        return _ar.where(condition, self, other)

    def exp(self) -> Tensor:
        return _math.exp(self)

    def log(self) -> Tensor:
        return _math.log(self)

    def sqrt(self) -> Tensor:
        return _math.sqrt(self)

    def sin(self) -> Tensor:
        return _math.sin(self)

    def cos(self) -> Tensor:
        return _math.cos(self)

    def tanh(self) -> Tensor:
        return _act.tanh(self)

    def sigmoid(self) -> Tensor:
        return _act.sigmoid(self)

    def relu(self) -> Tensor:
        return _act.relu(self)

    def softmax(self, dim: int = -1) -> Tensor:
        return _act.softmax(self, dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        return _act.log_softmax(self, dim)

    def sum(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _red.sum(self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _red.mean(self, dim, keepdim)

    def max(self, dim: Any = None, keepdim: bool = False) -> Any:
        return _red.max(self, dim, keepdim)

    def min(self, dim: Any = None, keepdim: bool = False) -> Any:
        return _red.min(self, dim, keepdim)

    def amax(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _red.amax(self, dim, keepdim)

    def amin(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _red.amin(self, dim, keepdim)

    def var(self, dim: Any = None, correction: int = 1, keepdim: bool = False) -> Tensor:
        return _red.var(self, dim, correction=correction, keepdim=keepdim)

    def std(self, dim: Any = None, correction: int = 1, keepdim: bool = False) -> Tensor:
        return _red.std(self, dim, correction=correction, keepdim=keepdim)

    def prod(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _red.prod(self, dim, keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return _red.argmax(self, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return _red.argmin(self, dim, keepdim)

    def logsumexp(self, dim: Any, keepdim: bool = False) -> Tensor:
        return _red.logsumexp(self, dim, keepdim)

    def any(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _red.any(self, dim, keepdim)

    def all(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _red.all(self, dim, keepdim)

    def reshape(self, *shape: Any) -> Tensor:
        return _shape.reshape(self, *shape)

    def view(self, *shape: Any) -> Tensor:
        return _shape.view(self, *shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return _shape.flatten(self, start_dim, end_dim)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        return _shape.transpose(self, dim0, dim1)

    def t(self) -> Tensor:
        if self.ndim > 2:
            raise ValueError(f"t() expects a tensor with at most 2 dims, got shape {self.shape}; "
                             "use transpose(dim0, dim1) or .mT")
        return _shape.transpose(self, 0, 1) if self.ndim == 2 else self

    def permute(self, *dims: Any) -> Tensor:
        return _shape.permute(self, *dims)

    def squeeze(self, dim: Any = None) -> Tensor:
        return _shape.squeeze(self, dim)

    def unsqueeze(self, dim: int) -> Tensor:
        return _shape.unsqueeze(self, dim)

    def expand(self, *shape: Any) -> Tensor:
        return _shape.expand(self, *shape)

    def broadcast_to(self, shape: Sequence[int]) -> Tensor:
        return _shape.broadcast_to(self, shape)

    def split(self, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
        return _shape.split(self, split_size_or_sections, dim)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        return _shape.chunk(self, chunks, dim)

    def matmul(self, other: Tensor) -> Tensor:
        return _linalg.matmul(self, other)


def _device_of(data: Any) -> Device:
    """Where an existing array lives, when no device is named: GPU arrays stay on their GPU,
    everything else goes to the default device."""
    from ._device import get_default_device
    from .backend import array_device

    gpu = array_device(data)
    return get_default_device() if gpu is None else Device(gpu)


def _infer_np_dtype(data: Any, dtype: Any) -> Any:
    """The NumPy dtype a new tensor gets: the one asked for; else the array's own; else
    PyTorch's defaults for Python values (float32, int64, bool)."""
    if dtype is not None:
        return as_dtype(dtype).np
    if hasattr(data, "dtype"):
        return None
    kind = np.asarray(data).dtype.kind
    if kind == "f":
        return np.float32
    if kind in "iu":
        return np.int64
    if kind == "b":
        return np.bool_
    raise TypeError(f"cannot make a tensor from {type(data).__name__} data of kind {kind!r}; "
                    "pass numbers, nested lists of numbers, or arrays")


from .ops import activation as _act  # noqa: E402  (the ops import Tensor from this module)
from .ops import arithmetic as _ar  # noqa: E402
from .ops import indexing as _indexing  # noqa: E402
from .ops import inplace as _inplace  # noqa: E402
from .ops import linalg as _linalg  # noqa: E402
from .ops import math as _math  # noqa: E402
from .ops import reduction as _red  # noqa: E402
from .ops import shape as _shape  # noqa: E402
