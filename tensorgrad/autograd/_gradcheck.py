"""Gradient checks by central differences in float64, raising with the worst element."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree; the message names the worst element."""


def gradcheck(fn: Callable[..., Any], inputs: Sequence[Any], eps: float = 1e-6,
              atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0) -> bool:
    """Compare the gradient of <fn(*inputs), v> for a random direction v with central
    differences, for every input that requires grad. Raises GradcheckError on mismatch."""
    inputs = list(inputs)
    tensors = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    if not tensors:
        raise ValueError("gradcheck: no input requires grad")
    for t in tensors:
        if t.dtype.name != "float64":
            warnings.warn(f"gradcheck: an input is {t.dtype.name}; central differences are "
                          "only reliable in float64", stacklevel=2)
    rng = np.random.default_rng(seed)
    out = _as_tuple(fn(*inputs))
    weights = [rng.standard_normal(o.shape) for o in out]

    def objective() -> float:
        values = _as_tuple(fn(*inputs))
        return float(sum(np.sum(o.numpy().astype(np.float64) * w)
                         for o, w in zip(values, weights)))

    from . import grad as _grad

    grad_outputs = [Tensor(w, dtype=o.dtype, device=o.device) for o, w in zip(out, weights)]
    analytic = _grad(list(out), tensors, grad_outputs=grad_outputs, allow_unused=True)

    for i, (t, g) in enumerate(zip(tensors, analytic)):
        expected = np.zeros(t.shape) if g is None else g.numpy().astype(np.float64)
        numeric = np.zeros(t.shape)
        flat = t.data.reshape(-1) if t.data.flags.c_contiguous else None
        if flat is None:
            raise ValueError("gradcheck needs contiguous inputs")
        for k in range(flat.size):
            orig = flat[k].item()
            flat[k] = orig + eps
            plus = objective()
            flat[k] = orig - eps
            minus = objective()
            flat[k] = orig
            numeric.reshape(-1)[k] = (plus - minus) / (2 * eps)
        err = np.abs(expected - numeric) - (atol + rtol * np.abs(numeric))
        if err.size and err.max() > 0:
            k = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
            raise GradcheckError(
                f"gradcheck: gradient of input {i} (shape {t.shape}) differs at index {k}: "
                f"analytic {expected[k]:.8g}, numerical {numeric[k]:.8g} "
                f"(atol={atol}, rtol={rtol})")
    return True


def _as_tuple(out: Any) -> tuple[Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)
