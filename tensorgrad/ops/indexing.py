"""Indexing: x[index] (basic and advanced, NumPy's rules) and x[index] = value.

Advanced indices may repeat, so the backward scatter-adds (np.add.at / cupyx.scatter_add
through the backend) instead of assigning; a repeated index gets the sum of its gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._device import DeviceMismatchError
from .._tensor import Tensor
from ..autograd._op import Op
from ._broadcast import sum_to
from .inplace import rebase, records_inplace


def _raw_index(x: Tensor, index: Any) -> tuple[Any, bool]:
    """The index with Tensors and lists turned into arrays of x's device, and whether it is
    basic (ints, slices, None, Ellipsis only: the result is then a view)."""
    parts = index if isinstance(index, tuple) else (index,)
    raw, basic = [], True
    for part in parts:
        if isinstance(part, Tensor):
            if part._backend is not x._backend:
                raise DeviceMismatchError(f"indexing a tensor on {x.device} with an index on "
                                          f"{part.device}")
            part = part._data
        elif isinstance(part, (list, np.ndarray)):
            # An empty list selects nothing (NumPy would read it as float64, as PyTorch not).
            part = x._backend.asarray(part, np.int64 if isinstance(part, list) and not part
                                      else None)
        if isinstance(part, (int, np.integer)) and not isinstance(part, bool):
            raw.append(int(part))
        elif part is None or part is Ellipsis or isinstance(part, slice):
            raw.append(part)
        elif hasattr(part, "dtype"):
            if part.dtype.kind not in "iub":
                raise IndexError(f"tensors used as indices must be integer or bool, got "
                                 f"{part.dtype}")
            basic = False
            raw.append(part)
        else:
            raise IndexError(f"unsupported index {part!r}; use ints, slices, None, ..., or "
                             "integer/bool tensors")
    return tuple(raw), basic


class _Index(Op):
    """y = x[index]; gx = zeros with gy scatter-added at index."""

    @staticmethod
    def forward(ctx: Op, x: Any, index: tuple[Any, ...]) -> Any:
        ctx.index = index
        try:
            y = x[index]
        except IndexError as err:
            raise IndexError(f"index {index!r} is invalid for a tensor of shape {x.shape}: "
                             f"{err}") from None
        return ctx.xp.asarray(y)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        return IndexGrad.apply(gy, index=ctx.index, shape=ctx.input_shape(0))


class BasicIndex(_Index):
    is_view = True


class AdvancedIndex(_Index):
    pass


class IndexGrad(Op):
    """gx = zeros(shape) with gy added at index; its backward is gy's index again."""

    @staticmethod
    def forward(ctx: Op, gy: Any, index: tuple[Any, ...], shape: tuple[int, ...]) -> Any:
        ctx.index = index
        gx = ctx.xp.zeros(shape, dtype=gy.dtype)
        if all(type(part) in (int, slice) or part is None or part is Ellipsis for part in index):
            gx[index] = gy  # a basic index never repeats a position: no scatter-add needed
        else:
            ctx.backend.scatter_add(gx, index, gy)
        return gx

    @staticmethod
    def backward(ctx: Op, ggx: Tensor) -> Tensor:
        return AdvancedIndex.apply(ggx, index=ctx.index)


class IndexPut(Op):
    """y = x with y[index] = v; gx = gy with zeros at index, gv = gy[index] summed to v."""

    @staticmethod
    def forward(ctx: Op, x: Any, v: Any, index: tuple[Any, ...]) -> Any:
        ctx.index = index
        y = x.copy()
        y[index] = v
        return y

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> tuple[Any, Any]:
        need_x, need_v = ctx.needs_input_grad
        gx = gv = None
        if need_x:
            keep = ctx.xp.ones(gy.shape, dtype=gy._data.dtype)
            keep[ctx.index] = 0
            gx = gy * Tensor._make(keep, ctx.backend)
        if need_v:
            gv = sum_to(AdvancedIndex.apply(gy, index=ctx.index), ctx.input_shape(1))
        return gx, gv


def getitem(x: Tensor, index: Any) -> Tensor:
    """x[index] with NumPy's basic and advanced indexing."""
    raw, basic = _raw_index(x, index)
    return (BasicIndex if basic else AdvancedIndex).apply(x, index=raw)


def setitem(x: Tensor, index: Any, value: Any) -> None:
    """x[index] = value, in place. Recorded for a non-leaf that requires grad; refused on a
    leaf that requires grad unless under no_grad, as PyTorch."""
    raw, _ = _raw_index(x, index)
    if not isinstance(value, Tensor):
        value = Tensor(value, dtype=x.dtype, device=x.device)
    if value._backend is not x._backend:
        raise DeviceMismatchError(f"assigning a tensor on {value.device} into a tensor on "
                                  f"{x.device}")
    if records_inplace(x, value, "in-place assignment"):
        result = IndexPut.apply(x, value.to(dtype=x.dtype), index=raw)
        x._data[...] = result._data
        rebase(x, result)
    else:
        x._data[raw] = value._data
    x._version[0] += 1
