"""Conversions that stay on the tape: dtype casts, device copies, clone."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._device import Device
from .._dtype import DType
from .._tensor import Tensor
from ..autograd._op import Op
from ..backend import get_backend


class ToDtype(Op):
    """y = x cast to another dtype; gx = gy cast back (no gradient into integer inputs)."""

    @staticmethod
    def forward(ctx: Op, x: Any, dtype: Any) -> Any:
        with np.errstate(over="ignore"):  # beyond the target's range: inf, as in PyTorch
            return x.astype(dtype)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        return gy.to(dtype=ctx.input_dtype(0))


class ToDevice(Op):
    """y = x copied to another device; gx = gy copied back."""

    changes_device = True

    @staticmethod
    def forward(ctx: Op, x: Any, backend: Any) -> Any:
        ctx.out_backend = backend
        return backend.asarray(x)  # on the target's device, whichever device is current

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        return to_device(gy, ctx.backend.device)


class Clone(Op):
    """y = a copy of x in its own memory; gx = gy."""

    __slots__ = ()

    @staticmethod
    def forward(ctx: Op, x: Any) -> Any:
        return x.copy()

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        return gy


def to_dtype(x: Tensor, dtype: DType) -> Tensor:
    """x as `dtype`; the gradient flows only into floating-point inputs."""
    if x._data.dtype.kind != "f" or dtype.np.kind != "f":
        return Tensor._make(x._data.astype(dtype.np), x._backend)
    return ToDtype.apply(x, dtype=dtype.np)


def to_device(x: Tensor, device: Device) -> Tensor:
    """x copied to `device`."""
    return ToDevice.apply(x, backend=get_backend(device))


def clone(x: Tensor) -> Tensor:
    """A copy of x that is still connected to the graph, as torch.clone."""
    return Clone.apply(x)
