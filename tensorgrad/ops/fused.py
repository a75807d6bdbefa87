"""Fused layer ops: Linear (x @ w^T + b as one op) and LinearActivation (the bias add and a
relu, sigmoid or tanh in one kernel pass over the product), with their public functions. Their
backwards are written in Tensor ops (matmul, ActivationGrad), so create_graph records them."""

from __future__ import annotations

from typing import Any

from .._dtype import result_type
from .._tensor import Tensor
from ..autograd._op import Op
from .activation import Activation, ActivationGrad, Relu, Sigmoid, Tanh
from .arithmetic import _operands
from .linalg import matmul


class Linear(Op):
    """y = x @ w^T (+ b) for x (N, in), w (out, in): gx = gy @ w, gw = gy^T @ x, gb = sum(gy).
    One op instead of transpose, matmul and add: no transposed copy of w's gradient, and the
    bias gradient is a plain column sum."""

    @staticmethod
    def forward(ctx: Op, x: Any, w: Any, b: Any = None) -> Any:
        need_x, need_w = ctx.needs_input_grad[:2]
        ctx.save_for_backward(x if need_w else None, w if need_x else None)
        y = ctx.backend.matmul(x, w.T)
        if b is not None:
            y += b
        return y

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> tuple[Any, ...]:
        x, w = ctx.saved_tensors
        needs = ctx.needs_input_grad
        gx = matmul(gy, w) if needs[0] else None
        gw = matmul(gy.mT, x) if needs[1] else None
        if len(needs) == 2:
            return gx, gw
        return gx, gw, gy.sum(0) if needs[2] else None


class LinearActivation(Op):
    """y = act(x @ w^T + b) for act in relu, sigmoid, tanh: the bias add and the activation
    are one kernel pass over the product, written in place, and only y is kept (those three
    activations differentiate from their output). gz = act'(y) gy, then as Linear."""

    @staticmethod
    def forward(ctx: Op, x: Any, w: Any, b: Any, activation: type[Activation]) -> Any:
        need_x, need_w = ctx.needs_input_grad[:2]
        z = ctx.backend.matmul(x, w.T)
        y = getattr(ctx.kernels, f"bias_{activation.key}_fwd")(z, b, z)
        ctx.save_for_backward(x if need_w else None, w if need_x else None, y)
        ctx.activation = activation
        return y

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> tuple[Any, ...]:
        x, w, y = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        gz = ActivationGrad.apply(y, gy, activation=ctx.activation, params=())
        return (matmul(gz, w) if need_x else None, matmul(gz.mT, x) if need_w else None,
                gz.sum(0) if need_b else None)


_FUSED = {"relu": Relu, "sigmoid": Sigmoid, "tanh": Tanh}


def linear_activation(x: Tensor, w: Tensor, b: Tensor, activation: str) -> Tensor:
    """act(x @ w.T + b) with the bias add fused into the activation; activation is "relu",
    "sigmoid" or "tanh" (nn.Sequential uses it for Linear followed by one of those)."""
    lead = x.shape[:-1]
    target = result_type(x, w, b)
    x, w, b = (t if t._data.dtype == target.np else t.to(dtype=target) for t in (x, w, b))
    x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
    y = LinearActivation.apply(x2, w, b, activation=_FUSED[activation])
    return y.reshape(*lead, w.shape[0]) if x.ndim != 2 else y


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """x @ w.T + b over the last dim of x (leading dims flattened and restored)."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
    if b is None:
        y = Linear.apply(*_operands(x2, w))
    else:
        target = result_type(x2, w, b)
        x2, w, b = (t if t._data.dtype == target.np else t.to(dtype=target) for t in (x2, w, b))
        y = Linear.apply(x2, w, b)
    return y.reshape(*lead, w.shape[0]) if x.ndim != 2 else y
