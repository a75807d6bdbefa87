"""Max pooling runs over window offsets with masks of where each maximum was; its gradient
ops (scatter and gather, each other's adjoint) must give correct second derivatives too."""

from __future__ import annotations

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad.nn import functional as F

GEOMETRIES = [dict(kernel_size=2), dict(kernel_size=3, stride=1),
              dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=1, dilation=2)]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_max_pool_second_order(geometry, device, rng):
    # Distinct values: central differences are only valid away from ties.
    values = rng.permutation(2 * 2 * 6 * 6).reshape(2, 2, 6, 6) / 7.0
    x = tg.tensor(values, dtype=tg.float64, device=device, requires_grad=True)

    def first_derivative(x):
        y = F.max_pool2d(x, **geometry)
        (gx,) = tg.grad((y * y).sum(), [x], create_graph=True)
        return gx

    tg.autograd.gradcheck(lambda x: F.max_pool2d(x, **geometry), [x])
    tg.autograd.gradcheck(first_derivative, [x])


def test_overlapping_windows_accumulate_into_a_shared_maximum(device):
    x = tg.zeros(1, 1, 3, 3, device=device, requires_grad=True)
    with tg.no_grad():
        x[0, 0, 1, 1] = 5.0  # the maximum of all four overlapping 2x2 windows
    F.max_pool2d(x, 2, stride=1).sum().backward()
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 4.0
    np.testing.assert_array_equal(x.grad.numpy(), expected)
