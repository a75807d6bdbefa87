"""The ops of op_db.INDEX_OPS (results that are indices, so no gradient) against PyTorch:
values, dtype and shape must be equal, per float dtype, on every sample."""

from __future__ import annotations

import numpy as np
import pytest
from op_db import INDEX_OPS, OpSpec, sample_arrays

import tensorgrad as tg

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("spec", INDEX_OPS, ids=lambda s: s.name)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_indices_equal_torch(spec: OpSpec, dtype: str, device: str,
                             rng: np.random.Generator) -> None:
    for sample in spec.samples:
        a = sample_arrays(spec, sample, rng)[0].astype(dtype)
        out = spec.call(tg, [tg.tensor(a, device=device)], sample)
        ref = spec.call(torch, [torch.from_numpy(a)], sample)
        assert out.dtype == tg.int64 and out.shape == tuple(ref.shape), (spec.name, sample)
        np.testing.assert_array_equal(out.numpy(), ref.numpy(), err_msg=f"{spec.name} {sample}")
