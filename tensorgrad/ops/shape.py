"""Shape ops: reshape/view flatten transpose permute squeeze unsqueeze expand broadcast_to
cat stack split chunk pad. Each backward undoes its forward's rearrangement of the gradient."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._dtype import result_type
from .._tensor import Tensor
from ..autograd._op import Op
from ._broadcast import normalize_dim, normalize_dims, sum_to


def _shape_args(shape: tuple[Any, ...], what: str) -> tuple[int, ...]:
    """Sizes or dims given as separate ints or as one sequence; a float is refused rather than
    truncated (reshape(1.9, 4) is not reshape(1, 4))."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        return tuple(operator.index(n) for n in shape)
    except TypeError:
        raise TypeError(f"{what}: expected ints, got {shape!r}") from None


def _viewable(shape: tuple[int, ...], strides: tuple[int, ...], target: tuple[int, ...]
              ) -> bool:
    """Whether memory of `shape` and `strides` can be read as `target` without a copy, as
    PyTorch's view decides: the dims split into runs that are contiguous with each other, and
    the target's sizes must regroup into the same runs in order."""
    if math.prod(shape) == 0:
        return True
    runs: list[int] = []
    outer = None
    for n, stride in zip(shape, strides):
        if n == 1:  # a size-1 dim's stride never matters
            continue
        if runs and outer == stride * n:
            runs[-1] *= n
        else:
            runs.append(n)
        outer = stride
    sizes = [n for n in target if n != 1]
    i = 0
    for run in runs:
        total = 1
        while total < run and i < len(sizes):
            total *= sizes[i]
            i += 1
        if total != run:
            return False
    return i == len(sizes)


class Reshape(Op):
    """y = x with a new shape (a view when the memory allows); gx = gy reshaped back."""

    __slots__ = ()
    is_view = True

    @staticmethod
    def forward(ctx: Op, x: Any, shape: tuple[int, ...]) -> Any:
        return x.reshape(shape)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        return reshape(gy, ctx.input_shape(0))


class Permute(Op):
    """y = x with its axes reordered; gx = gy with the inverse order."""

    is_view = True

    @staticmethod
    def forward(ctx: Op, x: Any, dims: tuple[int, ...]) -> Any:
        ctx.dims = dims
        return ctx.xp.transpose(x, dims)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        return permute(gy, *np.argsort(ctx.dims).tolist())


class Expand(Op):
    """y = x broadcast to a larger shape (a read-only view); gx = gy summed back."""

    is_view = True

    @staticmethod
    def forward(ctx: Op, x: Any, shape: tuple[int, ...]) -> Any:
        return ctx.xp.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        return sum_to(gy, ctx.input_shape(0))


class Cat(Op):
    """y = the inputs joined along dim; each input's gradient is its slice of gy."""

    @staticmethod
    def forward(ctx: Op, *xs: Any, dim: int) -> Any:
        ctx.dim, ctx.sizes = dim, [x.shape[dim] for x in xs]
        return ctx.xp.concatenate(xs, axis=dim)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> tuple[Any, ...]:
        grads, start = [], 0
        for size, need in zip(ctx.sizes, ctx.needs_input_grad):
            index = (slice(None),) * ctx.dim + (slice(start, start + size),)
            grads.append(gy[index] if need else None)
            start += size
        return tuple(grads)


class Pad(Op):
    """y = x with constant padding; gx = the inner slice of gy."""

    @staticmethod
    def forward(ctx: Op, x: Any, widths: tuple[tuple[int, int], ...], value: float) -> Any:
        ctx.widths = widths
        return ctx.xp.pad(x, widths, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        index = tuple(slice(lo, gy.shape[i] - hi) for i, (lo, hi) in enumerate(ctx.widths))
        return gy[index]


def _target_shape(x: Tensor, shape: tuple[Any, ...], what: str) -> tuple[int, ...]:
    target = _shape_args(shape, what)
    size = x._data.size
    known = math.prod(n for n in target if n != -1)
    if target.count(-1) > 1 or any(n < -1 for n in target) or (
            -1 in target and (known == 0 or size % known)) or (-1 not in target and known != size):
        raise ValueError(f"cannot reshape a tensor of shape {x.shape} ({size} elements) into "
                         f"shape {target}")
    if -1 in target:
        target = tuple(size // known if n == -1 else n for n in target)
    return target


def reshape(x: Tensor, *shape: Any) -> Tensor:
    """The same elements in a new shape (one entry may be -1), as torch.reshape: a view when
    the memory allows, else a copy."""
    target = _target_shape(x, shape, "reshape")
    if target == x.shape:
        return x
    return Reshape.apply(x, shape=target)


def view(x: Tensor, *shape: Any) -> Tensor:
    """The same memory read in a new shape, as torch.Tensor.view; raises where that needs a
    copy (a transposed tensor, most strided slices), so writes through it always reach x."""
    target = _target_shape(x, shape, "view")
    if not _viewable(x.shape, x._data.strides, target):
        raise RuntimeError(f"view: a tensor of shape {x.shape} whose memory is not contiguous "
                           f"(strides {x._data.strides} in bytes) cannot be viewed as shape "
                           f"{target} without a copy; use .reshape(), which copies when needed")
    if target == x.shape:
        return x
    return Reshape.apply(x, shape=target)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims start_dim..end_dim into one, as torch.flatten."""
    if x.ndim == 0:
        normalize_dim(start_dim, 1, "flatten")  # a 0-d tensor takes dims -1 and 0, as PyTorch
        normalize_dim(end_dim, 1, "flatten")
        return reshape(x, 1)
    start = normalize_dim(start_dim, x.ndim, "flatten")
    end = normalize_dim(end_dim, x.ndim, "flatten")
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    # The merged size spelled out, not -1: with a 0 elsewhere in the shape, -1 is ambiguous
    merged = math.prod(x.shape[start:end + 1])
    return reshape(x, x.shape[:start] + (merged,) + x.shape[end + 1:])


def permute(x: Tensor, *dims: Any) -> Tensor:
    """Reorder the axes, as torch.permute."""
    order = _shape_args(dims, "permute")
    if sorted(normalize_dims(order, x.ndim, "permute")) != list(range(x.ndim)) or \
            len(order) != x.ndim:
        raise ValueError(f"permute: {order} is not an ordering of the {x.ndim} axes of a "
                         f"tensor of shape {x.shape}")
    order = tuple(d % x.ndim for d in order)
    if order == tuple(range(x.ndim)):
        return x
    return Permute.apply(x, dims=order)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two axes, as torch.transpose."""
    ndim = max(x.ndim, 1)  # 0-d and 1-d tensors take dims -1 and 0, as PyTorch
    a, b = normalize_dim(dim0, ndim, "transpose"), normalize_dim(dim1, ndim, "transpose")
    if x.ndim < 2:
        return x
    order = list(range(x.ndim))
    order[a], order[b] = order[b], order[a]
    return permute(x, *order)


def squeeze(x: Tensor, dim: Any = None) -> Tensor:
    """Drop axes of size 1 (all, or those in dim), as torch.squeeze."""
    dims = normalize_dims(dim, x.ndim, "squeeze")
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1)))


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    """Insert an axis of size 1 at dim, as torch.unsqueeze."""
    d = normalize_dim(dim, x.ndim + 1, "unsqueeze")
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


