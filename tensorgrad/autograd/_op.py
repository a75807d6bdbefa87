"""The Op base class: an op's forward and backward, and the tape node it records.

An op instance *is* its node (and its `ctx`): it holds the parents it sends gradients to, which
inputs need a gradient, the arrays backward needs (with the versions they had when saved), a
sequence number for the backward order, and the backend. Nothing in this file knows any
particular op or device (NumPy is imported for its scalar type only: CPU reductions return
NumPy scalars, which become 0-d arrays here).
"""

from __future__ import annotations

import functools
import itertools
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from .._device import DeviceMismatchError
from .._tensor import Tensor
from ._grad_mode import anomaly_enabled, grad_enabled

# ctx.saved holds one entry per value given to save_for_backward, a tuple
# (kind, index, value, version, seen): an op's input or output `index` (its array, and the
# version counter of its Tensor with the count seen at saving), an intermediate array of the
# op, or a plain value. Tuples, not objects: a class instance cost about 0.25 us more per
# saved value, on every recorded op.
SAVED_INPUT, SAVED_OUTPUT, SAVED_ARRAY, SAVED_VALUE = "in", "out", "array", "value"

_seq = itertools.count()
_new = object.__new__
_wrap = Tensor._make

_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or to read saved tensors after they "
    "were freed): {op} already ran its backward and its saved arrays were freed. Pass "
    "retain_graph=True to the first backward() or tg.grad() call if you need to backward "
    "through the graph again.")


