"""Small data sets for examples and tests: the 8x8 digits, spirals, 1-D regression.

Nothing here downloads: the digits are the copy bundled with scikit-learn (an optional
dependency), the others are generated. Generators take `seed=`; with seed=None they draw from
tensorgrad's CPU generator, so tg.manual_seed makes them reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._device import Device
from .._dtype import as_dtype, float32
from .._tensor import Tensor
from ..backend import get_backend


def _rng(seed: int | None) -> np.random.Generator:
    return get_backend(Device("cpu")).random() if seed is None else np.random.default_rng(seed)


def load_digits(device: Any = None) -> tuple[Tensor, Tensor]:
    """The 1797 8x8 handwritten digits bundled with scikit-learn, as
    sklearn.datasets.load_digits: X float32 (1797, 64) scaled from 0..16 to [0, 1],
    y int64 (1797,) with labels 0-9."""
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as err:
        raise ImportError(
            "tg.data.datasets.load_digits reads the copy of the digits bundled with "
            "scikit-learn, which is not installed: pip install scikit-learn "
            f"(or pip install tensorgrad-engine[examples]) ({err})") from None
    digits = sklearn_load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    return Tensor(x, device=device), Tensor(y, device=device)


def make_spirals(n: int = 100, classes: int = 3, noise: float = 0.2, seed: int | None = None,
                 device: Any = None) -> tuple[Tensor, Tensor]:
    """The CS231n spiral data set: `classes` interleaved arms of `n` points each.
    Returns X float32 (n * classes, 2) within the unit disc and y int64 (n * classes,)."""
    if n < 1 or classes < 1:
        raise ValueError(f"make_spirals needs n >= 1 and classes >= 1, got n={n}, "
                         f"classes={classes}")
    rng = _rng(seed)
    radius = np.linspace(0.0, 1.0, n)
    xs, ys = [], []
    for j in range(classes):
        # Each arm sweeps 4 radians of angle; the noise blurs the angle, not the radius.
        theta = np.linspace(j * 4.0, (j + 1) * 4.0, n) + rng.standard_normal(n) * noise
        xs.append(np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1))
        ys.append(np.full(n, j, dtype=np.int64))
    x = np.concatenate(xs).astype(np.float32)
    return Tensor(x, device=device), Tensor(np.concatenate(ys), device=device)


def make_regression(n: int = 100, w: float = 2.0, b: float = 1.0, noise: float = 0.1,
                    low: float = -1.0, high: float = 1.0, seed: int | None = None,
                    dtype: Any = float32, device: Any = None) -> tuple[Tensor, Tensor]:
    """Noisy points on a line for 1-D least squares: x uniform in [low, high) and
    y = w * x + b + noise * N(0, 1), both of shape (n, 1) (ready for nn.Linear(1, 1))."""
    if n < 1:
        raise ValueError(f"make_regression needs n >= 1, got {n}")
    rng = _rng(seed)
    x = rng.uniform(low, high, size=(n, 1))
    y = w * x + b + noise * rng.standard_normal((n, 1))
    np_dtype = as_dtype(dtype).np
    return (Tensor(x.astype(np_dtype), device=device),
            Tensor(y.astype(np_dtype), device=device))


__all__ = ["load_digits", "make_regression", "make_spirals"]
