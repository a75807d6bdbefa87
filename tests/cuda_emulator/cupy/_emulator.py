"""The emulator's own state and its public helpers: the device count, the launch counters, the
memory that stands for device allocations, and the record of work captured into a graph.

Everything CuPy-shaped (ndarray, streams, pools) is built on this module; nothing here mimics
a CuPy name. `counting()` is the helper the benchmarks use:

    with cupy._emulator.counting() as counts:
        step()
    counts.launches, counts.gemms, counts.bytes
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

DEVICE_NAME = "tensorgrad CUDA emulator (host)"
# More than one emulated GPU for multi-device tests: CUPY_EMULATOR_DEVICE_COUNT=2.
DEVICE_COUNT = int(os.environ.get("CUPY_EMULATOR_DEVICE_COUNT", "1"))
_ALIGN = 512  # CuPy's pool rounds every allocation up to a multiple of 512 bytes


class CUDARuntimeError(RuntimeError):
    """As cupy_backends.cuda.api.runtime.CUDARuntimeError: 'name: message' with .status."""

    _ERRORS = {
        101: ("cudaErrorInvalidDevice", "invalid device ordinal"),
        400: ("cudaErrorInvalidResourceHandle", "invalid resource handle"),
        700: ("cudaErrorIllegalAddress", "an illegal memory access was encountered"),
        900: ("cudaErrorStreamCaptureUnsupported",
              "operation not permitted when stream is capturing"),
        901: ("cudaErrorStreamCaptureInvalidated",
              "operation failed due to a previous error during capture"),
        905: ("cudaErrorStreamCaptureUnjoined",
              "capture was not ended on the stream it began"),
    }

    def __init__(self, status: int) -> None:
        self.status = status
        name, message = self._ERRORS.get(status, ("cudaErrorUnknown", "unknown error"))
        super().__init__(f"{name}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status,))


# ---------------------------------------------------------------------------------------------
# Counters

@dataclasses.dataclass
class Counts:
    """Work done on the emulated device in a block: kernel launches (elementwise kernels,
    ufuncs, reductions, copies and fills, random draws, GEMMs), GEMM calls among them, graph
    launches, bytes read + written by all launches, and host<->device copies."""

    launches: int = 0
    gemms: int = 0
    graph_launches: int = 0
    bytes: int = 0
    host_copies: int = 0
    by_name: dict[str, int] = dataclasses.field(default_factory=dict)


_counters: list[Counts] = []


@contextlib.contextmanager
def counting() -> Iterator[Counts]:
    """Count what the block launches (work replayed from a graph counts as it runs)."""
    counts = Counts()
    _counters.append(counts)
    try:
        yield counts
    finally:
        _counters.remove(counts)


def count_launch(name: str, nbytes: int, gemm: bool = False) -> None:
    for counts in _counters:
        counts.launches += 1
        counts.gemms += gemm
        counts.bytes += nbytes
        counts.by_name[name] = counts.by_name.get(name, 0) + 1


def count_host_copy(nbytes: int) -> None:
    for counts in _counters:
        counts.host_copies += 1
        counts.bytes += nbytes


def count_graph_launch() -> None:
    for counts in _counters:
        counts.graph_launches += 1


# ---------------------------------------------------------------------------------------------
# Memory: each device allocation is a host byte array; the registry maps addresses back to
# allocations, for cuBLAS's bounds checks and for foreign __cuda_array_interface__ pointers.

class Memory:
    """One allocation: `host` holds its bytes, `ptr` its address. `capture` is the Capture it
    was allocated during (None for memory that existed before), so captured work knows which
    writes it must not perform while recording."""

    __slots__ = ("host", "ptr", "size", "requested", "device_id", "capture", "_release",
                 "__weakref__")

    def __init__(self, host: np.ndarray, size: int, device_id: int,
                 release: Callable[[np.ndarray], None] | None, requested: int = -1) -> None:
        self.host = host
        self.size = size
        self.requested = size if requested < 0 else requested  # bytes asked for, unrounded
        self.ptr = host.__array_interface__["data"][0] if size else 0
        self.device_id = device_id
        capture = current_capture()
        self.capture = capture
        if capture is not None:
            capture.allocations.append(weakref.ref(self))
        self._release = release
        if size:
            _registry.add(self)
            weakref.finalize(self, _registry.remove, self.ptr)
            if release is not None:
                weakref.finalize(self, release, host)


class _Registry:
    def __init__(self) -> None:
        self._starts: list[int] = []
        self._mems: dict[int, weakref.ref[Memory]] = {}
        self._lock = threading.Lock()

    def add(self, mem: Memory) -> None:
        with self._lock:
            bisect.insort(self._starts, mem.ptr)
            self._mems[mem.ptr] = weakref.ref(mem)

    def remove(self, ptr: int) -> None:
        with self._lock:
            i = bisect.bisect_left(self._starts, ptr)
            if i < len(self._starts) and self._starts[i] == ptr:
                del self._starts[i]
                self._mems.pop(ptr, None)

    def find(self, ptr: int) -> Memory | None:
        """The live allocation that holds address ptr, or None."""
        with self._lock:
            i = bisect.bisect_right(self._starts, ptr) - 1
            if i < 0:
                return None
            mem = self._mems[self._starts[i]]()
        if mem is None or not mem.ptr <= ptr < mem.ptr + mem.size:
            return None
        return mem


_registry = _Registry()
find_allocation = _registry.find


def round_size(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


# ---------------------------------------------------------------------------------------------
# Capture: work issued on a capturing stream is recorded here instead of running.

class Capture:
    """What a stream records between begin_capture and end_capture: the launches, in order,
    and the allocations made meanwhile (poisoned when the capture ends, as a real graph's
    memory holds garbage until the graph first runs)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.work: list[tuple[str, int, bool, Callable[[], None]]] = []
        self.allocations: list[weakref.ref[Memory]] = []
        self.invalidated = False

    def record(self, name: str, nbytes: int, run: Callable[[], None],
               gemm: bool = False) -> None:
        self.work.append((name, nbytes, gemm, run))

    def fail(self) -> CUDARuntimeError:
        """A forbidden operation: the capture is invalidated, as CUDA does."""
        self.invalidated = True
        return CUDARuntimeError(900)

    def poison(self) -> None:
        for ref in self.allocations:
            mem = ref()
            if mem is not None and mem.size:
                mem.host.fill(0xFF)  # NaN in every float width, -1 in every integer width


_state = threading.local()


def current_stream_of(device_id: int) -> Any:
    streams = getattr(_state, "streams", None)
    if streams is None:
        streams = _state.streams = {}
    stream = streams.get(device_id)
    if stream is None:
        from .cuda import Stream

        stream = Stream.null
    return stream


def set_current_stream(device_id: int, stream: Any) -> None:
    current_stream_of(device_id)
    _state.streams[device_id] = stream


def current_device_id() -> int:
    return getattr(_state, "device", 0)


def set_current_device_id(device_id: int) -> None:
    _state.device = device_id


def current_capture() -> Capture | None:
    """The capture of the current device's current stream, if it is capturing."""
    return current_stream_of(current_device_id())._capture


def host_sync(what: str = "") -> None:
    """A host read or a synchronous copy: not permitted while the current stream captures."""
    capture = current_capture()
    if capture is not None:
        raise capture.fail()
