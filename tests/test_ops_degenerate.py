"""Every op_db entry on degenerate inputs derived from its first sample (op_db.
degenerate_samples: all inputs 0-d; each input's first dim of size 0), against PyTorch: where
PyTorch refuses, tensorgrad must raise too; where it gives a result, the same shapes and values,
and the same gradients of a random-weighted sum of the outputs."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from op_db import OPS, OpSpec, degenerate_samples, sample_arrays

import tensorgrad as tg

torch = pytest.importorskip("torch")

CASES = [pytest.param(spec, kind, sample, id=f"{spec.name}-{kind}")
         for spec in OPS for kind, sample in degenerate_samples(spec).items()]


def _outputs(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


@pytest.mark.parametrize("spec, kind, sample", CASES)
def test_degenerate_inputs_behave_as_in_torch(spec: OpSpec, kind: str, sample: tuple[Any, ...],
                                              device: str, rng: np.random.Generator) -> None:
    arrays = sample_arrays(spec, sample, rng)
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    try:
        with warnings.catch_warnings():  # PyTorch's own (var's degrees of freedom)
            warnings.simplefilter("ignore")
            refs = _outputs(spec.call(torch, ts, sample))
    except (RuntimeError, IndexError, ValueError, TypeError, AssertionError):
        with pytest.raises(Exception):  # noqa: B017  (PyTorch's and our error types differ)
            spec.call(tg, [tg.tensor(a, device=device) for a in arrays], sample)
        return
    xs = [tg.tensor(a, device=device, requires_grad=True) for a in arrays]
    outs = _outputs(spec.call(tg, xs, sample))
    assert len(outs) == len(refs)
    for out, ref in zip(outs, refs):
        assert out.shape == tuple(ref.shape), (spec.name, kind, sample)
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=f"{spec.name} {kind} {sample}")
    weights = [rng.standard_normal(tuple(r.shape)) for r in refs]
    if not any(r.requires_grad for r in refs):
        return
    sum(((o * tg.tensor(w, device=device)).sum() for o, w in zip(outs, weights)
         if o.requires_grad), tg.zeros((), dtype=tg.float64, device=device)).backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sum((r * torch.from_numpy(w)).sum() for r, w in zip(refs, weights)
            if r.requires_grad).backward()
    for i, (x, t) in enumerate(zip(xs, ts)):
        expected = t.grad.numpy() if t.grad is not None else np.zeros(t.shape)
        got = x.grad.numpy() if x.grad is not None else np.zeros(x.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-11,
                                   err_msg=f"{spec.name} {kind}: gradient of input {i}")
