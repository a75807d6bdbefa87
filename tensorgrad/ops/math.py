"""Elementwise math functions: exp log sqrt sin cos. Activations live in activation.py."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tensor import Tensor
from ..autograd._op import Op


def _float_input(x: Tensor, what: str) -> Tensor:
    # Integer inputs compute in the default float type, as PyTorch does.
    return x if x._data.dtype.kind == "f" else x.to(dtype="float32")


class Exp(Op):
    """y = exp(x); backward reuses y."""

    @staticmethod
    def forward(ctx: Op, x: Any) -> Any:
        with np.errstate(over="ignore"):  # overflow to inf, as in PyTorch
            y = ctx.xp.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return gy * y


class Log(Op):
    """y = log(x); gx = gy / x."""

    @staticmethod
    def forward(ctx: Op, x: Any) -> Any:
        ctx.save_for_backward(x)
        with np.errstate(divide="ignore", invalid="ignore"):  # -inf / nan, as in PyTorch
            return ctx.xp.log(x)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return gy / x


class Sqrt(Op):
    """y = sqrt(x); gx = gy / (2 y), from the saved output."""

    @staticmethod
    def forward(ctx: Op, x: Any) -> Any:
        with np.errstate(invalid="ignore"):
            y = ctx.xp.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return gy / (2.0 * y)


class Sin(Op):
    """y = sin(x); gx = gy cos(x)."""

    @staticmethod
    def forward(ctx: Op, x: Any) -> Any:
        ctx.save_for_backward(x)
        return ctx.xp.sin(x)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return gy * cos(x)


class Cos(Op):
    """y = cos(x); gx = -gy sin(x)."""

    @staticmethod
    def forward(ctx: Op, x: Any) -> Any:
        ctx.save_for_backward(x)
        return ctx.xp.cos(x)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return -gy * sin(x)


def exp(x: Tensor) -> Tensor:
    """e ** x, as torch.exp."""
    return Exp.apply(_float_input(x, "exp"))


def log(x: Tensor) -> Tensor:
    """Natural logarithm, as torch.log."""
    return Log.apply(_float_input(x, "log"))


def sqrt(x: Tensor) -> Tensor:
    """Square root, as torch.sqrt."""
    return Sqrt.apply(_float_input(x, "sqrt"))


def sin(x: Tensor) -> Tensor:
    """Sine, as torch.sin."""
    return Sin.apply(_float_input(x, "sin"))


def cos(x: Tensor) -> Tensor:
    """Cosine, as torch.cos."""
    return Cos.apply(_float_input(x, "cos"))
