"""What every backend shares: the Backend interface, the errors of device use and capture,
and the texts of those errors. A module of its own so that the backends import it, not the
package that picks and imports them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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