class Op:
    """Base of every recorded operation.

    Subclasses define `forward(ctx, *arrays, **params) -> array | tuple[array, ...]` on raw
    arrays of one device, and `backward(ctx, *grad_outputs) -> grad | tuple[grad, ...]` on
    Tensors (so that create_graph records it), one gradient or None per input, each of the
    input's shape. Inputs that are not Tensors (Python scalars) pass through to forward as
    they are and get no gradient.
    """

    __slots__ = ("parents", "parent_idx", "needs_input_grad", "saved", "seq", "backend",
                 "in_meta", "out_meta", "hooks", "trace", "__weakref__")

    # True when the output is a view of input 0: the two then share one version counter.
    is_view = False
    # True for ops whose output lives on another device (ctx.out_backend, set by forward).
    changes_device = False

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Any:
        """Gather the inputs (_gather), run forward on their arrays, and record the op where
        an input needs a gradient (_record). Running forward stays inline: this runs per op,
        and each further call here cost about 3% of a small op's time (benchmarks'
        op_chain)."""
        backend, arrays, needs, record = _gather(cls, inputs)
        ctx = _new(cls)
        ctx.backend = backend
        ctx.saved = ()
        # Forward may read needs_input_grad to save only what the needed gradients use.
        ctx.needs_input_grad = needs
        try:
            if backend.switch is None:
                out = cls.forward(ctx, *arrays, **params)
            else:
                with backend.switch():
                    out = cls.forward(ctx, *arrays, **params)
        except ValueError as err:
            if "broadcast" not in str(err):
                raise
            raise _broadcast_error(cls, arrays) from None
        if type(out) is tuple:
            out = tuple(_as_array(y) for y in out)
        elif type(out) is not np.ndarray:
            out = _scalar_as_array(ctx, out)
        out_backend = ctx.out_backend if cls.changes_device else backend
        if not record:
            ctx.saved = None
            if type(out) is not tuple:
                return _wrap(out, out_backend)
            return tuple(_wrap(y, out_backend) for y in out)
        return ctx._record(inputs, arrays, needs, out, out_backend)

    def _record(self, inputs: tuple[Any, ...], arrays: list[Any], needs: list[bool], out: Any,
                out_backend: Any) -> Any:
        """Make self the node of out's Tensors: parents, input shapes, sequence number, saved
        values matched to their Tensors, a shared version counter for a view."""
        if type(out) is not tuple:
            outs = (out,)
            tensors = (_wrap(out, out_backend, True, self, 0),)
            self.out_meta = None
        else:
            outs = out
            tensors = tuple(_wrap(y, out_backend, True, self, k) for k, y in enumerate(out))
            self.out_meta = tuple((y.shape, y.dtype) for y in out)
        # Plain loops, not comprehensions: before Python 3.12 each comprehension is a
        # function call, and this runs per op.
        parents = []
        parent_idx = []
        in_meta = []
        for x, need in zip(inputs, needs):
            if need:
                data = x._data
                in_meta.append((data.shape, data.dtype))
                node = x._grad_fn
                if node is None:
                    parents.append(x)
                    parent_idx.append(0)
                else:
                    parents.append(node)
                    parent_idx.append(x._out_idx)
            else:
                in_meta.append(None)
                parents.append(None)
                parent_idx.append(0)
        self.parents = parents
        self.parent_idx = parent_idx
        self.in_meta = in_meta
        self.seq = next(_seq)
        self.hooks = None
        if self.is_view and isinstance(inputs[0], Tensor):
            # One counter for the view and its base; its second entry says that a recorded
            # view shares this memory, so an in-place change of either side is refused.
            version = tensors[0]._version = inputs[0]._version
            if len(version) == 1:
                version.append(True)
        if self.saved:
            self.saved = _describe_saved(self.saved, inputs, arrays, outs, tensors,
                                         self.backend)
        if anomaly_enabled.get():
            self.trace = "".join(traceback.format_stack()[:-3])
            for k, y in enumerate(outs):
                _check_finite(self, y, f"forward output {k}")
        return tensors if type(out) is tuple else tensors[0]

    @property
    def xp(self) -> Any:
        """The array module of the op's device: numpy or cupy."""
        return self.backend.xp

    @property
    def kernels(self) -> Any:
        """The device's fused kernels (the same names on every backend)."""
        return self.backend.kernels

    def input_shape(self, i: int) -> tuple[int, ...]:
        """The shape input i had at forward (for an input that needs a gradient)."""
        return self.in_meta[i][0]

    def input_dtype(self, i: int) -> Any:
        """The array dtype input i had at forward (for an input that needs a gradient)."""
        return self.in_meta[i][1]

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep what backward needs (arrays, or other values), and nothing else."""
        self.saved = arrays

    @property
    def saved_tensors(self) -> tuple[Any, ...]:
        """The saved values as Tensors, checked against in-place changes since they were saved."""
        if self.saved is None:
            raise RuntimeError(_FREED_MESSAGE.format(op=self.name()))
        result = []
        for kind, index, value, version, seen in self.saved:
            if version is not None and version[0] != seen:
                what = "output" if kind is SAVED_OUTPUT else "input"
                raise RuntimeError(
                    f"one of the tensors needed for gradient computation was modified in place: "
                    f"{what} {index} saved by {self.name()} is at version {version[0]}, expected "
                    f"version {seen}. Change a .clone() of it instead of the tensor itself.")
            if kind is SAVED_OUTPUT:
                result.append(Tensor._make(value, self.backend, True, self, index, version))
            elif kind is SAVED_INPUT:
                parent = self.parents[index]
                if parent is None:
                    result.append(Tensor._make(value, self.backend, False, None, 0, version))
                elif isinstance(parent, Tensor):
                    result.append(parent)
                else:
                    result.append(Tensor._make(value, self.backend, True, parent,
                                               self.parent_idx[index], version))
            elif kind is SAVED_ARRAY:
                result.append(Tensor._make(value, self.backend))
            else:
                result.append(value)
        return tuple(result)

    def register_hook(self, index: int, fn: Any) -> Any:
        if self.hooks is None:
            self.hooks = []
        entry = (index, fn)
        self.hooks.append(entry)
        return _RemovableHandle(self.hooks, entry)

    @classmethod
    def name(cls) -> str:
        return f"{cls.__name__}Backward"

    def __repr__(self) -> str:
        return f"<{self.name()}>"

    def next_functions(self) -> tuple[Any, ...]:
        """(parent, output index) per input, as torch's grad_fn.next_functions."""
        return tuple(zip(self.parents, self.parent_idx))


class _RemovableHandle:
    """What register_hook returns: `.remove()` takes the hook off again."""

    __slots__ = ("_hooks", "_entry")

    def __init__(self, hooks: list[Any], entry: Any) -> None:
        self._hooks, self._entry = hooks, entry

    def remove(self) -> None:
        if self._entry in self._hooks:
            self._hooks.remove(self._entry)


def _gather(cls: type[Op], inputs: tuple[Any, ...]) -> tuple[Any, list[Any], list[bool], bool]:
    """The inputs' one backend, the arrays (and plain values) forward receives, which inputs
    need a gradient, and whether any does (nothing is recorded under no_grad)."""
    enabled = grad_enabled.get()
    backend = None
    record = False
    arrays = []
    needs = []
    for x in inputs:
        if isinstance(x, Tensor):
            if backend is None:
                backend = x._backend
            elif x._backend is not backend:
                raise DeviceMismatchError(
                    f"{cls.__name__}: expected all tensors on one device, got "
                    f"{backend.device} and {x._backend.device}; move one with .to(device)")
            arrays.append(x._data)
            if enabled and x._requires_grad:
                record = True
                needs.append(True)
            else:
                needs.append(False)
        else:
            arrays.append(x)
            needs.append(False)
    if backend is None:
        raise TypeError(f"{cls.__name__} needs at least one Tensor input")
    return backend, arrays, needs, record


