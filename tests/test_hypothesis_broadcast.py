"""Broadcasting, drawn by hypothesis: for add/sub/mul/div/maximum/minimum/where on mutually
broadcastable shapes, values and gradients match a NumPy reference and every gradient has its
input's shape; a smaller sample also passes float64 gradcheck."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import tensorgrad as tg

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _sum_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The NumPy reference for reducing a broadcast gradient back to `shape`."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def _max_share(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a > b) + 0.5 * (a == b)


# name: (tensorgrad op, NumPy forward, NumPy gradients given (a, b, w))
BINARY: dict[str, tuple[Callable, Callable, Callable]] = {
    "add": (tg.add, np.add, lambda a, b, w: (w, w)),
    "sub": (lambda a, b: a - b, np.subtract, lambda a, b, w: (w, -w)),
    "mul": (lambda a, b: a * b, np.multiply, lambda a, b, w: (w * b, w * a)),
    "div": (lambda a, b: a / b, np.divide, lambda a, b, w: (w / b, -w * a / (b * b))),
    "maximum": (tg.maximum, np.maximum,
                lambda a, b, w: (w * _max_share(a, b), w * (1 - _max_share(a, b)))),
    "minimum": (tg.minimum, np.minimum,
                lambda a, b, w: (w * _max_share(b, a), w * (1 - _max_share(b, a)))),
}

pair_shapes = mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4)
triple_shapes = mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3)


def _values(seed: int, shape: tuple[int, ...], away_from_zero: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if away_from_zero:
        x = np.sign(x + (x == 0)) * (np.abs(x) + 0.5)
    # A few exact ties, so maximum/minimum meet their tie rule too.
    return np.round(x, 1)


@pytest.mark.parametrize("name", list(BINARY))
@SETTINGS
@given(shapes=pair_shapes, seed=st.integers(0, 2**32 - 1))
def test_binary_broadcast_matches_numpy(name: str, shapes, seed: int, device: str) -> None:
    op, forward, gradients = BINARY[name]
    (sa, sb), out_shape = shapes.input_shapes, shapes.result_shape
    a_np, b_np = _values(seed, sa), _values(seed + 1, sb, away_from_zero=name == "div")
    w = _values(seed + 2, out_shape)
    a = tg.tensor(a_np, dtype=tg.float64, device=device, requires_grad=True)
    b = tg.tensor(b_np, dtype=tg.float64, device=device, requires_grad=True)
    out = op(a, b)
    assert out.shape == out_shape
    np.testing.assert_allclose(out.numpy(), forward(a_np, b_np), rtol=1e-12)
    (out * tg.tensor(w, dtype=tg.float64, device=device)).sum().backward()
    ga, gb = gradients(*np.broadcast_arrays(a_np, b_np), w)
    assert a.grad.shape == a.shape and b.grad.shape == b.shape
    np.testing.assert_allclose(a.grad.numpy(), _sum_to(ga, sa), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), _sum_to(gb, sb), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(shapes=triple_shapes, seed=st.integers(0, 2**32 - 1))
def test_where_broadcast_matches_numpy(shapes, seed: int, device: str) -> None:
    sc, sa, sb = shapes.input_shapes
    cond_np = _values(seed, sc) > 0
    a_np, b_np, w = _values(seed + 1, sa), _values(seed + 2, sb), _values(seed + 3,
                                                                          shapes.result_shape)
    a = tg.tensor(a_np, dtype=tg.float64, device=device, requires_grad=True)
    b = tg.tensor(b_np, dtype=tg.float64, device=device, requires_grad=True)
    out = tg.where(tg.tensor(cond_np, device=device), a, b)
    np.testing.assert_array_equal(out.numpy(), np.where(cond_np, a_np, b_np))
    (out * tg.tensor(w, dtype=tg.float64, device=device)).sum().backward()
    cond = np.broadcast_to(cond_np, shapes.result_shape)
    assert a.grad.shape == sa and b.grad.shape == sb
    np.testing.assert_allclose(a.grad.numpy(), _sum_to(np.where(cond, w, 0.0), sa), atol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), _sum_to(np.where(cond, 0.0, w), sb), atol=1e-12)


@pytest.mark.parametrize("name", ["add", "mul", "div", "maximum"])
@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       seed=st.integers(0, 2**32 - 1))
def test_binary_broadcast_gradcheck(name: str, shapes, seed: int, device: str) -> None:
    op = BINARY[name][0]
    sa, sb = shapes.input_shapes
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 2.0, sa) * rng.choice([-1.0, 1.0], sa)
    b = rng.uniform(0.5, 2.0, sb) * rng.choice([-1.0, 1.0], sb)
    if name == "maximum":  # keep the two inputs apart, so no tie sits within eps
        b = b + 0.01 * rng.uniform(0.1, 1.0, sb)
    inputs = [tg.tensor(v, dtype=tg.float64, device=device, requires_grad=True) for v in (a, b)]
    tg.autograd.gradcheck(op, inputs)


@SETTINGS
@given(shapes=pair_shapes, scalar=st.sampled_from([2, -1.5, 0.25]))
def test_scalar_operands_keep_shape_and_dtype(shapes, scalar, device: str) -> None:
    shape = shapes.input_shapes[0]
    x = tg.ones(shape, dtype=tg.float32, device=device, requires_grad=True)
    out = (x * scalar + scalar) / scalar - scalar
    assert out.shape == shape and out.dtype == tg.float32
    out.sum().backward()
    assert x.grad.shape == shape
    np.testing.assert_allclose(x.grad.numpy(), np.ones(shape))
