"""Elementwise arithmetic with NumPy broadcasting and PyTorch's type promotion:
add sub mul div pow neg abs maximum minimum clamp where masked_fill, and the comparisons and
logical ops, which have no gradient.

Binary ops accept a Tensor and a Python (or NumPy) scalar in either order; the scalar goes to
forward as it is (a weak scalar in NumPy 2 and CuPy never up-casts a float32 array).
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from .._device import DeviceMismatchError
from .._dtype import DType, result_type
from .._tensor import Tensor
from ..autograd._op import Op
from ..backend import array_device
from ._broadcast import sum_to

_SCALARS = (int, float, bool, np.generic)
_HALF = np.dtype(np.float16)


def _operands(a: Any, b: Any) -> tuple[Any, Any]:
    """Both operands of a binary op, promoted to their common dtype. Scalars stay scalars
    (NumPy scalars become Python ones, so they promote as PyTorch's scalars do)."""
    # Fast paths for the common cases: same-dtype tensors, a float tensor and a Python number.
    if isinstance(a, Tensor):
        if isinstance(b, Tensor):
            if a._data.dtype == b._data.dtype:
                return a, b
        elif (type(b) is float and a._data.dtype.kind == "f") or (
                type(b) is int and a._data.dtype.kind in "fi"):
            return a, b
    elif isinstance(b, Tensor) and ((type(a) is float and b._data.dtype.kind == "f") or (
            type(a) is int and b._data.dtype.kind in "fi")):
        return a, b
    a, b = _as_operand(a, b), _as_operand(b, a)
    target = result_type(a, b)
    return _cast(a, target), _cast(b, target)


def _binary(op: type[Op], a: Any, b: Any) -> Tensor:
    """op (Mul or Div) on a and b promoted to their common dtype. A float16 tensor meets a
    Python scalar in float32, rounded once at the end, as in PyTorch: the scalar is never
    rounded to float16 first (x / 70000 would divide by inf). PyTorch's add and sub do round
    the scalar first; so do ours, by not coming here."""
    a, b = _operands(a, b)
    if isinstance(a, Tensor):
        if isinstance(b, Tensor) or a._data.dtype is not _HALF:
            return op.apply(a, b)
        return op.apply(a.to(dtype="float32"), b).to(dtype="float16")
    if b._data.dtype is not _HALF:
        return op.apply(a, b)
    return op.apply(a, b.to(dtype="float32")).to(dtype="float16")


def _as_operand(x: Any, other: Any) -> Any:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, _SCALARS):
        return x
    if not isinstance(other, Tensor):
        raise TypeError(f"expected a Tensor operand, got {type(x).__name__} and "
                        f"{type(other).__name__}")
    gpu = array_device(x)
    if gpu is not None and other.device != gpu:
        raise DeviceMismatchError(f"an array on {gpu} cannot be combined with a tensor on "
                                  f"{other.device}")
    return Tensor(x, device=other.device)


def _cast(x: Any, target: DType) -> Any:
    if isinstance(x, Tensor):
        return x if x._data.dtype == target.np else x.to(dtype=target)
    if target.is_floating_point:
        return float(x)
    return int(x) if target.name != "bool" else x


def _float_operands(a: Any, b: Any) -> tuple[Any, Any]:
    """Operands for true division: integers become the default float, as in PyTorch."""
    a, b = _operands(a, b)
    t = a if isinstance(a, Tensor) else b
    if t._data.dtype.kind != "f":
        a, b = _cast(a, result_type(1.0, t)), _cast(b, result_type(1.0, t))
    return a, b


class Add(Op):
    """z = a + b."""

    __slots__ = ()

    @staticmethod
    def forward(ctx: Op, a: Any, b: Any) -> Any:
        return a + b

    @staticmethod
    def backward(ctx: Op, gz: Tensor) -> tuple[Any, Any]:
        need_a, need_b = ctx.needs_input_grad
        return (sum_to(gz, ctx.input_shape(0)) if need_a else None,
                sum_to(gz, ctx.input_shape(1)) if need_b else None)


