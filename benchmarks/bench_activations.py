"""Workload 2, activations: every activation forward and backward at each size of the mode,
as GB/s and as a fraction of the copy bandwidth of the same device measured in the same run.

The backward is timed twice for tensorgrad: through autograd (`tg.grad` of the recorded
output, what training pays) and as the bare fused kernel `kernels.<act>_bwd`. The hand-written
reference computes the textbook formulas with one array op at a time; on CUDA that is the
unfused CuPy chain the fused kernels must beat. Bytes moved: forward reads x and writes y;
backward reads the saved tensor and gy and writes gx; copy reads and writes once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from . import config
from ._harness import measure, normal
from .impls import ALL, Impl, impl_param

F32 = 4
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "softplus")
SLOPE, ALPHA, BETA, THRESHOLD = 0.01, 1.0, 1.0, 20.0


def _cases(*, families: tuple[str, ...] = ("tensorgrad", "hand", "torch")) -> list[Any]:
    """(impl, size) for every implementation and each size of its device kind."""
    return [pytest.param(impl, n, id=f"{n}-{impl.name}", marks=impl_param(impl).marks)
            for impl in ALL if impl.family in families
            for n in config.sizes(impl.device).activation_sizes]


def _erf(xp: Any) -> Callable[[Any], Any]:
    if xp is np:
        from scipy.special import erf
    else:
        from cupyx.scipy.special import erf
    return erf


def _hand(xp: Any, act: str) -> tuple[Callable[[Any], Any], Callable[[Any, Any, Any], Any]]:
    """(forward(x), backward(x, y, gy)) of act written with one array op at a time."""
    def sigmoid(x: Any) -> Any:
        return 1 / (1 + xp.exp(-x))

    if act == "relu":
        return (lambda x: xp.maximum(x, 0)), (lambda x, y, gy: gy * (y > 0))
    if act == "leaky_relu":
        return ((lambda x: xp.where(x > 0, x, x * SLOPE)),
                (lambda x, y, gy: xp.where(x > 0, gy, gy * SLOPE)))
    if act == "elu":
        return ((lambda x: xp.where(x > 0, x, ALPHA * xp.expm1(x))),
                (lambda x, y, gy: xp.where(y > 0, gy, gy * (y + ALPHA))))
    if act == "gelu":
        erf = _erf(xp)
        inv_sqrt2, inv_sqrt2pi = 1 / math.sqrt(2), 1 / math.sqrt(2 * math.pi)
        return ((lambda x: 0.5 * x * (1 + erf(x * inv_sqrt2))),
                (lambda x, y, gy: gy * (0.5 * (1 + erf(x * inv_sqrt2))
                                        + x * xp.exp(-0.5 * x * x) * inv_sqrt2pi)))
    if act == "silu":
        def silu_bwd(x: Any, y: Any, gy: Any) -> Any:
            s = sigmoid(x)
            return gy * s * (1 + x * (1 - s))

        return (lambda x: x * sigmoid(x)), silu_bwd
    if act == "sigmoid":
        return sigmoid, (lambda x, y, gy: gy * y * (1 - y))
    if act == "tanh":
        return xp.tanh, (lambda x, y, gy: gy * (1 - y * y))
    if act == "softplus":
        return (lambda x: xp.logaddexp(0, x)), (lambda x, y, gy: gy * sigmoid(x))
    raise ValueError(act)


def _autodiff_fn(impl: Impl, act: str) -> Callable[[Any], Any]:
    if impl.family == "tensorgrad":
        import tensorgrad as tg

        mod = tg
    else:
        import torch.nn.functional as mod
    if act == "leaky_relu":
        return lambda x: mod.leaky_relu(x, SLOPE)
    if act == "elu":
        return lambda x: mod.elu(x, ALPHA)
    if act == "softplus":
        return lambda x: mod.softplus(x, BETA, THRESHOLD)
    return getattr(mod, act)


def _grad_fn(impl: Impl) -> Callable[..., Any]:
    if impl.family == "tensorgrad":
        import tensorgrad as tg

        return tg.grad
    import torch

    return torch.autograd.grad


def _check_scipy(impl: Impl, act: str) -> None:
    if act == "gelu" and impl.family == "hand" and impl.device == "cpu":
        pytest.importorskip("scipy", reason="hand-written NumPy gelu needs scipy.special.erf")


@pytest.mark.parametrize(("impl", "n"), _cases(families=("hand", "torch")))
def test_copy(benchmark: Any, impl: Impl, n: int) -> None:
    src = normal(impl, n)
    if impl.family == "torch":
        dst = src.clone()
        fn = lambda: dst.copy_(src)  # noqa: E731
    else:
        dst = src.copy()
        fn = lambda: impl.xp.copyto(dst, src)  # noqa: E731
    measure(benchmark, impl, fn, workload="activation", case="copy", size=n, nbytes=2 * n * F32)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("variant", ["fwd", "bwd"])
@pytest.mark.parametrize(("impl", "n"), _cases())
def test_activation(benchmark: Any, impl: Impl, n: int, variant: str, act: str) -> None:
    _check_scipy(impl, act)
    if impl.family == "hand":
        x, gy = normal(impl, n, seed=0), normal(impl, n, seed=1)
        fwd, bwd = _hand(impl.xp, act)
        y = fwd(x)
        fn = (lambda: fwd(x)) if variant == "fwd" else (lambda: bwd(x, y, gy))
    else:
        x, gy = normal(impl, n, seed=0, requires_grad=True), normal(impl, n, seed=1)
        f = _autodiff_fn(impl, act)
        if variant == "fwd":
            fn = lambda: f(x)  # noqa: E731
        else:
            y, grad = f(x), _grad_fn(impl)
            fn = lambda: grad(y, x, gy, retain_graph=True)  # noqa: E731
    nbytes = (2 if variant == "fwd" else 3) * n * F32
    measure(benchmark, impl, fn, workload="activation", case=f"{act} {variant}", size=n,
            nbytes=nbytes)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize(("impl", "n"), _cases(families=("tensorgrad",)))
def test_activation_kernel(benchmark: Any, impl: Impl, n: int, act: str) -> None:
    """The fused backward kernel alone, on the array autograd would hand it."""
    import tensorgrad as tg
    from tensorgrad.ops import activation as A

    op = {"relu": A.Relu, "leaky_relu": A.LeakyRelu, "elu": A.Elu, "gelu": A.Gelu,
          "silu": A.Silu, "sigmoid": A.Sigmoid, "tanh": A.Tanh, "softplus": A.Softplus}[act]
    params = {"leaky_relu": (SLOPE,), "elu": (ALPHA,), "softplus": (BETA, THRESHOLD)}.get(act, ())
    kernels = tg.backend.get_backend(tg.Device(impl.device)).kernels
    x, gy = normal(impl, n, seed=0).data, normal(impl, n, seed=1).data
    saved = getattr(kernels, f"{op.key}_fwd")(x, *params) if op.from_output else x
    bwd = getattr(kernels, f"{op.key}_bwd")
    measure(benchmark, impl, lambda: bwd(saved, gy, *params), workload="activation",
            case=f"{act} bwd-kernel", size=n, nbytes=3 * n * F32)
