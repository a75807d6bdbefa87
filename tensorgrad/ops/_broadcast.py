"""Shape helpers shared by the op families: reducing a broadcast gradient back to a shape,
and normalising `dim` arguments."""

from __future__ import annotations

from typing import Any

from .._tensor import Tensor


def sum_to(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum g over the axes that broadcasting added or stretched, so it has `shape` again."""
    if g._data.shape == shape:
        return g
    from .reduction import sum as _sum

    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    out = _sum(g, axes, keepdim=True) if axes else g
    return out.reshape(shape) if out.shape != shape else out


def normalize_dims(dim: Any, ndim: int, what: str) -> tuple[int, ...]:
    """`dim` (None, int or sequence, negatives allowed) as a sorted tuple of axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not isinstance(d, int) or isinstance(d, bool):
            raise TypeError(f"{what}: dim must be an int or a tuple of ints, got {dim!r}")
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"{what}: dim {d} is out of range for a tensor with {ndim} "
                             f"dimension(s)")
        out.append(d % max(ndim, 1) if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: dim {dim!r} names an axis twice")
    return tuple(sorted(out)) if ndim else ()


def normalize_dim(dim: int, ndim: int, what: str) -> int:
    """One axis, negatives allowed, checked against ndim."""
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{what}: dim must be an int, got {dim!r}")
    if not -ndim <= dim < ndim:  # ndim may be 1 for a 0-d tensor: say the range, not ndim
        raise IndexError(f"{what}: dim {dim} is out of range; expected one in "
                         f"[{-ndim}, {ndim - 1}]")
    return dim % ndim
