"""Device names, the default device, and the two device errors.

What lives here: parsing "cpu" / "cuda" / "cuda:N" / "auto", the default device (set by
`set_default_device` or `TENSORGRAD_DEVICE`). Whether CUDA actually works is the CUDA backend's
question (backend/_cuda.py), asked only when a CUDA device is first used.
"""

from __future__ import annotations

import os
from contextvars import ContextVar

# Defined by backend/, the one place that knows why a device is unusable; backend/ imports
# nothing from this module at run time, so the dependency goes one way.
from .backend import DeviceUnavailableError, cuda_unusable_reason, get_backend

__all__ = ["Device", "DeviceMismatchError", "DeviceUnavailableError", "as_device",
           "get_default_device", "set_default_device"]


class DeviceMismatchError(RuntimeError):
    """An op was given tensors on different devices."""


class Device:
    """A device: type "cpu" or "cuda" and, for CUDA, an index."""

    __slots__ = ("type", "index")

    def __init__(self, spec: str | Device = "cpu") -> None:
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {spec!r}")
        name, _, index = spec.strip().lower().partition(":")
        if name == "auto":
            name = "cuda" if cuda_unusable_reason() is None else "cpu"
        if name not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {spec!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
        if name == "cpu":
            if index not in ("", "0"):
                raise ValueError(f"unknown device {spec!r}: the CPU has no index")
            self.type, self.index = "cpu", None
            return
        if index and not index.isdigit():
            raise ValueError(f"bad CUDA device index in {spec!r}; expected 'cuda:N' with N >= 0")
        self.type, self.index = "cuda", int(index) if index else 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except (ValueError, TypeError):
                return False
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type='{self.type}'" + ("" if self.index is None else
                                                f", index={self.index}") + ")"


_CPU = Device("cpu")
_default: ContextVar[Device | None] = ContextVar("tensorgrad_default_device", default=None)
_env_default: Device | None = None


def _from_env() -> Device:
    global _env_default
    if _env_default is None:
        spec = os.environ.get("TENSORGRAD_DEVICE", "cpu")
        try:
            _env_default = Device(spec)
        except (ValueError, TypeError) as err:
            raise ValueError(f"TENSORGRAD_DEVICE={spec!r} is not a device: {err}") from None
    return _env_default


def get_default_device() -> Device:
    """The device new tensors go to when none is named: "cpu" unless changed."""
    return _default.get() or _from_env()


def set_default_device(device: str | Device | None) -> None:
    """Set the device new tensors go to; None restores the TENSORGRAD_DEVICE/"cpu" default."""
    dev = None if device is None else Device(device)
    if dev is not None and dev.type == "cuda":
        get_backend(dev)  # fail now, with the reason, rather than at the first tensor
    _default.set(dev)


def as_device(device: str | Device | None) -> Device:
    """The Device for a `device=` argument; None means the default device."""
    if device is None:
        return get_default_device()
    if isinstance(device, Device):
        return device
    if device == "cpu":
        return _CPU
    return Device(device)
