"""Activations on the fused kernels (relu leaky_relu elu gelu silu sigmoid tanh softplus), and
softmax / log_softmax.

Each activation's forward and backward is one kernel call (`<key>_fwd`, `<key>_bwd` of the
backend's kernels), one pass over memory. The backward is an op of its own, ActivationGrad, so
that create_graph records it and second derivatives work; each activation states its first and
second derivative as Tensor expressions next to its forward, in terms of what backward saved
(the output y where that is cheaper, else the input x).
"""

from __future__ import annotations

import math as _pymath
from typing import Any

from .._tensor import Tensor
from ..autograd._op import Op
from . import arithmetic as ar
from ._broadcast import normalize_dim
from .reduction import logsumexp
from .reduction import sum as _sum


def _call_kernel(kernel: Any, x: Any, *args: Any) -> Any:
    """kernel(x, *args); a 0-d x goes in as shape (1,), because NumPy ufuncs turn 0-d arrays
    into scalars that the CPU kernels' in-place steps cannot write to."""
    if x.ndim:
        return kernel(x, *args)
    args = tuple(a.reshape(1) if getattr(a, "ndim", None) == 0 else a for a in args)
    return kernel(x.reshape(1), *args).reshape(())


class Activation(Op):
    """Base of the fused activations: `key` names the kernels, `from_output` says whether
    backward reads the output (True) or the input (False). `params` are the activation's
    scalar arguments, passed to both kernels after the arrays."""

    key = ""
    from_output = False

    @classmethod
    def forward(cls, ctx: Op, x: Any, params: tuple[Any, ...] = ()) -> Any:
        y = _call_kernel(getattr(ctx.kernels, cls.key + "_fwd"), x, *params)
        ctx.save_for_backward(y if cls.from_output else x)
        ctx.params = params
        return y

    @classmethod
    def backward(cls, ctx: Op, gy: Tensor) -> Tensor:
        (s,) = ctx.saved_tensors
        return ActivationGrad.apply(s, gy, activation=cls, params=ctx.params)

    @staticmethod
    def derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        """dy/dx as a Tensor expression of the saved tensor s."""
        raise NotImplementedError

    @staticmethod
    def second_derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        """d(derivative)/ds, or None where it is zero."""
        raise NotImplementedError


class ActivationGrad(Op):
    """gx = gy * f'(x) in one kernel; its own backward uses the Tensor expressions of the
    activation, so gradients of gradients are recorded."""

    @staticmethod
    def forward(ctx: Op, s: Any, gy: Any, activation: type[Activation],
                params: tuple[Any, ...]) -> Any:
        ctx.save_for_backward(s, gy)
        ctx.activation, ctx.params = activation, params
        return _call_kernel(getattr(ctx.kernels, activation.key + "_bwd"), s, gy, *params)

    @staticmethod
    def backward(ctx: Op, ggx: Tensor) -> tuple[Any, Any]:
        s, gy = ctx.saved_tensors
        need_s, need_gy = ctx.needs_input_grad
        gs = gg = None
        if need_s:
            d2 = ctx.activation.second_derivative(s, ctx.params)
            gs = None if d2 is None else ggx * gy * d2
        if need_gy:
            gg = ggx * ctx.activation.derivative(s, ctx.params)
        return gs, gg

    def name(self) -> str:  # type: ignore[override]
        return f"{self.activation.__name__}GradBackward" if hasattr(self, "activation") \
            else "ActivationGradBackward"


def _positive(s: Tensor) -> Tensor:
    return ar.gt(s, 0.0).to(dtype=s.dtype)


class Relu(Activation):
    """y = max(x, 0); gradient 0 at x = 0 and 1 at a NaN (PyTorch's `!(y <= 0)`). Backward
    reads y."""

    key, from_output = "relu", True

    @staticmethod
    def derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        return 1.0 - ar.le(s, 0.0).to(dtype=s.dtype)

    @staticmethod
    def second_derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        return None


class LeakyRelu(Activation):
    """y = x if x > 0 else slope * x. Backward reads x."""

    key = "leaky_relu"

    @staticmethod
    def derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        (slope,) = params
        return ar.where(ar.gt(s, 0.0), 1.0, slope).to(dtype=s.dtype)

    @staticmethod
    def second_derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        return None


class Elu(Activation):
    """y = x if x > 0 else alpha (e^x - 1). Backward reads y: y + alpha below zero."""

    key, from_output = "elu", True

    @staticmethod
    def derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        (alpha,) = params
        return ar.where(ar.gt(s, 0.0), 1.0, s + alpha)

    @staticmethod
    def second_derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        return 1.0 - _positive(s)


