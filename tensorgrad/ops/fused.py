"""Fused layer ops: Linear (x @ w^T + b as one op), LinearActivation (the bias add and a
relu, sigmoid or tanh in one kernel pass over the product) and LayerNorm, with their public
functions. Their backwards are written in Tensor ops (matmul, ActivationGrad), so create_graph
records them."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._dtype import result_type
from .._tensor import Tensor
from ..autograd._grad_mode import grad_enabled
from ..autograd._op import Op
from ._broadcast import sum_to
from .activation import Activation, ActivationGrad, Relu, Sigmoid, Tanh
from .arithmetic import _operands
from .linalg import matmul


def _bias_grad(ctx: Op, gy: Tensor) -> Tensor:
    """gy.sum(0) for a bias gradient. NumPy sums the rows of a tall, narrow array one short
    row at a time; a row of ones times gy is one GEMV: a convolution's (50176, 8) 768 -> 32 us
    (one thread). Under a few thousand rows the plain sum is as fast and one op fewer."""
    rows = gy.shape[0]
    if rows < 4096:
        return gy.sum(0)
    ones = Tensor._make(ctx.xp.ones((1, rows), dtype=gy._data.dtype), ctx.backend)
    return matmul(ones, gy).reshape(gy.shape[1])


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
        return gx, gw, _bias_grad(ctx, gy) if needs[2] else None


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
                _bias_grad(ctx, gz) if need_b else None)


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


def _normalized(x: Tensor, dims: tuple[int, ...], eps: float) -> tuple[Tensor, Tensor]:
    """(xhat, rstd) of layer_norm as recorded Tensor ops: xhat = (x - mean) rstd, rstd =
    1 / sqrt(var + eps) with the biased variance over dims."""
    centered = x - x.mean(dims, keepdim=True)
    rstd = 1.0 / ((centered * centered).mean(dims, keepdim=True) + eps).sqrt()
    return centered * rstd, rstd


def _row_mean(ctx: Op, a: Any, dims: tuple[int, ...]) -> Any:
    """a's mean over its last dims (keepdims), as a product with a vector of ones: NumPy's
    reduction over a short last axis pays per row, a matrix-vector product does not ((1408,
    64) float32: 43 -> 7 us)."""
    lead = a.shape[:a.ndim - len(dims)]
    n = int(np.prod(a.shape[len(lead):]))
    rows = a.reshape(int(np.prod(lead)), n)
    total = ctx.backend.matmul(rows, ctx.xp.ones((n, 1), dtype=a.dtype))
    total /= n
    return total.reshape(*lead, *(1,) * len(dims))


class LayerNorm(Op):
    """y = xhat w + b over the last dims, xhat = (x - mean) rstd, rstd = 1 / sqrt(var + eps)
    (biased variance); w and b may be None. One op for the ~11 of the composite, keeping xhat
    and rstd. gx = LayerNormGrad(gy w, xhat, rstd), gw = sum(gy xhat), gb = sum(gy); under
    create_graph xhat and rstd are rebuilt from x as recorded ops (the saved ones are
    constants), which is why x is kept too."""

    @staticmethod
    def forward(ctx: Op, x: Any, w: Any, b: Any, dims: tuple[int, ...], eps: float) -> Any:
        xp = ctx.xp
        xhat = x - _row_mean(ctx, x, dims)
        var = _row_mean(ctx, xhat * xhat, dims)
        var += eps
        rstd = xp.reciprocal(xp.sqrt(var, out=var), out=var)
        xhat *= rstd
        y = xhat.copy() if w is None else xhat * w  # xhat is kept: y is a new array
        if b is not None:
            y += b
        need_x, need_w, _ = ctx.needs_input_grad
        ctx.save_for_backward(x if need_x else None, w if need_x else None,
                              xhat if need_x or need_w else None, rstd if need_x else None)
        ctx.dims, ctx.eps = dims, eps
        return y

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> tuple[Any, ...]:
        x, w, xhat, rstd = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        dims = ctx.dims
        if grad_enabled.get() and need_x:  # create_graph: xhat and rstd as functions of x
            xhat, rstd = _normalized(x, dims, ctx.eps)
        gx = gw = gb = None
        if need_w:
            gw = sum_to(gy * xhat, ctx.input_shape(1))
        if need_b:
            gb = sum_to(gy, ctx.input_shape(2))
        if need_x:
            gx = LayerNormGrad.apply(gy if w is None else gy * w, xhat, rstd, dims=dims)
        return gx, gw, gb


class LayerNormGrad(Op):
    """gx = rstd (g - mean(g) - xhat mean(g xhat)) over dims: layer_norm's input gradient
    from g = gy w, in three passes over the arrays instead of eight ops. Linear in g and
    self-adjoint (rstd is constant along dims), so its gradient for g is this op again; the
    gradients for xhat and rstd are in Tensor ops, so second derivatives are recorded."""

    @staticmethod
    def forward(ctx: Op, g: Any, xhat: Any, rstd: Any, dims: tuple[int, ...]) -> Any:
        t = g * xhat
        m2 = _row_mean(ctx, t, dims)
        gx = g - _row_mean(ctx, g, dims)
        gx -= ctx.xp.multiply(xhat, m2, out=t)
        gx *= rstd
        ctx.save_for_backward(g, xhat, rstd)
        ctx.dims = dims
        return gx

    @staticmethod
    def backward(ctx: Op, u: Tensor) -> tuple[Any, ...]:
        g, xhat, rstd = ctx.saved_tensors
        need_g, need_xhat, need_rstd = ctx.needs_input_grad
        dims = ctx.dims
        gg = LayerNormGrad.apply(u, xhat, rstd, dims=dims) if need_g else None
        gxhat = grstd = None
        if need_xhat or need_rstd:
            m2 = (g * xhat).mean(dims, keepdim=True)
        if need_xhat:
            v = u * rstd
            gxhat = -(v * m2 + g * (v * xhat).mean(dims, keepdim=True))
        if need_rstd:
            centered = g - g.mean(dims, keepdim=True) - xhat * m2
            grstd = (u * centered).sum(dims, keepdim=True)
        return gg, gxhat, grstd


def layer_norm(x: Tensor, k: int, w: Tensor | None, b: Tensor | None, eps: float) -> Tensor:
    """layer_norm over the last k dims of x (shapes checked by the caller). The statistics of
    float16 are computed in float32 (they square x, which overflows float16 from |x| = 256 on)
    and the result rounded once, as PyTorch's CPU kernel."""
    given = [t for t in (x, w, b) if t is not None]
    target = result_type(*given)
    compute = "float32" if target.name == "float16" else target.name
    x, w, b = (t if t is None or t.dtype.name == compute else t.to(dtype=compute)
               for t in (x, w, b))
    y = LayerNorm.apply(x, w, b, dims=tuple(range(x.ndim - k, x.ndim)), eps=float(eps))
    return y if compute == target.name else y.to(dtype=target)
