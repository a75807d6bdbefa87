"""dtypes and PyTorch's type promotion, checked against torch.result_type over a grid of
operand kinds: tensors with dimensions, 0-d tensors, and Python and NumPy scalars."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad._dtype import as_dtype, result_type

DTYPES = ["bool", "int32", "int64", "float16", "float32", "float64"]
SCALARS = [True, 3, 2.5]


def _tg_operand(kind: str, dtype: str, device: str) -> tg.Tensor:
    shape = (2,) if kind == "dims" else ()
    return tg.ones(shape, dtype=dtype, device=device)


def _torch_operand(torch, kind: str, dtype: str):
    shape = (2,) if kind == "dims" else ()
    return torch.ones(shape, dtype=getattr(torch, dtype))


TENSOR_CASES = list(itertools.product(["dims", "0d"], DTYPES, ["dims", "0d"], DTYPES))


@pytest.mark.parametrize("kind_a, dtype_a, kind_b, dtype_b", TENSOR_CASES,
                         ids=lambda v: str(v))
def test_tensor_tensor_promotion_matches_torch(kind_a, dtype_a, kind_b, dtype_b,
                                                device: str) -> None:
    torch = pytest.importorskip("torch")
    expected = torch.result_type(_torch_operand(torch, kind_a, dtype_a),
                                 _torch_operand(torch, kind_b, dtype_b))
    a, b = _tg_operand(kind_a, dtype_a, device), _tg_operand(kind_b, dtype_b, device)
    assert result_type(a, b).name == str(expected).removeprefix("torch.")
    assert (a + b).dtype.name == str(expected).removeprefix("torch.")
    assert (b * a).dtype.name == str(expected).removeprefix("torch.")


@pytest.mark.parametrize("scalar", SCALARS, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("kind", ["dims", "0d"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_tensor_scalar_promotion_matches_torch(dtype, kind, scalar, device: str) -> None:
    torch = pytest.importorskip("torch")
    expected = str(torch.result_type(_torch_operand(torch, kind, dtype), scalar))
    expected = expected.removeprefix("torch.")
    t = _tg_operand(kind, dtype, device)
    assert result_type(t, scalar).name == expected
    assert (t * scalar).dtype.name == expected
    assert (scalar + t).dtype.name == expected


@pytest.mark.parametrize("a, b, expected", [
    ((2, "float32"), 2.5, "float32"),            # a Python float never up-casts float32
    ((2, "float16"), 2.5, "float16"),
    ((2, "int64"), 2.5, "float32"),              # int tensor * float -> the default float
    ((2, "int32"), 2, "int32"),                  # a Python int keeps the int width
    ((2, "bool"), 2, "int64"),
    ((2, "bool"), True, "bool"),
    ((2, "float32"), ((), "float64"), "float32"),  # 0-d tensors do not up-cast either
    ((2, "int32"), ((), "int64"), "int32"),
    ((2, "int32"), ((), "float64"), "float64"),  # ... unless they bring a higher category
    ((2, "int32"), (2, "int64"), "int64"),
    ((2, "bool"), (2, "int32"), "int32"),
    ((2, "float16"), (2, "float32"), "float32"),
    ((2, "int64"), (2, "float16"), "float16"),
])
def test_promotion_table(a, b, expected, device: str) -> None:
    def make(spec):
        if isinstance(spec, tuple):
            shape, dtype = spec
            return tg.ones(shape, dtype=dtype, device=device)
        return spec

    x, y = make(a), make(b)
    assert (x * y).dtype.name == expected
    assert (y - x if isinstance(y, tg.Tensor) or not isinstance(y, bool) else x * y
            ).dtype.name == expected


@pytest.mark.parametrize("scalar", [np.float64(2.5), np.float32(2.5), np.int64(3), np.int32(3)],
                         ids=lambda v: type(v).__name__)
def test_numpy_scalars_behave_like_python_scalars(scalar, device: str) -> None:
    x = tg.ones(3, dtype=tg.float32, device=device)
    for out in (x * scalar, scalar * x, x + scalar, x / scalar, x - scalar, x ** scalar,
                tg.maximum(x, scalar), tg.where(x > 0, x, scalar)):
        assert out.dtype == tg.float32
    i = tg.ones(3, dtype=tg.int32, device=device)
    expected = tg.float32 if isinstance(scalar, np.floating) else tg.int32
    assert (i * scalar).dtype == expected


def test_division_gives_the_default_float(device: str) -> None:
    i = tg.tensor([1, 2], device=device)
    assert (i / 2).dtype == tg.float32 and (i / 2).tolist() == [0.5, 1.0]
    assert (i / i).dtype == tg.float32
    assert (tg.ones(2, dtype=tg.float16, device=device) / i).dtype == tg.float16
    assert (i // 2).dtype == tg.int64


def test_math_on_integers_computes_in_float32(device: str) -> None:
    i = tg.tensor([1, 4], device=device)
    assert i.sqrt().dtype == tg.float32 and i.sqrt().tolist() == [1.0, 2.0]
    assert i.exp().dtype == tg.float32 and i.sigmoid().dtype == tg.float32


def test_reductions_of_integers_and_bools(device: str) -> None:
    assert tg.tensor([1, 2], dtype=tg.int32, device=device).sum().dtype == tg.int64
    assert tg.tensor([True, True, False], device=device).sum().item() == 2
    halves = tg.ones(70000, dtype=tg.float16, device=device, requires_grad=True)
    assert halves.sum().item() == float("inf")  # beyond float16's range, as PyTorch
    assert halves[:60000].sum().item() == 60000.0  # accumulated in float32, not 2048
    m = halves.mean()
    assert m.dtype == tg.float16 and m.item() == 1.0
    m.backward()
    assert halves.grad.dtype == tg.float16
    np.testing.assert_allclose(halves.grad.numpy()[:3].astype(np.float64), 1 / 70000, rtol=1e-2)


def test_float16_statistics_and_normalization_do_not_overflow(device: str) -> None:
    """var divides by a count beyond float16's range and squares its input, and so do the
    normalization layers: all are computed in float32 and returned as float16, as PyTorch."""
    values = np.where(np.arange(70000) % 2 == 0, 1.0, -1.0)  # variance ~1, count > 65504
    x = tg.tensor(values, dtype=tg.float16, device=device, requires_grad=True)
    v = x.var()
    assert v.dtype == tg.float16
    np.testing.assert_allclose(float(v.item()), 70000 / 69999, rtol=1e-3)
    x.std().backward()
    assert np.isfinite(x.grad.numpy().astype(np.float64)).all()
    big = tg.tensor([[300.0, -300.0, 0.0]], dtype=tg.float16, device=device)  # 300^2 > 65504
    expected = [[1.2247, -1.2247, 0.0]]
    ln = tg.nn.functional.layer_norm(big, (3,))
    assert ln.dtype == tg.float16
    np.testing.assert_allclose(ln.numpy().astype(np.float64), expected, atol=2e-3)
    bn = tg.nn.functional.batch_norm(big.reshape(3, 1), None, None, training=True)
    assert bn.dtype == tg.float16
    np.testing.assert_allclose(bn.numpy().astype(np.float64).reshape(1, 3), expected,
                               atol=2e-3)


@pytest.mark.parametrize("spec, expected", [
    ("float32", tg.float32), ("float", tg.float32), ("double", tg.float64),
    ("half", tg.float16), ("long", tg.int64), ("int", tg.int32), ("bool", tg.bool),
    (float, tg.float32), (int, tg.int64), (bool, tg.bool), (np.float64, tg.float64),
    (np.dtype("int32"), tg.int32), (tg.float16, tg.float16),
])
def test_dtype_names(spec, expected) -> None:
    assert as_dtype(spec) is expected
    assert tg.zeros(1, dtype=spec).dtype == expected


def test_dtype_objects() -> None:
    assert tg.float32.is_floating_point and not tg.int64.is_floating_point
    assert tg.float16.itemsize == 2 and tg.bool is tg.bool_
    assert tg.tensor([1.0], dtype=tg.float64).dtype is tg.float64


def test_float16_times_a_python_scalar_rounds_once(device: str) -> None:
    """Multiply and divide meet a scalar in float32 and round once, as PyTorch: 69999 is not
    first rounded to float16's inf, nor 1e-8 to 0. Add and subtract round the scalar first,
    as PyTorch's do."""
    x = tg.tensor([7.0, 0.3], dtype=tg.float16, device=device, requires_grad=True)
    ratio = x / 69999
    assert ratio.dtype == tg.float16
    np.testing.assert_array_equal(ratio.numpy(), (np.float32([7.0, np.float16(0.3)]) / np.float32(
        69999)).astype(np.float16))
    np.testing.assert_array_equal((x * 1e-8).numpy(), np.float16([5.96e-08, 0.0]))
    np.testing.assert_array_equal((1e-8 * x).numpy(), np.float16([5.96e-08, 0.0]))
    np.testing.assert_array_equal((x + 0.1).numpy(), x.numpy() + np.float16(0.1))
    (x / 4.0).sum().backward()
    assert x.grad.dtype == tg.float16
    np.testing.assert_array_equal(x.grad.numpy(), [0.25, 0.25])


def test_clamp_of_integers_with_float_bounds_and_tensor_bounds(device: str) -> None:
    i = tg.tensor([0, 1, 2], device=device)
    c = i.clamp(0.5, 1.5)
    assert c.dtype == tg.float32 and c.tolist() == [0.5, 1.0, 1.5]  # as PyTorch, not float64
    assert i.clamp(0, 1).dtype == tg.int64
    x = tg.tensor([0.0, 5.0, 9.0], device=device)
    lo, hi = tg.tensor([1.0, 1.0, 1.0], device=device), tg.tensor([2.0, 6.0, 8.0], device=device)
    assert x.clamp(lo, hi).tolist() == [1.0, 5.0, 8.0]  # elementwise bounds