class Sigmoid(Activation):
    """y = 1 / (1 + e^-x). Backward reads y: y (1 - y)."""

    key, from_output = "sigmoid", True

    @staticmethod
    def derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        return s * (1.0 - s)

    @staticmethod
    def second_derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        return 1.0 - 2.0 * s


class Tanh(Activation):
    """y = tanh(x). Backward reads y: 1 - y^2."""

    key, from_output = "tanh", True

    @staticmethod
    def derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        return 1.0 - s * s

    @staticmethod
    def second_derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        return -2.0 * s


_INV_SQRT_2PI = 1.0 / _pymath.sqrt(2.0 * _pymath.pi)


class Gelu(Activation):
    """y = x Phi(x) (the exact, erf form). Backward reads x: Phi(x) + x phi(x)."""

    key = "gelu"

    @staticmethod
    def derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        # Phi(x) + x phi(x), the fused backward with a unit upstream gradient (there is no
        # erf op to write Phi with); an op, so its own derivative (second_derivative) and
        # every higher one is recorded too.
        ones = Tensor._make(s._backend.xp.ones_like(s._data), s._backend)
        return ActivationGrad.apply(s, ones, activation=Gelu, params=params)

    @staticmethod
    def second_derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        pdf = (s * s * -0.5).exp() * _INV_SQRT_2PI
        return pdf * (2.0 - s * s)


_GELU_C = _pymath.sqrt(2.0 / _pymath.pi)


class GeluTanh(Activation):
    """y = x/2 (1 + tanh(c (x + 0.044715 x^3))), PyTorch's approximate='tanh'. Reads x."""

    key = "gelu_tanh"

    @staticmethod
    def _parts(s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        u = (s + 0.044715 * s * s * s) * _GELU_C
        du = (1.0 + 3 * 0.044715 * s * s) * _GELU_C
        return u.tanh(), u, du

    @staticmethod
    def derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        t, _, du = GeluTanh._parts(s)
        return 0.5 * (1.0 + t) + 0.5 * s * (1.0 - t * t) * du

    @staticmethod
    def second_derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        t, _, du = GeluTanh._parts(s)
        sech2 = 1.0 - t * t
        d2u = 6 * 0.044715 * _GELU_C * s
        return sech2 * du + 0.5 * s * (-2.0 * t * sech2 * du * du + sech2 * d2u)


class Silu(Activation):
    """y = x sigmoid(x). Backward reads x: s (1 + x (1 - s))."""

    key = "silu"

    @staticmethod
    def derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        sig = s.sigmoid()
        return sig * (1.0 + s * (1.0 - sig))

    @staticmethod
    def second_derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        sig = s.sigmoid()
        return sig * (1.0 - sig) * (2.0 + s * (1.0 - 2.0 * sig))


class Softplus(Activation):
    """y = log(1 + e^(beta x)) / beta, linear where beta x > threshold. Reads x."""

    key = "softplus"

    @staticmethod
    def derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        beta, threshold = params
        return ar.where(ar.gt(s * beta, threshold), 1.0, (s * beta).sigmoid())

    @staticmethod
    def second_derivative(s: Tensor, params: tuple[Any, ...]) -> Any:
        beta, threshold = params
        sig = (s * beta).sigmoid()
        return ar.where(ar.gt(s * beta, threshold), 0.0, sig * (1.0 - sig) * beta)


def _float(x: Tensor, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} expects a Tensor, got {type(x).__name__}")
    return x if x._data.dtype.kind == "f" else x.to(dtype="float32")


def relu(x: Tensor) -> Tensor:
    """max(x, 0), as torch.relu (gradient 0 at 0); integers stay integers, as PyTorch's."""
    if isinstance(x, Tensor) and x._data.dtype.kind in "iub":
        if x._data.dtype.kind == "b":
            raise TypeError("relu: bool tensors are not supported")
        return ar.maximum(x, 0)  # an integer tensor has no gradient
    return Relu.apply(_float(x, "relu"))


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x if x > 0 else negative_slope * x, as torch.nn.functional.leaky_relu."""
    return LeakyRelu.apply(_float(x, "leaky_relu"), params=(float(negative_slope),))


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else alpha * (exp(x) - 1), as torch.nn.functional.elu."""
    if alpha <= 0:
        raise ValueError(f"elu: alpha must be positive, got {alpha}")
    return Elu.apply(_float(x, "elu"), params=(float(alpha),))


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit, as torch.nn.functional.gelu ("none" or "tanh")."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    op = Gelu if approximate == "none" else GeluTanh
    return op.apply(_float(x, "gelu"))


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x), as torch.nn.functional.silu."""
    return Silu.apply(_float(x, "silu"))


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), finite for any x, as torch.sigmoid."""
    return Sigmoid.apply(_float(x, "sigmoid"))


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent, as torch.tanh."""
    return Tanh.apply(_float(x, "tanh"))


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, as torch.nn.functional.softplus."""
    return Softplus.apply(_float(x, "softplus"), params=(float(beta), float(threshold)))