class Sub(Op):
    """z = a - b."""

    __slots__ = ()

    @staticmethod
    def forward(ctx: Op, a: Any, b: Any) -> Any:
        return a - b

    @staticmethod
    def backward(ctx: Op, gz: Tensor) -> tuple[Any, Any]:
        need_a, need_b = ctx.needs_input_grad
        return (sum_to(gz, ctx.input_shape(0)) if need_a else None,
                sum_to(-gz, ctx.input_shape(1)) if need_b else None)


class Mul(Op):
    """z = a * b."""

    __slots__ = ()

    @staticmethod
    def forward(ctx: Op, a: Any, b: Any) -> Any:
        need_a, need_b = ctx.needs_input_grad
        ctx.save_for_backward(a if need_b else None, b if need_a else None)
        return a * b

    @staticmethod
    def backward(ctx: Op, gz: Tensor) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        # gz and the saved inputs share the op's dtype: no promotion step needed.
        return (sum_to(Mul.apply(gz, b), ctx.input_shape(0)) if need_a else None,
                sum_to(Mul.apply(gz, a), ctx.input_shape(1)) if need_b else None)


class Div(Op):
    """z = a / b."""

    __slots__ = ()

    @staticmethod
    def forward(ctx: Op, a: Any, b: Any) -> Any:
        ctx.save_for_backward(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):  # x/0 is inf/nan, as in PyTorch
            return a / b

    @staticmethod
    def backward(ctx: Op, gz: Tensor) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = sum_to(gz / b, ctx.input_shape(0)) if need_a else None
        gb = sum_to(-gz * a / (b * b), ctx.input_shape(1)) if need_b else None
        return ga, gb


class Pow(Op):
    """z = a ** b. As PyTorch: d/da is 0 where b = 0 (not 0 * a**-1, NaN at a = 0), and d/db is
    0 where a = 0 and b >= 0 (not z * log 0); d/db is NaN for a negative base."""

    @staticmethod
    def forward(ctx: Op, a: Any, b: Any) -> Any:
        if getattr(b, "dtype", np.dtype(float)).kind in "iu":  # an integer exponent tensor
            z = _integer_pow(ctx.xp, a, b)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                z = a ** b
        ctx.save_for_backward(a, b, z)
        return z

    @staticmethod
    def backward(ctx: Op, gz: Tensor) -> tuple[Any, Any]:
        a, b, z = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = gb = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if need_a:
                # b * a**(b-1) rather than b * z / a, which is 0/0 at a = 0.
                if isinstance(b, Tensor):
                    ga = where(b == 0, 0.0, gz * b * a ** (b - 1))
                else:
                    ga = gz * 0.0 if b == 0 else gz * b * a ** (b - 1)
                ga = sum_to(ga, ctx.input_shape(0))
            if need_b:  # so b is a Tensor
                if isinstance(a, Tensor):
                    gb = where((a == 0) & (b >= 0), 0.0, gz * z * _math.log(a))
                elif a == 0:
                    gb = where(b >= 0, 0.0, gz * z * -np.inf)
                else:  # NaN for a negative base
                    gb = gz * z * builtins.float(np.log(a))
                gb = sum_to(gb, ctx.input_shape(1))
        return ga, gb


def _integer_pow(xp: Any, a: Any, b: Any) -> Any:
    """a ** b for integers, with PyTorch's results for negative exponents (NumPy raises):
    1 for a base of 1, +-1 for -1 by the parity of b, and 0 for any other base."""
    negative = b < 0
    z = a ** xp.where(negative, 0, b)
    if not negative.any():
        return z
    sign = xp.where(b % 2 == 0, 1, -1)
    return xp.where(negative, xp.where(a == 1, 1, xp.where(a == -1, sign, 0)), z).astype(z.dtype)


