"""tg.autograd.Function: user-defined ops with forward(ctx, ...) and backward(ctx, ...) on
Tensors, a thin adapter over Op (one machinery for built-in and user ops)."""

from __future__ import annotations

from typing import Any

from .._tensor import Tensor
from ._grad_mode import grad_enabled
from ._op import Op


class _FunctionOp(Op):
    """The node recorded for a user Function; `fn` is the user's class."""

    @staticmethod
    def forward(ctx: Op, *arrays: Any, fn: type[Function], tensor_mask: tuple[bool, ...]) -> Any:
        ctx.fn = fn
        ctx.user_ctx = FunctionCtx(ctx)
        args = [Tensor._make(a, ctx.backend) if is_t else a
                for a, is_t in zip(arrays, tensor_mask)]
        token = grad_enabled.set(False)
        try:
            out = fn.forward(ctx.user_ctx, *args)
        finally:
            grad_enabled.reset(token)
        if isinstance(out, tuple):
            return tuple(_array_of(o, fn) for o in out)
        return _array_of(out, fn)

    @staticmethod
    def backward(ctx: Op, *grads: Tensor) -> Any:
        result = ctx.fn.backward(ctx.user_ctx, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        return result

    def name(self) -> str:  # type: ignore[override]
        fn = getattr(self, "fn", None)
        return f"{fn.__name__}Backward" if fn is not None else "FunctionBackward"


def _array_of(out: Any, fn: type) -> Any:
    if not isinstance(out, Tensor):
        raise TypeError(f"{fn.__name__}.forward must return Tensors, got {type(out).__name__}")
    return out._data


class FunctionCtx:
    """The `ctx` a user Function sees: save_for_backward takes Tensors."""

    __slots__ = ("_node", "__dict__")

    def __init__(self, node: Op) -> None:
        self._node = node

    def save_for_backward(self, *tensors: Any) -> None:
        self._node.save_for_backward(*(t._data if isinstance(t, Tensor) else t
                                       for t in tensors))

    @property
    def saved_tensors(self) -> tuple[Any, ...]:
        return self._node.saved_tensors

    @property
    def needs_input_grad(self) -> tuple[bool, ...]:
        return self._node.needs_input_grad


class Function:
    """Subclass with static `forward(ctx, *args)` and `backward(ctx, *grad_outputs)` working
    on Tensors, then call `MyFunction.apply(*args)`, as torch.autograd.Function."""

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: FunctionCtx, *grad_outputs: Tensor) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any) -> Any:
        mask = tuple(isinstance(a, Tensor) for a in args)
        return _FunctionOp.apply(*args, fn=cls, tensor_mask=mask)
