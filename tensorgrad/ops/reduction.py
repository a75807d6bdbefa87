"""Reductions: sum mean max min amax amin var std prod argmax argmin logsumexp any all.

`dim` is None (all axes), an int or a tuple; `keepdim` as PyTorch. Gradient conventions:
`max(dim=int)` / `min(dim=int)` route the gradient to the one index they return (PyTorch's);
full and tuple-dim maxima (`amax` style) split it evenly among ties. float16 sums accumulate in
float32.
"""

from __future__ import annotations

import builtins
from collections import namedtuple
from typing import Any

import numpy as np

from .._tensor import Tensor
from ..autograd._grad_mode import grad_enabled
from ..autograd._op import Op
from . import arithmetic as _ar
from ._broadcast import normalize_dim, normalize_dims

MaxResult = namedtuple("MaxResult", ["values", "indices"])
MinResult = namedtuple("MinResult", ["values", "indices"])


def _kept_shape(shape: tuple[int, ...], dims: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


def _expand_back(g: Tensor, in_shape: tuple[int, ...], dims: tuple[int, ...]) -> Tensor:
    """A reduced gradient broadcast back over the reduced axes."""
    kept = _kept_shape(in_shape, dims)
    if g.shape != kept:
        g = g.reshape(kept)
    return g.expand(in_shape) if kept != in_shape else g


class Sum(Op):
    """y = sum of x over dims; gx = gy broadcast back."""

    @staticmethod
    def forward(ctx: Op, x: Any, dims: tuple[int, ...], keepdim: bool) -> Any:
        ctx.dims = dims
        if x.dtype == np.float16:  # accumulate in float32: float16 overflows at 65504
            with np.errstate(over="ignore"):  # a total beyond 65504 is inf, as in PyTorch
                return x.sum(axis=dims, keepdims=keepdim, dtype=np.float32).astype(np.float16)
        if x.dtype.kind in "bi":
            return x.sum(axis=dims, keepdims=keepdim, dtype=np.int64)
        return x.sum(axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        return _expand_back(gy, ctx.input_shape(0), ctx.dims)


class Extremum(Op):
    """y = max (or min) over dims; the gradient is split evenly among the tied maxima. A slice
    holding NaN has the maximum NaN, and its NaNs share the gradient, as torch.max()."""

    @staticmethod
    def forward(ctx: Op, x: Any, dims: tuple[int, ...], keepdim: bool, largest: bool) -> Any:
        # The callers refuse an empty reduced dim (_nonempty); other empty dims reduce fine.
        y = x.max(axis=dims, keepdims=True) if largest else x.min(axis=dims, keepdims=True)
        y = ctx.xp.asarray(y)  # a 0-d x reduces to a NumPy scalar, not an array
        ctx.save_for_backward(x, y)
        ctx.dims = dims
        return y if keepdim else y.reshape(tuple(n for i, n in enumerate(x.shape)
                                                 if i not in dims))

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        x, y = ctx.saved_tensors
        xp = ctx.xp
        hit = (x._data == y._data) | (xp.isnan(x._data) & xp.isnan(y._data))
        hit = hit.astype(x._data.dtype)
        hit /= hit.sum(axis=ctx.dims, keepdims=True)
        return _expand_back(gy, x.shape, ctx.dims) * Tensor._make(hit, ctx.backend)


class TakeAlongDim(Op):
    """y = x[..., idx, ...] along one axis (idx from argmax/argmin); gx scatters gy back."""

    @staticmethod
    def forward(ctx: Op, x: Any, idx: Any, dim: int, keepdim: bool) -> Any:
        ctx.save_for_backward(idx)
        ctx.dim, ctx.keepdim = dim, keepdim
        y = ctx.xp.take_along_axis(x, idx, axis=dim)
        return y if keepdim else y.squeeze(dim)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> tuple[Tensor, None]:
        (idx,) = ctx.saved_tensors
        shape = ctx.input_shape(0)
        xp = ctx.xp
        positions = xp.arange(shape[ctx.dim]).reshape(
            tuple(-1 if i == ctx.dim else 1 for i in range(len(shape))))
        mask = (positions == idx._data).astype(gy._data.dtype)
        if not ctx.keepdim:
            gy = gy.unsqueeze(ctx.dim)
        return gy.expand(shape) * Tensor._make(mask, ctx.backend), None


class Prod(Op):
    """y = prod of x over dims; gx = gy * (the product of the other elements of the slice)."""

    @staticmethod
    def forward(ctx: Op, x: Any, dims: tuple[int, ...], keepdim: bool) -> Any:
        y = x.prod(axis=dims, keepdims=keepdim)
        ctx.save_for_backward(x, y)
        ctx.dims = dims
        return y

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        x, y = ctx.saved_tensors
        gy = _expand_back(gy, x.shape, ctx.dims)
        if not grad_enabled.get():  # first order only: exact with zeros, O(n), not recorded
            return gy * Tensor._make(_products_of_others(ctx.xp, x._data, ctx.dims), ctx.backend)
        # create_graph: in Tensor ops. y / x is exact without zeros; with zeros the O(n^2)
        # form below (PyTorch's cumprod takes an O(n^2) path in this case too).
        if bool((x._data != 0).all()):
            return gy * (_expand_back(y, x.shape, ctx.dims) / x)
        return gy * _products_of_others_recorded(x, ctx.dims)


def _products_of_others(xp: Any, a: Any, dims: tuple[int, ...]) -> Any:
    """For each element of a, the product of the other elements of its slice over dims, from
    exclusive cumulative products from both sides (no division, so zeros are fine)."""
    if a.size == 0:  # no elements, nothing to multiply (and -1 below would be ambiguous)
        return xp.ones_like(a)
    rest = [i for i in range(a.ndim) if i not in dims]
    moved = xp.transpose(a, rest + list(dims))
    flat = moved.reshape(moved.shape[:len(rest)] + (-1,))
    ones = xp.ones(flat.shape[:-1] + (1,), dtype=a.dtype)
    left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = xp.flip(xp.cumprod(xp.flip(xp.concatenate([flat[..., 1:], ones], axis=-1),
                                       axis=-1), axis=-1), axis=-1)
    others = (left * right).reshape(moved.shape)
    # ascontiguousarray makes a 0-d array 1-d, hence the reshape.
    others = xp.ascontiguousarray(xp.transpose(others, np.argsort(rest + list(dims)).tolist()))
    return others.reshape(a.shape)


def _products_of_others_recorded(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """_products_of_others in Tensor ops: each slice of n elements becomes an (n, n) matrix
    whose row i is the slice with element i replaced by 1, and the rows' products are taken."""
    rest = [i for i in range(x.ndim) if i not in dims]
    order = rest + list(dims)
    moved = x.permute(*order)
    lead = moved.shape[:len(rest)]
    n = int(np.prod(moved.shape[len(rest):], dtype=np.int64))
    rows = moved.reshape(*lead, 1, n).expand(*lead, n, n)
    eye = Tensor._make(x._backend.xp.eye(n, dtype=bool), x._backend)
    others = prod(_ar.where(eye, 1.0, rows), -1)
    return others.reshape(moved.shape).permute(*np.argsort(order).tolist())


def _dims(x: Tensor, dim: Any, what: str) -> tuple[int, ...]:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} expects a Tensor, got {type(x).__name__}")
    if isinstance(dim, (tuple, list)) and not dim:  # an empty dim list means all, as PyTorch
        dim = None
    return normalize_dims(dim, x.ndim, what)


def sum(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Sum over dim (all axes when None), as torch.sum."""
    return Sum.apply(x, dims=_dims(x, dim, "sum"), keepdim=keepdim)


def mean(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Mean over dim (all axes when None), as torch.mean."""
    dims = _dims(x, dim, "mean")
    if x._data.dtype.kind != "f":
        raise TypeError(f"mean needs a floating-point tensor, got {x.dtype.name}; "
                        "convert with .float()")
    if x._data.dtype == np.float16:  # divide in float32, before the sum can overflow
        return mean(x.to(dtype="float32"), dim, keepdim).to(dtype="float16")
    count = int(np.prod([x.shape[d] for d in dims])) if dims else 1
    return Sum.apply(x, dims=dims, keepdim=keepdim) / float(count)  # 0 elements: nan


def _nonempty(x: Tensor, dims: tuple[int, ...], what: str) -> tuple[int, ...]:
    """dims, after checking that each reduced slice has an element to pick."""
    for d in dims if x.ndim else ():
        if x.shape[d] == 0:
            raise IndexError(f"{what}: dim {d} of the tensor of shape {x.shape} has size 0, so "
                             "there is no element to pick")
    return dims


def _extremum(x: Tensor, dim: Any, keepdim: bool, largest: bool, what: str) -> Any:
    if isinstance(dim, int) and not isinstance(dim, bool):
        d = _nonempty(x, (normalize_dim(dim, builtins.max(x.ndim, 1), what),), what)[0]
        if x.ndim == 0:
            return (MaxResult if largest else MinResult)(x, Tensor._make(
                x._backend.xp.zeros((), np.int64), x._backend))
        arg = x._data.argmax(axis=d) if largest else x._data.argmin(axis=d)
        idx = x._backend.xp.expand_dims(arg, d)
        values = TakeAlongDim.apply(x, Tensor._make(idx, x._backend), dim=d, keepdim=keepdim)
        indices = Tensor._make(idx if keepdim else x._backend.xp.asarray(arg), x._backend)
        return (MaxResult if largest else MinResult)(values, indices)
    return Extremum.apply(x, dims=_nonempty(x, _dims(x, dim, what), what), keepdim=keepdim,
                          largest=largest)


def max(x: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    """The maximum. dim=None or a tuple: a tensor (ties share the gradient). dim=int:
    (values, indices) as torch.max, the gradient going to the returned index."""
    return _extremum(x, dim, keepdim, True, "max")


def min(x: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    """The minimum; see max."""
    return _extremum(x, dim, keepdim, False, "min")


def amax(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Maximum over dim (int or tuple), ties sharing the gradient, as torch.amax."""
    return Extremum.apply(x, dims=_nonempty(x, _dims(x, dim, "amax"), "amax"), keepdim=keepdim,
                          largest=True)


def amin(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Minimum over dim (int or tuple), ties sharing the gradient, as torch.amin."""
    return Extremum.apply(x, dims=_nonempty(x, _dims(x, dim, "amin"), "amin"), keepdim=keepdim,
                          largest=False)


def var(x: Tensor, dim: Any = None, correction: int = 1, keepdim: bool = False) -> Tensor:
    """Variance over dim, unbiased by default (correction=1), as torch.var."""
    if x._data.dtype == np.float16:  # squares and the divisor overflow float16: use float32
        return var(x.to(dtype="float32"), dim, correction, keepdim).to(dtype="float16")
    scaled, scale, dims = _scaled_variance(x, dim, correction, "var")
    with np.errstate(over="ignore", under="ignore"):  # a variance beyond the dtype is inf
        out = scaled * scale * scale  # never scale * scale first: 0 * inf would be NaN
    return out if keepdim else _squeeze_dims(out, dims)


def std(x: Tensor, dim: Any = None, correction: int = 1, keepdim: bool = False) -> Tensor:
    """Standard deviation over dim, unbiased by default, as torch.std; its gradient is 0 where
    the slice is constant (std 0), as PyTorch's, not NaN."""
    if x._data.dtype == np.float16:  # the root too in float32: std of [300, -300] is 424.25
        return std(x.to(dtype="float32"), dim, correction, keepdim).to(dtype="float16")
    scaled, scale, dims = _scaled_variance(x, dim, correction, "std")
    with np.errstate(over="ignore"):  # a std beyond the dtype is inf
        out = SqrtOfVariance.apply(scaled) * scale
    return out if keepdim else _squeeze_dims(out, dims)


def _scaled_variance(x: Tensor, dim: Any, correction: int, what: str
                     ) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """(var(x / s), s, dims) with keepdim, for s a power of two within a factor 2 below each
    slice's largest |x| (so s itself is finite): dividing by it is exact, and the squares can
    then neither overflow (float32 near |x| = 1e19) nor underflow. s is a constant for
    autograd, as var(x) = s^2 var(x / s) for any s."""
    dims = _dims(x, dim, what)
    if x._data.dtype.kind != "f":
        raise TypeError(f"{what} needs a floating-point tensor, got {x.dtype.name}; "
                        "convert with .float()")
    xp, a = x._backend.xp, x._data
    kept = _kept_shape(a.shape, dims)
    largest = xp.abs(a).max(axis=dims, keepdims=True) if a.size else xp.zeros(kept, a.dtype)
    _, exponent = xp.frexp(largest)
    exponent = xp.where(xp.isfinite(largest) & (largest > 0), exponent - 1, 0)  # inf, NaN as is
    scale = Tensor._make(xp.ldexp(xp.ones(kept, a.dtype), exponent).astype(a.dtype, copy=False),
                         x._backend)
    count = int(np.prod([x.shape[d] for d in dims])) if dims else 1
    with np.errstate(divide="ignore", invalid="ignore"):  # inf in x or no degrees of freedom
        y = x / scale
        centered = y - mean(y, dims, keepdim=True)
        total = sum(centered * centered, dims, keepdim=True)
        return total / float(builtins.max(count - correction, 0)), scale, dims


def _squeeze_dims(y: Tensor, dims: tuple[int, ...]) -> Tensor:
    return y.reshape(tuple(n for i, n in enumerate(y.shape) if i not in dims))


class SqrtOfVariance(Op):
    """y = sqrt(v) for a variance v; gv = gy / (2 y), but 0 where v = 0, as PyTorch's std: a
    constant slice's std then passes gradient 0 (its variance's gradient is 0 there, and
    0 / 0 would make it NaN)."""

    @staticmethod
    def forward(ctx: Op, v: Any) -> Any:
        with np.errstate(invalid="ignore"):
            y = ctx.xp.sqrt(v)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        zero = y == 0.0
        return _ar.where(zero, 0.0, gy / (2.0 * _ar.where(zero, 1.0, y)))


def prod(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Product over dim (int or tuple), as torch.prod."""
    return Prod.apply(x, dims=_dims(x, dim, "prod"), keepdim=keepdim)


def _arg(x: Tensor, dim: int | None, keepdim: bool, largest: bool, what: str) -> Tensor:
    a = x._data
    _nonempty(x, tuple(range(a.ndim)) if dim is None else (normalize_dim(
        dim, builtins.max(a.ndim, 1), what),), what)
    if dim is None:
        out = a.argmax() if largest else a.argmin()
        out = x._backend.xp.asarray(out, dtype=np.int64)
        if keepdim:
            out = out.reshape((1,) * a.ndim)
    else:
        d = normalize_dim(dim, builtins.max(a.ndim, 1), what)
        out = x._backend.xp.asarray(a.argmax(axis=d) if largest else a.argmin(axis=d),
                                    dtype=np.int64)  # 1-d input: a scalar, not an array
        if keepdim and a.ndim:  # a 0-d input keeps its 0 dims, as PyTorch
            out = x._backend.xp.expand_dims(out, d)
    return Tensor._make(out, x._backend)


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the maximum (flattened when dim is None), as torch.argmax. No gradient."""
    return _arg(x, dim, keepdim, True, "argmax")


def argmin(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the minimum (flattened when dim is None), as torch.argmin. No gradient."""
    return _arg(x, dim, keepdim, False, "argmin")


def logsumexp(x: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) over dim, stable for large |x|, as torch.logsumexp."""
    dims = _dims(x, dim, "logsumexp")
    xp = x._backend.xp
    # The shift that keeps exp finite; an empty tensor has no maximum (and needs no shift).
    m = x._data.max(axis=dims, keepdims=True) if x.numel() else xp.zeros(
        [1 if i in dims else n for i, n in enumerate(x.shape)], x._data.dtype)
    m = x._backend.xp.where(x._backend.xp.isfinite(m), m, 0)  # all -inf: keep -inf, not nan
    shift = Tensor._make(m, x._backend)
    out = sum((x - shift).exp(), dims, keepdim=True).log() + shift
    return out if keepdim else out.reshape(tuple(n for i, n in enumerate(x.shape)
                                                 if i not in dims))


def any(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Whether any element over dim (all dims when None) is nonzero, as torch.any."""
    out = x._data.any(axis=_dims(x, dim, "any"), keepdims=keepdim)
    return Tensor._make(x._backend.xp.asarray(out), x._backend)


def all(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Whether every element over dim (all dims when None) is nonzero, as torch.all."""
    out = x._data.all(axis=_dims(x, dim, "all"), keepdims=keepdim)
    return Tensor._make(x._backend.xp.asarray(out), x._backend)
