"""Every op of op_db against PyTorch: forward values per dtype (float16/32/64, against a float64
reference from the same rounded inputs) and gradients of a random-weighted sum of the outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from op_db import OPS, OpSpec, sample_arrays

import tensorgrad as tg

torch = pytest.importorskip("torch")

# (rtol, atol) per dtype: forward values against the float64 reference.
FORWARD_TOL = {"float16": (1e-2, 1e-2), "float32": (1e-5, 1e-5), "float64": (1e-10, 1e-12)}
# Gradients computed in the dtype by both libraries.
GRAD_TOL = {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-11)}


def _with_dtypes(dtypes: list[str]) -> list[Any]:
    """(spec, dtype) pairs for the dtypes each spec is compared in."""
    return [pytest.param(spec, dtype, id=f"{spec.name}-{dtype}")
            for spec in OPS for dtype in dtypes if dtype in spec.dtypes]


def _outputs(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


@pytest.mark.parametrize("spec, dtype", _with_dtypes(list(FORWARD_TOL)))
def test_forward_matches_torch(spec: OpSpec, dtype: str, device: str,
                               rng: np.random.Generator) -> None:
    rtol, atol = FORWARD_TOL[dtype]
    for sample in spec.samples:
        arrays = [a.astype(dtype) for a in sample_arrays(spec, sample, rng)]
        outs = _outputs(spec.call(tg, [tg.tensor(a, device=device) for a in arrays], sample))
        refs = _outputs(spec.call(torch, [torch.from_numpy(a.astype(np.float64))
                                          for a in arrays], sample))
        assert len(outs) == len(refs)
        for out, ref in zip(outs, refs):
            assert out.dtype.name == dtype, spec.name
            assert out.shape == tuple(ref.shape), (spec.name, sample)
            np.testing.assert_allclose(out.numpy().astype(np.float64), ref.numpy(),
                                       rtol=rtol, atol=atol, err_msg=f"{spec.name} {sample}")


@pytest.mark.parametrize("spec, dtype", _with_dtypes(list(GRAD_TOL)))
def test_gradients_match_torch(spec: OpSpec, dtype: str, device: str,
                               rng: np.random.Generator) -> None:
    rtol, atol = GRAD_TOL[dtype]
    for sample in spec.samples:
        arrays = [a.astype(dtype) for a in sample_arrays(spec, sample, rng)]
        xs = [tg.tensor(a, device=device, requires_grad=True) for a in arrays]
        ts = [torch.tensor(a, requires_grad=True) for a in arrays]
        outs = _outputs(spec.call(tg, xs, sample))
        refs = _outputs(spec.call(torch, ts, sample))
        # A random-weighted sum, never all ones, so every output element's gradient counts.
        weights = [rng.standard_normal(tuple(r.shape)).astype(dtype) for r in refs]
        sum((o * tg.tensor(w, device=device)).sum() for o, w in zip(outs, weights)).backward()
        sum((r * torch.from_numpy(w)).sum() for r, w in zip(refs, weights)).backward()
        for i, (x, t) in enumerate(zip(xs, ts)):
            expected = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
            assert x.grad is not None, (spec.name, sample, i)
            assert x.grad.shape == x.shape and x.grad.dtype.name == dtype
            np.testing.assert_allclose(x.grad.numpy(), expected, rtol=rtol, atol=atol,
                                       err_msg=f"{spec.name} {sample} input {i}")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_third_derivative_matches_torch(approximate: str, device: str) -> None:
    """gelu's first derivative was a constant array, so its third derivative came out 0."""
    values = [0.3, -1.2, 2.0]
    x = tg.tensor(values, dtype=tg.float64, device=device, requires_grad=True)
    t = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    for m, v, f in ((tg, x, tg.gelu), (torch, t, torch.nn.functional.gelu)):
        g = (f(v, approximate=approximate) ** 3).sum()  # gelu's backward gets a gy of x
        for _ in range(3):
            (g,) = m.autograd.grad(g.sum(), [v], create_graph=True)
        if m is tg:
            ours = g
    np.testing.assert_allclose(ours.numpy(), g.detach().numpy(), rtol=1e-10)


@pytest.mark.parametrize("correction", [0, 1])
def test_std_of_a_constant_slice_has_gradient_zero(correction: int, device: str) -> None:
    """A constant row (a constant feature) gave NaN gradients through std; PyTorch gives 0."""
    values = np.array([[1.5, 1.5, 1.5], [1.0, 2.0, 4.0]])
    x = tg.tensor(values, dtype=tg.float64, device=device, requires_grad=True)
    t = torch.tensor(values, requires_grad=True)
    w = np.array([0.7, -1.3])
    (x.std(1, correction=correction) * tg.tensor(w, device=device)).sum().backward()
    (t.std(1, correction=correction) * torch.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-12)
    assert np.all(x.grad.numpy()[0] == 0.0)


@pytest.mark.parametrize("dtype, values", [
    ("float16", [300.0, -300.0]), ("float16", [60000.0, -60000.0, 1.0]),
    ("float16", [1e-4, 3e-4]), ("float32", [1e19, -1e19]), ("float32", [3e19, -3e19, 1e19]),
    ("float32", [1e30, -1e30, 5e29]), ("float32", [1e-30, 3e-30]),
    ("float32", [3e38, -3e38]),
    ("float16", [1000.0, 1001.0, 1002.0, 1003.0]),
], ids=str)
def test_var_and_std_do_not_overflow_in_their_squares(dtype: str, values: list[float],
                                                      device: str) -> None:
    """std of float16 [300, -300] was inf (its variance 180000 is, but not the std, 424.25),
    and float32 overflowed alike near |x| = 1e19 and underflowed near 1e-30; as PyTorch now."""
    x = tg.tensor(values, dtype=dtype, device=device)
    t = torch.tensor(values, dtype=getattr(torch, dtype))
    for ours, ref in ((x.std(), t.std()), (x.var(), t.var()),
                      (x.std(correction=0), t.std(correction=0))):
        assert ours.dtype.name == dtype
        np.testing.assert_allclose(ours.item(), ref.item(), rtol=1e-3 if dtype == "float16"
                                   else 1e-6)


def test_float16_sum_beyond_its_range_is_inf_and_mean_is_not(device: str) -> None:
    """As PyTorch: float16 accumulates in float32, so the sum overflows to inf (silently) only
    when the total does, and the mean of values that fit stays finite."""
    x = tg.tensor([60000.0, 60000.0, -1.0], dtype="float16", device=device)
    t = torch.tensor([60000.0, 60000.0, -1.0], dtype=torch.float16)
    assert x.sum().item() == t.sum().item() == np.inf
    assert x.mean().item() == t.mean().item()
    assert x[:2].sum(dim=0).item() == np.inf