class Remainder(Op):
    """z = a - b * floor(a / b), with the sign of b, as torch.remainder: dz/da = 1 and
    dz/db = -floor(a / b), away from the jumps where a / b is an integer."""

    @staticmethod
    def forward(ctx: Op, a: Any, b: Any) -> Any:
        if ctx.needs_input_grad[1]:
            ctx.save_for_backward(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            return ctx.xp.remainder(a, b)

    @staticmethod
    def backward(ctx: Op, gz: Tensor) -> tuple[Any, Any]:
        need_a, need_b = ctx.needs_input_grad
        ga = sum_to(gz, ctx.input_shape(0)) if need_a else None
        gb = None
        if need_b:
            a, b = ctx.saved_tensors
            gb = sum_to(-gz * floor_divide(a, b), ctx.input_shape(1))
        return ga, gb


class Neg(Op):
    """y = -x."""

    __slots__ = ()

    @staticmethod
    def forward(ctx: Op, x: Any) -> Any:
        return -x

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        return -gy


class Abs(Op):
    """y = |x|, with the gradient 0 at the kink x = 0 (sign(0) = 0) and at NaN, as PyTorch."""

    @staticmethod
    def forward(ctx: Op, x: Any) -> Any:
        ctx.save_for_backward(x)
        return ctx.xp.abs(x)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return gy * Tensor._make(ctx.xp.nan_to_num(ctx.xp.sign(x._data), nan=0.0), ctx.backend)


class Maximum(Op):
    """z = max(a, b) elementwise; at ties each input gets half the gradient, as PyTorch."""

    @staticmethod
    def forward(ctx: Op, a: Any, b: Any) -> Any:
        ctx.save_for_backward(a, b)
        return ctx.xp.maximum(a, b)

    @staticmethod
    def backward(ctx: Op, gz: Tensor) -> tuple[Any, Any]:
        return _split_by_winner(ctx, gz, ctx.xp.greater)


class Minimum(Op):
    """z = min(a, b) elementwise; at ties each input gets half the gradient, as PyTorch."""

    @staticmethod
    def forward(ctx: Op, a: Any, b: Any) -> Any:
        ctx.save_for_backward(a, b)
        return ctx.xp.minimum(a, b)

    @staticmethod
    def backward(ctx: Op, gz: Tensor) -> tuple[Any, Any]:
        return _split_by_winner(ctx, gz, ctx.xp.less)


def _split_by_winner(ctx: Op, gz: Tensor, wins: Any) -> tuple[Any, Any]:
    a, b = (x._data if isinstance(x, Tensor) else x for x in ctx.saved_tensors)
    dtype = gz._data.dtype
    share_a = wins(a, b).astype(dtype) + (a == b).astype(dtype) * 0.5
    share_a = Tensor._make(ctx.xp.asarray(share_a, dtype=dtype), ctx.backend)
    need_a, need_b = ctx.needs_input_grad
    return (sum_to(gz * share_a, ctx.input_shape(0)) if need_a else None,
            sum_to(gz * (1.0 - share_a), ctx.input_shape(1)) if need_b else None)


class Clamp(Op):
    """y = min(max(x, lo), hi); the gradient passes where lo <= x <= hi, as PyTorch."""

    @staticmethod
    def forward(ctx: Op, x: Any, lo: Any, hi: Any) -> Any:
        ctx.save_for_backward(x)
        ctx.bounds = (lo, hi)
        return ctx.xp.clip(x, lo, hi)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> tuple[Any, None, None]:
        (x,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        inside = ctx.xp.ones(x.shape, dtype=bool)
        if lo is not None:
            inside &= x._data >= lo
        if hi is not None:
            inside &= x._data <= hi
        return where(Tensor._make(inside, ctx.backend), gy, 0.0), None, None


class Where(Op):
    """z = a where cond else b. The unselected branch gets gradient 0, but its own backward
    still runs: for where(x > 0, log(x), 0) use the double-where idiom
    where(x > 0, log(where(x > 0, x, 1)), 0) so that log never sees x <= 0."""

    @staticmethod
    def forward(ctx: Op, cond: Any, a: Any, b: Any) -> Any:
        ctx.save_for_backward(cond)
        z = ctx.xp.where(cond, a, b)
        dtype = a.dtype if hasattr(a, "dtype") else b.dtype
        return z if z.dtype == dtype else z.astype(dtype)

    @staticmethod
    def backward(ctx: Op, gz: Tensor) -> tuple[None, Any, Any]:
        (cond,) = ctx.saved_tensors
        _, need_a, need_b = ctx.needs_input_grad
        return (None,
                sum_to(where(cond, gz, 0.0), ctx.input_shape(1)) if need_a else None,
                sum_to(where(cond, 0.0, gz), ctx.input_shape(2)) if need_b else None)


def add(a: Any, b: Any) -> Tensor:
    """a + b with broadcasting, as torch.add."""
    a, b = _operands(a, b)
    return Add.apply(a, b)


def sub(a: Any, b: Any) -> Tensor:
    """a - b with broadcasting, as torch.sub."""
    a, b = _operands(a, b)
    return Sub.apply(a, b)


def mul(a: Any, b: Any) -> Tensor:
    """a * b with broadcasting, as torch.mul."""
    return _binary(Mul, a, b)


def div(a: Any, b: Any) -> Tensor:
    """a / b (true division; integers give float32), as torch.div."""
    return _binary(Div, *_float_operands(a, b))


def pow(a: Any, b: Any) -> Tensor:
    """a ** b, as torch.pow."""
    a, b = _operands(a, b)
    return Pow.apply(a, b)


def neg(x: Tensor) -> Tensor:
    """-x, as torch.neg."""
    return Neg.apply(x)


def abs(x: Tensor) -> Tensor:
    """|x|, as torch.abs (gradient 0 at 0)."""
    return Abs.apply(x)


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum, as torch.maximum."""
    a, b = _operands(a, b)
    return Maximum.apply(a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum, as torch.minimum."""
    a, b = _operands(a, b)
    return Minimum.apply(a, b)


def clamp(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """Limit x to [min, max], as torch.clamp; either bound may be None."""
    if min is None and max is None:
        raise ValueError("clamp needs at least one of min and max")
    if any(isinstance(b, Tensor) and b.numel() != 1 for b in (min, max)):  # elementwise bounds
        out = x if min is None else maximum(x, min)
        return out if max is None else minimum(out, max)
    if x._data.dtype.kind != "f" and any(isinstance(b, builtins.float) for b in (min, max)):
        x = x.to(dtype=result_type(x, 1.0))  # an integer tensor with float bounds: float32
    lo = None if min is None else builtins.float(min) if x._data.dtype.kind == "f" else min
    hi = None if max is None else builtins.float(max) if x._data.dtype.kind == "f" else max
    return Clamp.apply(x, lo, hi)


clip = clamp


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """a where condition is true, else b, as torch.where."""
    cond = condition if isinstance(condition, Tensor) else None
    a, b = _operands(a, b)
    if cond is None:
        ref = a if isinstance(a, Tensor) else b
        cond = Tensor(condition, device=ref.device)
    if cond._data.dtype != np.bool_:
        raise TypeError(f"where: condition must be a bool tensor, got {cond.dtype.name}")
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = Tensor._make(cond._backend.xp.asarray(a, dtype=result_type(a, b).np),
                         cond._backend)
    return Where.apply(cond, a, b)


def masked_fill(x: Tensor, mask: Tensor, value: float) -> Tensor:
    """x with `value` where mask is true, as torch.Tensor.masked_fill."""
    return where(mask, _cast(value, x.dtype), x)


def _no_grad_binary(a: Any, b: Any, ufunc: str) -> Tensor:
    a, b = _operands(a, b)
    ref = a if isinstance(a, Tensor) else b
    xa = a._data if isinstance(a, Tensor) else a
    xb = b._data if isinstance(b, Tensor) else b
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a._backend is not b._backend:
        raise DeviceMismatchError(f"{ufunc}: tensors on {a.device} and {b.device}")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = getattr(ref._backend.xp, ufunc)(xa, xb)
    return Tensor._make(ref._backend.xp.asarray(out), ref._backend)


def eq(a: Any, b: Any) -> Tensor:
    """a == b elementwise (no gradient)."""
    return _no_grad_binary(a, b, "equal")


def ne(a: Any, b: Any) -> Tensor:
    """a != b elementwise (no gradient)."""
    return _no_grad_binary(a, b, "not_equal")


def lt(a: Any, b: Any) -> Tensor:
    """a < b elementwise (no gradient)."""
    return _no_grad_binary(a, b, "less")


def le(a: Any, b: Any) -> Tensor:
    """a <= b elementwise (no gradient)."""
    return _no_grad_binary(a, b, "less_equal")


def gt(a: Any, b: Any) -> Tensor:
    """a > b elementwise (no gradient)."""
    return _no_grad_binary(a, b, "greater")


def ge(a: Any, b: Any) -> Tensor:
    """a >= b elementwise (no gradient)."""
    return _no_grad_binary(a, b, "greater_equal")


def floor_divide(a: Any, b: Any) -> Tensor:
    """a // b elementwise (no gradient), as torch.floor_divide."""
    a, b = _operands(a, b)
    _check_integer_divisor(a, b, "floor_divide")
    return _no_grad_binary(a, b, "floor_divide")


def _check_integer_divisor(a: Any, b: Any, what: str) -> None:
    """Integer division by zero raises, as in PyTorch (NumPy would give 0)."""
    t = a if isinstance(a, Tensor) else b
    if t._data.dtype.kind not in "iu":
        return
    if not isinstance(b, Tensor):
        if b == 0:
            raise ZeroDivisionError(f"{what}: integer division by zero")
        return
    d = b._data
    b._backend.check(lambda: d != 0, lambda: ZeroDivisionError(
        f"{what}: integer division by zero"))


def remainder(a: Any, b: Any) -> Tensor:
    """a % b elementwise with the sign of b, as torch.remainder."""
    a, b = _operands(a, b)
    _check_integer_divisor(a, b, "remainder")
    return Remainder.apply(a, b)


def logical_and(a: Any, b: Any) -> Tensor:
    """Whether both are nonzero, elementwise, as torch.logical_and."""
    return _no_grad_binary(a, b, "logical_and")


def logical_or(a: Any, b: Any) -> Tensor:
    """Whether either is nonzero, elementwise, as torch.logical_or."""
    return _no_grad_binary(a, b, "logical_or")


def logical_not(x: Tensor) -> Tensor:
    """Whether x is zero, elementwise, as torch.logical_not."""
    return Tensor._make(x._backend.xp.logical_not(x._data), x._backend)


def _check_bitwise(t: Tensor, what: str) -> None:
    if t._data.dtype.kind not in "biu":
        raise TypeError(f"{what} needs integer or bool tensors, got {t.dtype.name}; for "
                        "floating-point values compare them, or use logical_and/or/not")


def _bitwise(a: Any, b: Any, ufunc: str, what: str) -> Tensor:
    a, b = _operands(a, b)
    _check_bitwise(a if isinstance(a, Tensor) else b, what)
    return _no_grad_binary(a, b, ufunc)


def bitwise_and(a: Any, b: Any) -> Tensor:
    """a & b: bitwise on integers, logical on bools, as torch.bitwise_and."""
    return _bitwise(a, b, "bitwise_and", "bitwise_and (&)")


def bitwise_or(a: Any, b: Any) -> Tensor:
    """a | b: bitwise on integers, logical on bools, as torch.bitwise_or."""
    return _bitwise(a, b, "bitwise_or", "bitwise_or (|)")


def bitwise_xor(a: Any, b: Any) -> Tensor:
    """a ^ b: bitwise on integers, logical on bools, as torch.bitwise_xor."""
    return _bitwise(a, b, "bitwise_xor", "bitwise_xor (^)")


def bitwise_not(x: Tensor) -> Tensor:
    """~x: bitwise on integers (~3 = -4), logical on bools, as torch.bitwise_not."""
    _check_bitwise(x, "bitwise_not (~)")
    return Tensor._make(x._backend.xp.invert(x._data), x._backend)


from . import math as _math  # noqa: E402  (math's ops use this module's functions too)
