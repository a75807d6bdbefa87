"""Backends: one object per device that tells ops which array module and kernels to use.

`get_backend(device)` is the only way ops reach NumPy or CuPy; only this package imports CuPy,
and only when a CUDA device is first asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # _device imports this package (to resolve "auto"), never the reverse
    from .._device import Device


class DeviceUnavailableError(RuntimeError):
    """The requested device cannot be used here; the message says why and how to fall back."""


class CaptureError(RuntimeError):
    """An operation that a captured step cannot repeat (a read of values on the host, an
    output whose size depends on the data) was attempted while capturing, on any device."""


def capture_read_message(what: str) -> str:
    """CaptureError's text for a host read inside a capture; `what` names the operation."""
    return (f"{what} reads a tensor's values on the host, which a captured step cannot repeat "
            "(on CUDA it would also wait for the GPU). Return the tensor from the captured "
            "function and read it after the call (for example loss.item() outside).")


def capture_copy_message(shape: tuple[int, ...]) -> str:
    """CaptureError's text for host data copied into a tensor inside a capture."""
    return (f"copying host data of shape {shape} into a tensor cannot be captured (a CUDA "
            "graph would re-read a reused staging buffer); create the tensor (or index list) "
            "before the capture and pass it in, and run one eager step first so optimizer "
            "state exists")


class Backend:
    """What an op needs to know about a device: its array module and its kernels.

    `switch` is None where ops need not make the device current first (the CPU, a machine
    with one GPU); else a callable returning a context manager that does.
    """

    __slots__ = ("device", "xp", "kernels", "switch", "capturing")

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        """Host data or an array (of any device) as an array on this device."""
        raise NotImplementedError

    def to_numpy(self, array: Any, what: str = ".numpy()") -> Any:
        """The array's values on the host; `what` names the user's operation in errors."""
        raise NotImplementedError

    def synchronize(self) -> None:
        pass

    def is_array(self, value: Any) -> bool:
        """Whether value is an array of this backend's kind (NumPy's or CuPy's ndarray)."""
        raise NotImplementedError

    def check(self, ok: Callable[[], Any], error: Callable[[], Exception]) -> None:
        """Raise error() unless every element of the bool array ok() is True: a check of
        values (indices in range, probabilities in [0, 1]) that the CPU makes at little cost.
        CUDA skips it, as reading the answer would wait for the GPU on every call (and no
        host read may happen in a captured graph); the op's result then says NaN or wraps.
        """
        raise NotImplementedError

    def matmul(self, a: Any, b: Any) -> Any:
        return self.xp.matmul(a, b)

    def scatter_add(self, target: Any, index: Any, values: Any) -> None:
        """target[index] += values, adding once per occurrence of a repeated index."""
        raise NotImplementedError

    def manual_seed(self, seed: int) -> None:
        raise NotImplementedError

    def random(self) -> Any:
        """This device's random generator (NumPy's or CuPy's Generator API)."""
        raise NotImplementedError

    def new_graph(self) -> Any:
        """An empty graph of this device: `with graph.capture():` records the work of the
        block, `graph.replay()` runs it again, `graph.pool_bytes()` is the memory it holds.
        `graph.runs_when_captured` says whether recording also ran the work once (the CPU
        must, to learn the shapes; CUDA records without running); `graph.reads_through`
        is None, or the pair (trace, untrace) that tensors' arrays must pass through while
        recording, so that every operation on them is seen."""
        raise NotImplementedError


def array_device(data: Any) -> str | None:
    """The GPU an existing array lives on, as "cuda:N" (CuPy's, PyTorch's, any library's
    with __cuda_array_interface__), or None for host data (NumPy arrays, lists, scalars)."""
    if hasattr(data, "__cuda_array_interface__"):
        _, index = data.__dlpack_device__()  # CuPy, PyTorch and others all answer this
        return f"cuda:{index}"
    return None


@functools.cache
def cuda_unusable_reason() -> str | None:
    """Why CUDA cannot be used here, or None when it can."""
    from ._cuda import probe

    return probe()


@functools.cache
def get_backend(device: Device) -> Backend:
    if device.type == "cpu":
        from ._cpu import CpuBackend

        return CpuBackend(device)
    reason = cuda_unusable_reason()
    if reason is not None:
        raise DeviceUnavailableError(
            f"CUDA device {device} is not usable: {reason}. "
            "Use device='cpu', or device='auto' to fall back to the CPU when CUDA is unusable.")
    from ._cuda import CudaBackend

    return CudaBackend(device)