def expand(x: Tensor, *shape: Any) -> Tensor:
    """Broadcast to a larger shape (-1 keeps a size) without copying, as torch.expand."""
    target = _shape_args(shape, "expand")
    lead = len(target) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: cannot expand shape {x.shape} to fewer dims {target}")
    for i, n in enumerate(target):
        if n < -1 or (n == -1 and i < lead):
            raise ValueError(f"expand: size {n} at dim {i} of {target} is not allowed (-1 "
                             f"keeps one of the {x.ndim} existing sizes of shape {x.shape})")
    full = tuple(x.shape[i - lead] if n == -1 else n for i, n in enumerate(target))
    return broadcast_to(x, full)


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Broadcast to `shape` with NumPy's rules, as torch.broadcast_to."""
    shape = tuple(int(n) for n in shape)
    try:
        if np.broadcast_shapes(x.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"cannot broadcast a tensor of shape {x.shape} to shape {shape}"
                         ) from None
    if shape == x.shape:
        return x
    return Expand.apply(x, shape=shape)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing axis, as torch.cat."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat needs at least one tensor")
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"cat expects a sequence of Tensors, got a {type(t).__name__}")
        if t.ndim == 0:
            raise ValueError("cat: a 0-d tensor cannot be joined along a dim; use stack, or "
                             "reshape it to 1-d first")
    ndim = tensors[0].ndim
    d = normalize_dim(dim, max(ndim, 1), "cat")
    for t in tensors:
        if t.ndim != ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, tensors[0].shape))
                                 if i != d):
            shapes = ", ".join(str(t.shape) for t in tensors)
            raise ValueError(f"cat along dim {dim}: shapes {shapes} differ outside that dim")
    target = result_type(*tensors)
    tensors = [t if t._data.dtype == target.np else t.to(dtype=target) for t in tensors]
    return Cat.apply(*tensors, dim=d)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis, as torch.stack."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    if any(t.shape != tensors[0].shape for t in tensors):
        shapes = ", ".join(str(t.shape) for t in tensors)
        raise ValueError(f"stack needs tensors of one shape, got {shapes}")
    d = normalize_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([unsqueeze(t, d) for t in tensors], d)


def split(x: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    """Pieces of a given size (the last may be smaller) or of the listed sizes, as
    torch.split."""
    d = normalize_dim(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            raise ValueError(f"split: split size must be positive, got {step}")
        sizes = [min(step, n - i) for i in range(0, n, step)] or [0]
    else:
        sizes = list(_shape_args((split_size_or_sections,), "split"))
        if any(size < 0 for size in sizes):
            raise ValueError(f"split: section sizes must not be negative, got {sizes}")
        if sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} do not add up to the size {n} of dim {dim}")
    pieces, start = [], 0
    for size in sizes:
        pieces.append(x[(slice(None),) * d + (slice(start, start + size),)])
        start += size
    return tuple(pieces)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """Split into `chunks` pieces of equal size (the last may be smaller), as torch.chunk."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    d = normalize_dim(dim, x.ndim, "chunk")
    n = x.shape[d]
    if n == 0:  # as PyTorch: `chunks` empty pieces
        return split(x, [0] * chunks, d)
    return split(x, math.ceil(n / chunks), d)


def pad(x: Tensor, pad: Sequence[int], mode: str = "constant", value: float = 0.0) -> Tensor:
    """Constant padding in PyTorch's order: (left, right) of the last dim first, then the
    dim before it, as torch.nn.functional.pad."""
    if mode != "constant":
        raise NotImplementedError(f"pad: only mode='constant' is supported, got {mode!r}")
    pad = [int(p) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: expected pairs for at most {x.ndim} dims, got {pad}")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding {pad} is not supported")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return Pad.apply(x, widths=tuple(widths), value=value)
