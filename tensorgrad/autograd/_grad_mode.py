"""Grad mode and anomaly mode, each on a ContextVar so threads and async tasks keep their own."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

grad_enabled: ContextVar[bool] = ContextVar("tensorgrad_grad_enabled", default=True)
anomaly_enabled: ContextVar[bool] = ContextVar("tensorgrad_anomaly", default=False)


def is_grad_enabled() -> bool:
    """Whether ops are recorded on the tape now."""
    return grad_enabled.get()


class _Mode:
    """A context manager and decorator that sets a ContextVar and restores it on exit."""

    _var: ContextVar[bool]
    _value: bool

    def __new__(cls, *args: Any) -> Any:
        if len(args) == 1 and callable(args[0]):  # @tg.no_grad without (), as PyTorch allows
            return cls()(args[0])
        return super().__new__(cls)

    def __init__(self) -> None:
        self._tokens: list[Any] = []

    def __enter__(self) -> None:
        self._tokens.append(self._var.set(self._value))

    def __exit__(self, *exc: object) -> None:
        self._var.reset(self._tokens.pop())

    def _fresh(self) -> _Mode:
        """A new instance of the same mode, so a decorated function may be reentered."""
        return type(self)()

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class no_grad(_Mode):
    """Run without recording ops, as torch.no_grad."""

    _var, _value = grad_enabled, False


class enable_grad(_Mode):
    """Record ops again inside a no_grad region, as torch.enable_grad."""

    _var, _value = grad_enabled, True


class inference_mode(_Mode):
    """As torch.inference_mode: no recording (the same as no_grad here: tensorgrad has no
    separate inference tensors, so the results may later be used with autograd).
    inference_mode(False) changes nothing."""

    _var = grad_enabled

    def __init__(self, mode: bool = True) -> None:
        super().__init__()
        self._mode = mode

    def __enter__(self) -> None:
        self._tokens.append(grad_enabled.set(False if self._mode else grad_enabled.get()))

    def _fresh(self) -> _Mode:
        return inference_mode(self._mode)


class set_grad_enabled(_Mode):
    """As torch.set_grad_enabled(mode): switches recording on or off at once when called
    (`tg.set_grad_enabled(False)` as a statement), and as a context manager or decorator
    restores the previous mode on exit."""

    def __init__(self, mode: bool) -> None:
        if not isinstance(mode, bool):
            raise TypeError(f"set_grad_enabled takes a bool, got {mode!r}")
        super().__init__()
        self._value = mode
        self._before = grad_enabled.get()
        grad_enabled.set(mode)

    def __enter__(self) -> None:
        grad_enabled.set(self._value)

    def __exit__(self, *exc: object) -> None:
        grad_enabled.set(self._before)

    def __call__(self, fn: F) -> F:
        grad_enabled.set(self._before)  # as a decorator, only calls of fn switch the mode
        return super().__call__(fn)

    def _fresh(self) -> _Mode:
        return enable_grad() if self._value else no_grad()


class detect_anomaly(_Mode):
    """Check every forward and backward output for NaN/Inf and name the op and where it was
    created. Records a traceback per op, so use it for debugging only."""

    _var, _value = anomaly_enabled, True