def _broadcast_error(cls: type[Op], arrays: list[Any]) -> ValueError:
    """In place of NumPy's broadcast message, which neither names the op nor reads well."""
    shapes = " and ".join(str(a.shape) for a in arrays if hasattr(a, "shape"))
    return ValueError(f"{cls.__name__}: shapes {shapes} cannot be broadcast together")


def once_differentiable(backward: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a backward that works on raw arrays (of an Op or a user Function), as PyTorch's
    torch.autograd.function.once_differentiable. Its gradients are right, but they are not
    recorded in terms of the op's inputs; under create_graph=True they come back attached to a
    node that raises when they are differentiated again, instead of acting as constants and
    giving a silently wrong second derivative."""

    @functools.wraps(backward)
    def wrapper(ctx: Any, *grads: Any) -> Any:
        if not grad_enabled.get():
            return backward(ctx, *grads)
        token = grad_enabled.set(False)
        try:
            result = backward(ctx, *grads)
        finally:
            grad_enabled.reset(token)
        node = getattr(ctx, "_node", ctx)  # a user Function's ctx wraps its Op
        single = type(result) is not tuple
        marked = tuple(_NotDifferentiable.apply(Tensor._make(g._data, g._backend, True),
                                                op=node.name())
                       if isinstance(g, Tensor) else g
                       for g in ((result,) if single else result))
        return marked[0] if single else marked

    wrapper.once_differentiable = True  # type: ignore[attr-defined]
    return wrapper


class _NotDifferentiable(Op):
    """Holds a gradient that a once_differentiable backward computed under create_graph=True;
    differentiating through it raises, naming that op."""

    @staticmethod
    def forward(ctx: Op, g: Any, op: str) -> Any:
        ctx.op = op
        return g

    @staticmethod
    def backward(ctx: Op, gg: Tensor) -> Any:
        raise RuntimeError(
            f"{ctx.op}'s backward is once_differentiable (it works on raw arrays), so the "
            "gradient it computed cannot be differentiated again: a second derivative through "
            f"{ctx.op} is not supported.")


def _as_array(y: Any) -> Any:
    # NumPy reductions return NumPy scalars; every Tensor holds a real array.
    return np.asarray(y) if isinstance(y, np.generic) else y


def _scalar_as_array(ctx: Op, y: Any) -> Any:
    """_as_array(y) for a single output, also where forward saved y itself."""
    array = _as_array(y)
    if array is not y and ctx.saved:
        ctx.saved = tuple(array if v is y else v for v in ctx.saved)
    return array


_PLAIN = frozenset((type(None), bool, int, float))


def _describe_saved(saved: tuple[Any, ...], inputs: tuple[Any, ...], arrays: list[Any],
                    outs: tuple[Any, ...], tensors: tuple[Tensor, ...], backend: Any
                    ) -> tuple[Any, ...]:
    """Match each saved value to an input or output by identity and note its version, so an
    in-place change before backward is caught. Outputs are kept as arrays, not Tensors: a
    node holding its own output Tensor would make a reference cycle."""
    described = []
    for value in saved:
        if type(value) in _PLAIN:
            described.append((SAVED_VALUE, 0, value, None, 0))
            continue
        entry = None
        for k in range(len(outs)):
            if value is outs[k]:
                version = tensors[k]._version
                entry = (SAVED_OUTPUT, k, value, version, version[0])
                break
        else:
            for i in range(len(arrays)):
                if value is arrays[i] and isinstance(inputs[i], Tensor):
                    version = inputs[i]._version
                    entry = (SAVED_INPUT, i, value, version, version[0])
                    break
        if entry is None:
            entry = (SAVED_ARRAY if backend.is_array(value) else SAVED_VALUE, 0, value, None, 0)
        described.append(entry)
    return tuple(described)


def _check_finite(node: Op, array: Any, what: str) -> None:
    if getattr(array, "dtype", None) is None or array.dtype.kind != "f":
        return
    if not bool(node.xp.isfinite(array).all()):
        trace = getattr(node, "trace", None)  # unset where the forward ran outside the mode
        where = (f"The op was created at:\n{trace}" if trace is not None else
                 "Its creation trace was not recorded: the forward ran outside "
                 "detect_anomaly(); run the forward inside it too to see where the op was made.")
        raise FloatingPointError(f"{node.name()}: {what} contains NaN or Inf. {where}")
