"""Workload 3, matmul: an n x n by n x n float32 product at each size of the mode, as TFLOP/s.

tensorgrad's time includes its Tensor wrapper (no gradient recorded: the inputs do not require
grad), so the ratio to the hand-written reference is the wrapper's cost over the BLAS call."""

from __future__ import annotations

from typing import Any

import pytest

from . import config
from ._harness import measure, normal
from .impls import ALL, Impl, impl_param


@pytest.mark.parametrize(
    ("impl", "n"),
    [pytest.param(impl, n, id=f"{n}-{impl.name}", marks=impl_param(impl).marks)
     for impl in ALL for n in config.sizes(impl.device).matmul_sizes])
def test_matmul(benchmark: Any, impl: Impl, n: int) -> None:
    a, b = normal(impl, (n, n), seed=0), normal(impl, (n, n), seed=1)
    fn = (lambda: impl.xp.matmul(a, b)) if impl.family == "hand" else (lambda: a @ b)
    measure(benchmark, impl, fn, workload="matmul", case="matmul", size=n, flops=2.0 * n**3)