def _along(ctx: Op, kernel: Any, dim: int, *arrays: Any, **params: Any) -> Any:
    """A row kernel (which works along the last axis) applied along axis dim."""
    x = arrays[0]
    if x.ndim == 0:
        return kernel(*(a.reshape(1) for a in arrays), **params).reshape(())
    if dim == x.ndim - 1:
        return kernel(*arrays, **params)
    moved = [ctx.xp.moveaxis(a, dim, -1) for a in arrays]
    return ctx.xp.moveaxis(kernel(*moved, **params), -1, dim)


class Softmax(Op):
    """y = exp(x - max) / sum along dim, one kernel pass per row; gx = SoftmaxGrad(y, gy).
    Reads y."""

    @staticmethod
    def forward(ctx: Op, x: Any, dim: int) -> Any:
        y = _along(ctx, ctx.kernels.softmax_fwd, dim, x)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return SoftmaxGrad.apply(y, gy, dim=ctx.dim)


class SoftmaxGrad(Op):
    """gx = y (gy - sum(gy y)) along dim in one kernel pass per row, from the softmax output
    y; its own backward is in Tensor ops, so second derivatives are recorded."""

    @staticmethod
    def forward(ctx: Op, y: Any, gy: Any, dim: int) -> Any:
        ctx.save_for_backward(y, gy)
        ctx.dim = dim
        return _along(ctx, ctx.kernels.softmax_bwd, dim, y, gy)

    @staticmethod
    def backward(ctx: Op, ggx: Tensor) -> tuple[Any, Any]:
        y, gy = ctx.saved_tensors
        need_y, need_gy = ctx.needs_input_grad
        dim = ctx.dim
        gy_of_y = ggx_of_gy = None
        if need_y:
            gy_of_y = (ggx * (gy - _sum(gy * y, dim, keepdim=True))
                       - gy * _sum(ggx * y, dim, keepdim=True))
        if need_gy:
            ggx_of_gy = SoftmaxGrad.apply(y, ggx, dim=dim)
        return gy_of_y, ggx_of_gy


class LogSoftmax(Op):
    """y = x - max - log(sum(exp(x - max))) along dim, one kernel pass per row;
    gx = LogSoftmaxGrad(y, gy). Reads y."""

    @staticmethod
    def forward(ctx: Op, x: Any, dim: int) -> Any:
        y = _along(ctx, ctx.kernels.log_softmax_fwd, dim, x)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return LogSoftmaxGrad.apply(y, gy, dim=ctx.dim)


class LogSoftmaxGrad(Op):
    """gx = gy - exp(y) sum(gy) along dim in one kernel pass per row, from the log-softmax
    output y; its own backward is in Tensor ops."""

    @staticmethod
    def forward(ctx: Op, y: Any, gy: Any, dim: int) -> Any:
        ctx.save_for_backward(y, gy)
        ctx.dim = dim
        return _along(ctx, ctx.kernels.log_softmax_bwd, dim, y, gy)

    @staticmethod
    def backward(ctx: Op, ggx: Tensor) -> tuple[Any, Any]:
        y, gy = ctx.saved_tensors
        need_y, need_gy = ctx.needs_input_grad
        p = y.exp()
        gy_of_y = -ggx * p * _sum(gy, ctx.dim, keepdim=True) if need_y else None
        ggx_of_gy = ggx - _sum(ggx * p, ctx.dim, keepdim=True) if need_gy else None
        return gy_of_y, ggx_of_gy


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along dim, stable for large |x|, as torch.softmax."""
    x = _float(x, "softmax")
    return Softmax.apply(x, dim=normalize_dim(dim, max(x.ndim, 1), "softmax"))


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(x)) along dim, computed through log-sum-exp, as torch.log_softmax."""
    x = _float(x, "log_softmax")
    return LogSoftmax.apply(x, dim=normalize_dim(dim, max(x.ndim, 1), "log_softmax"))


__all__ = ["relu", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "softplus",
           "softmax", "log_softmax", "logsumexp"]
