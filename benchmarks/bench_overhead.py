"""Workload 1, per-op overhead: a chain of mul/add ops on a 1-element tensor, forward and
backward. The arrays are too small for the arithmetic to matter, so the time is what each
implementation spends per op around it (Python, dispatch, the tape); the report divides by the
chain length for microseconds per op."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ._harness import measure
from .config import CHAIN_OPS
from .impls import ALL, Impl, impl_param

SCALE = 1.0001
SHIFT = 0.5


def _autodiff_chain(impl: Impl) -> Callable[[], Any]:
    """tensorgrad and PyTorch take the same code: the chain, then backward from y."""
    x = impl.array(np.ones(1, np.float32), requires_grad=True)
    seed = impl.array(np.ones(1, np.float32))

    def step() -> None:
        y = x
        for _ in range(CHAIN_OPS // 2):
            y = y * SCALE
            y = y + SHIFT
        y.backward(seed)

    return step


def _hand_chain(impl: Impl) -> Callable[[], Any]:
    """The same chain on raw arrays with its derivative by hand: d/dx of an add is the identity,
    of a multiply by SCALE a multiply by SCALE."""
    xp = impl.xp
    x = xp.ones(1, np.float32)
    grad = xp.zeros(1, np.float32)
    seed = xp.ones(1, np.float32)
    scale = np.float32(SCALE)
    shift = np.float32(SHIFT)

    def step() -> None:
        y = x
        for _ in range(CHAIN_OPS // 2):
            y = y * scale
            y = y + shift
        g = seed
        for _ in range(CHAIN_OPS // 2):
            g = g * scale
        xp.add(grad, g, out=grad)

    return step


@pytest.mark.parametrize("impl", [impl_param(i) for i in ALL])
def test_op_chain(benchmark: Any, impl: Impl) -> None:
    step = _hand_chain(impl) if impl.family == "hand" else _autodiff_chain(impl)
    measure(benchmark, impl, step, workload="overhead", case=f"{CHAIN_OPS}-op chain fwd+bwd",
            size=1, ops=CHAIN_OPS)
