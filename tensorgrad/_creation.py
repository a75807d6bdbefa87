"""Tensor creation: tensor, as_tensor, zeros/ones/empty/full, arange, linspace, eye, random
tensors, the *_like variants, from_numpy, from_dlpack, manual_seed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._device import Device, as_device
from ._dtype import as_dtype, float32, int64
from ._tensor import Tensor
from .backend import get_backend


def _shape(size: tuple[Any, ...]) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for n in size:
        if isinstance(n, (bool, float)) or not hasattr(n, "__index__"):
            raise TypeError(f"sizes must be integers, got {n!r} in {tuple(size)}")
    shape = tuple(int(n) for n in size)
    if any(n < 0 for n in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return shape


def _make(array_fn: Any, shape: tuple[int, ...], dtype: Any, device: Any,
          requires_grad: bool, default: Any = float32) -> Tensor:
    backend = get_backend(as_device(device))
    np_dtype = (default if dtype is None else as_dtype(dtype)).np
    if backend.switch is None:
        data = array_fn(backend, shape, np_dtype)
    else:
        with backend.switch():
            data = array_fn(backend, shape, np_dtype)
    t = Tensor._make(data, backend)
    return t.requires_grad_(True) if requires_grad else t


def tensor(data: Any, dtype: Any = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of data, as torch.tensor. Python floats become float32."""
    if isinstance(data, Tensor):
        data = data._data
    if isinstance(data, np.ndarray) or hasattr(data, "__cuda_array_interface__"):
        data = data.copy()
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """data as a tensor, copying only when needed, as torch.as_tensor: a Tensor of the asked
    dtype and device is returned as it is, and a NumPy array of a supported dtype shares its
    memory with the CPU tensor made from it."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype)
    return Tensor(data, dtype=dtype, device=device)


def zeros(*size: Any, dtype: Any = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    """A tensor of zeros, as torch.zeros."""
    return _make(lambda b, s, d: b.xp.zeros(s, d), _shape(size), dtype, device, requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of ones, as torch.ones."""
    return _make(lambda b, s, d: b.xp.ones(s, d), _shape(size), dtype, device, requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    """An uninitialised tensor, as torch.empty."""
    return _make(lambda b, s, d: b.xp.empty(s, d), _shape(size), dtype, device, requires_grad)


def full(size: Sequence[int], fill_value: Any, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor filled with fill_value; the dtype follows the value as in torch.full."""
    default = as_dtype(bool if isinstance(fill_value, bool) else
                       int if isinstance(fill_value, int) else float)
    _check_fits(fill_value, (default if dtype is None else as_dtype(dtype)).np, "full")
    return _make(lambda b, s, d: b.xp.full(s, fill_value, d), _shape((size,)), dtype,
                 device, requires_grad, default)


def _check_fits(value: Any, dtype: np.dtype, what: str) -> None:
    """A finite Python number beyond dtype's range raises, as in PyTorch, rather than becoming
    inf or a wrapped integer."""
    if type(value) not in (int, float) or dtype.kind not in "fiu" or (
            isinstance(value, float) and not np.isfinite(value)):
        return
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    number = float if dtype.kind == "f" else int
    low, high = number(info.min), number(info.max)
    if not low <= value <= high:
        raise ValueError(f"{what}: value {value!r} cannot be converted to {dtype.name} without "
                         f"overflow (its range is {low} to {high})")


def arange(start: float, end: float | None = None, step: float = 1, dtype: Any = None,
           device: Any = None, requires_grad: bool = False) -> Tensor:
    """Values from start to end (exclusive) by step, as torch.arange."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must not be zero")
    if (end - start) * step < 0:
        raise ValueError(f"arange: from {start} to {end} the step must be "
                         f"{'positive' if end > start else 'negative'}, got {step}")
    is_int = all(isinstance(v, int) for v in (start, end, step))
    default = int64 if is_int else float32
    n = max(int(np.ceil((end - start) / step)), 0)
    return _make(lambda b, s, d: (b.xp.arange(n, dtype=np.float64) * step + start).astype(d),
                 (n,), dtype, device, requires_grad, default)


def linspace(start: float, end: float, steps: int, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    """`steps` evenly spaced values from start to end inclusive, as torch.linspace."""
    return _make(lambda b, s, d: b.xp.linspace(start, end, steps).astype(d), (steps,), dtype,
                 device, requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = None, device: Any = None,
        requires_grad: bool = False) -> Tensor:
    """The identity matrix, as torch.eye."""
    return _make(lambda b, s, d: b.xp.eye(n, m, dtype=d), (n, n if m is None else m), dtype,
                 device, requires_grad)


def _random_float(method: str) -> Any:
    def fill(b: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        if np.dtype(dtype).kind != "f":
            raise TypeError(f"random floats need a floating dtype, got {np.dtype(dtype)}")
        draw_dtype = np.float64 if dtype == np.float64 else np.float32
        return getattr(b.random(), method)(shape, dtype=draw_dtype).astype(dtype, copy=False)
    return fill


def rand(*size: Any, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1), as torch.rand (seeded by tg.manual_seed)."""
    return _make(_random_float("random"), _shape(size), dtype, device, requires_grad)


def randn(*size: Any, dtype: Any = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal samples, as torch.randn (seeded by tg.manual_seed)."""
    return _make(_random_float("standard_normal"), _shape(size), dtype, device, requires_grad)


def randint(low: int, high: int | None = None, size: Sequence[int] = (), dtype: Any = None,
            device: Any = None) -> Tensor:
    """Integers in [low, high), as torch.randint (randint(high, size) also works)."""
    if high is None:
        low, high = 0, low
    elif isinstance(high, (tuple, list)) and size == ():  # randint(high, size)
        low, high, size = 0, low, high
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    return _make(lambda b, s, d: b.random().integers(low, high, size=s).astype(d),
                 _shape((size,)), dtype, device, False, int64)


def _like(fn: Any) -> Any:
    def like(x: Tensor, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
        return fn(x.shape, dtype=dtype or x.dtype, device=device or x.device,
                  requires_grad=requires_grad)

    like.__name__ = fn.__name__ + "_like"
    like.__doc__ = f"As {fn.__name__}, with x's shape, dtype and device unless given."
    return like


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)
rand_like = _like(rand)
randn_like = _like(randn)


def full_like(x: Tensor, fill_value: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    """A tensor of x's shape filled with fill_value."""
    return full(x.shape, fill_value, dtype=dtype or x.dtype, device=device or x.device,
                requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with a NumPy array, as torch.from_numpy."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a NumPy array, got {type(array).__name__}")
    return Tensor(array, device="cpu")


def from_dlpack(obj: Any) -> Tensor:
    """A tensor sharing memory with any DLPack-capable array (NumPy, CuPy, PyTorch)."""
    kind, index = obj.__dlpack_device__()
    if int(kind) == 1:  # kDLCPU
        return Tensor(np.from_dlpack(obj), device="cpu")
    backend = get_backend(Device(f"cuda:{index}"))
    return Tensor(backend.xp.from_dlpack(obj), device=backend.device)


def manual_seed(seed: int) -> None:
    """Seed the random generators of every device, as torch.manual_seed."""
    from ._capture import baked_state_changed
    from .cuda import device_count

    if isinstance(seed, (bool, float)) or not hasattr(seed, "__index__"):
        raise TypeError(f"manual_seed: the seed must be an integer, got {seed!r}")
    seed = int(seed) % 2**64  # a negative seed counts as its two's complement, as PyTorch

    get_backend(Device("cpu")).manual_seed(seed)
    for i in range(device_count()):
        get_backend(Device(f"cuda:{i}")).manual_seed(seed)
    baked_state_changed()  # new generators: captured steps drew from the old ones
