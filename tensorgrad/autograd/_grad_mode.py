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

    def __init__(self) -> None:
        self._tokens: list[Any] = []

    def __enter__(self) -> None:
        self._tokens.append(self._var.set(self._value))

    def __exit__(self, *exc: object) -> None:
        self._var.reset(self._tokens.pop())

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class no_grad(_Mode):
    """Run without recording ops, as torch.no_grad."""

    _var, _value = grad_enabled, False


class enable_grad(_Mode):
    """Record ops again inside a no_grad region, as torch.enable_grad."""

    _var, _value = grad_enabled, True


class detect_anomaly(_Mode):
    """Check every forward and backward output for NaN/Inf and name the op and where it was
    created. Records a traceback per op, so use it for debugging only."""

    _var, _value = anomaly_enabled, True
