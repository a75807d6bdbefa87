"""In-place changes of a Tensor: `x += y` and add_/sub_/mul_/div_, and the fills zero_, fill_,
copy_, uniform_ and normal_ (Tensor's methods call these).

An in-place op is recorded on the tape when either side requires grad: the out-of-place op
runs on a copy of x and x's history is rebased onto it, as PyTorch. Otherwise the ufunc
writes into x's memory with no temporary. Both paths come from one table entry per op.
Assignment through an index (x[i] = v) lives with indexing and uses records_inplace here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._device import DeviceMismatchError
from .._dtype import result_type
from .._tensor import Tensor
from ..autograd._grad_mode import grad_enabled
from . import arithmetic as ar

# name: (the ufunc writing into x's memory, the out-of-place op recorded instead, whether the
# result is floating-point even for integer operands, as true division)
_BINARY: dict[str, tuple[str, Callable[[Any, Any], Tensor], bool]] = {
    "add": ("add", ar.add, False),
    "sub": ("subtract", ar.sub, False),
    "mul": ("multiply", ar.mul, False),
    "div": ("true_divide", ar.div, True),
}


def binary_(x: Tensor, other: Any, name: str) -> Tensor:
    """x <name>= other, written into x's memory; returns x."""
    ufunc, op, floating = _BINARY[name]
    what = f"in-place {name}"
    if isinstance(other, Tensor):
        if other._backend is not x._backend:
            raise DeviceMismatchError(f"{what}: tensor on {x.device}, other on {other.device}")
    elif isinstance(other, np.generic):  # NumPy scalars promote as Python ones do
        other = other.item()
    elif not isinstance(other, (bool, int, float)):  # a list or an array of any device
        other = Tensor(other, dtype=x.dtype, device=x.device)
    if records_inplace(x, other, what):
        # The op sees a copy of x: what it saves for backward must not be overwritten.
        before = Tensor._make(x._data.copy(), x._backend, x._requires_grad, x._grad_fn,
                              x._out_idx)
        result = op(before, other)
        _check_result(x, result._data.dtype, result.shape, what)
        x._data[...] = result._data
        rebase(x, result)
    else:
        other_data = other._data if isinstance(other, Tensor) else other
        target = result_type(x, 1.0, other) if floating else result_type(x, other)
        _check_result(x, target.np, np.broadcast_shapes(x.shape, np.shape(other_data)), what)
        # Same-kind casting (float64 into float32) is NumPy's and CuPy's default; other kinds
        # were refused above.
        getattr(x._backend.xp, ufunc)(x._data, other_data, out=x._data)
    x._version[0] += 1
    return x


def records_inplace(x: Tensor, other: Any, what: str) -> bool:
    """Whether an in-place change of x by `other` must be recorded on the tape. Raises for a
    leaf that requires grad, and for memory shared with a recorded view: the view's (or its
    base's) history would not see the change, and its gradient would be wrong."""
    if not grad_enabled.get() or not (
            x._requires_grad or isinstance(other, Tensor) and other._requires_grad):
        return False
    if x._requires_grad and x._grad_fn is None:
        raise RuntimeError(f"a leaf tensor that requires grad is used in an {what}; wrap "
                           "the update in `with tg.no_grad():` or change a .clone() of it")
    if len(x._version) > 1:
        raise RuntimeError(
            f"{what} of a tensor that shares memory with a view recorded for backward (a "
            "slice, reshape, transpose or expand of it, or the tensor it is a view of): the "
            "other side's gradient would come out wrong. Do it out of place, or change a "
            ".clone().")
    return True


def rebase(x: Tensor, result: Tensor) -> None:
    """Make `result`'s op the history of x, whose memory now holds result's values."""
    x._grad_fn, x._out_idx = result._grad_fn, result._out_idx
    x._requires_grad = True


def _check_result(x: Tensor, dtype: Any, shape: Any, what: str) -> None:
    if tuple(shape) != x.shape:
        raise ValueError(f"{what}: the result has shape {tuple(shape)} but the tensor has "
                         f"shape {x.shape}; in-place ops cannot change shape")
    kind, own = np.dtype(dtype).kind, x._data.dtype.kind
    if kind == "f" and own != "f" or kind in "iu" and own == "b":
        raise TypeError(f"{what}: result type {np.dtype(dtype)} cannot be stored in a "
                        f"{x._data.dtype} tensor")


def _overwrite(x: Tensor, what: str, fill: Callable[[Any], None]) -> Tensor:
    if x._requires_grad and grad_enabled.get():
        raise RuntimeError(f"{what} on a tensor that requires grad: wrap it in "
                           "`with tg.no_grad():`")
    fill(x._data)
    x._version[0] += 1
    return x


def zero_(x: Tensor) -> Tensor:
    return _overwrite(x, "zero_()", lambda a: a.fill(0))


def fill_(x: Tensor, value: float) -> Tensor:
    return _overwrite(x, "fill_()", lambda a: a.fill(value))


def copy_(x: Tensor, src: Any) -> Tensor:
    values = x._backend.asarray(src._data if isinstance(src, Tensor) else src)
    np.broadcast_shapes(values.shape, x.shape)

    def fill(a: Any) -> None:
        a[...] = values

    return _overwrite(x, "copy_()", fill)


def _random_dtype(x: Tensor, what: str) -> Any:
    """The dtype random values are drawn in: float64 for float64 tensors, else float32."""
    if x._data.dtype.kind != "f":
        raise TypeError(f"{what} fills floating-point tensors, got {x.dtype.name}")
    return np.float64 if x._data.dtype == np.float64 else np.float32


def uniform_(x: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    dtype = _random_dtype(x, "uniform_()")
    if not a <= b:
        raise ValueError(f"uniform_(): expected a <= b, got a={a}, b={b}")
    rng = x._backend.random()

    def fill(arr: Any) -> None:
        arr[...] = rng.random(arr.shape, dtype=dtype) * (b - a) + a

    return _overwrite(x, "uniform_()", fill)


def normal_(x: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    dtype = _random_dtype(x, "normal_()")
    if not std >= 0:
        raise ValueError(f"normal_(): expected std >= 0, got {std}")
    rng = x._backend.random()

    def fill(arr: Any) -> None:
        arr[...] = rng.standard_normal(arr.shape, dtype=dtype) * std + mean

    return _overwrite(x, "normal_()", fill)
