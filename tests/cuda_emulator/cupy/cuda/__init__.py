"""cupy.cuda of the emulator: devices, streams, events, graphs, memory pools and allocators.

Streams run their work at once (the host is the device), except while capturing: then work is
recorded into the stream's Capture and runs only when the graph is launched.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import _emulator
from .._emulator import CUDARuntimeError
from . import nvrtc, runtime  # noqa: F401  (cupy.cuda.runtime / cupy.cuda.nvrtc)

__all__ = ["Device", "Event", "Graph", "MemoryPointer", "MemoryPool", "Stream", "alloc",
           "get_allocator", "get_current_stream", "set_allocator", "using_allocator"]

_fake_handles = itertools.count(0x7E0000001000, 0x100)  # stream/event handles, never 0 or 1
streams: weakref.WeakValueDictionary[int, Stream] = weakref.WeakValueDictionary()


class Device:
    """cupy.cuda.Device: `with Device(i):` makes GPU i current for the block."""

    def __init__(self, device: int | None = None) -> None:
        self.id = _emulator.current_device_id() if device is None else int(device)
        self._previous: list[int] = []

    def _check(self) -> None:
        if not 0 <= self.id < _emulator.DEVICE_COUNT:
            raise CUDARuntimeError(101)

    def use(self) -> None:
        self._check()
        _emulator.set_current_device_id(self.id)

    def __enter__(self) -> Device:
        self._check()
        self._previous.append(_emulator.current_device_id())
        _emulator.set_current_device_id(self.id)
        return self

    def __exit__(self, *exc: Any) -> None:
        _emulator.set_current_device_id(self._previous.pop())

    def synchronize(self) -> None:
        _emulator.host_sync()

    @property
    def compute_capability(self) -> str:
        return "90"

    @property
    def cublas_handle(self) -> int:
        """Loads the emulator's libcublas into the process (as CuPy loads the real one) and
        returns a handle created by it."""
        self._check()
        from .. import _cublas

        return _cublas.handle_for(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __int__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


class Event:
    def __init__(self, block: bool = False, disable_timing: bool = False,
                 interprocess: bool = False) -> None:
        self.ptr = next(_fake_handles)
        self.done = True

    def record(self, stream: Stream | None = None) -> None:
        pass  # work completes as it is issued

    def synchronize(self) -> None:
        _emulator.host_sync()


class Stream:
    """cupy.cuda.Stream. Stream.null is the legacy default stream (ptr 0)."""

    null: Stream

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False,
                 priority: int | None = None) -> None:
        self.ptr = 0 if null else (1 if ptds else next(_fake_handles))
        self.non_blocking = non_blocking
        self.device_id = -1 if null else _emulator.current_device_id()
        self._capture: _emulator.Capture | None = None
        self._previous: list[Any] = []
        streams[self.ptr] = self

    def __enter__(self) -> Stream:
        device = _emulator.current_device_id()
        self._previous.append(_emulator.current_stream_of(device))
        _emulator.set_current_stream(device, self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _emulator.set_current_stream(_emulator.current_device_id(), self._previous.pop())

    def use(self) -> Stream:
        _emulator.set_current_stream(_emulator.current_device_id(), self)
        return self

    def synchronize(self) -> None:
        if self._capture is not None:
            raise self._capture.fail()

    def record(self, event: Event | None = None) -> Event:
        event = Event() if event is None else event
        event.record(self)
        return event

    def wait_event(self, event: Event) -> None:
        pass

    @property
    def done(self) -> bool:
        return True

    def begin_capture(self, mode: int | None = None) -> None:
        if self.ptr in (0, 1):
            raise RuntimeError("cannot capture on the default (legacy) stream")
        if self._capture is not None:
            raise CUDARuntimeError(400)
        self._capture = _emulator.Capture(self)

    def end_capture(self) -> Graph:
        capture = self._capture
        if capture is None:
            raise CUDARuntimeError(400)
        self._capture = None
        capture.poison()
        if capture.invalidated:
            raise CUDARuntimeError(901)
        return Graph(capture.work)

    def is_capturing(self) -> bool:
        return self._capture is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stream) and other.ptr == self.ptr

    def __hash__(self) -> int:
        return hash(self.ptr)

    def __repr__(self) -> str:
        return f"<Stream {self.ptr:#x} (device {self.device_id})>"


Stream.null = Stream(null=True)


class Graph:
    """An executable graph: the recorded launches, replayed in order on launch()."""

    def __init__(self, work: list[tuple[str, int, bool, Callable[[], None]]]) -> None:
        self._work = work

    def launch(self, stream: Stream | None = None) -> None:
        stream = get_current_stream() if stream is None else stream
        if stream._capture is not None:
            # A graph launched into a capture becomes part of the outer graph.
            stream._capture.work.extend(self._work)
            return
        _emulator.count_graph_launch()
        with np.errstate(all="ignore"):
            for name, nbytes, gemm, run in self._work:
                run()
                _emulator.count_launch(name, nbytes, gemm)

    def upload(self, stream: Stream | None = None) -> None:
        pass


def get_current_stream(device_id: int | None = None) -> Stream:
    device = _emulator.current_device_id() if device_id is None else device_id
    return _emulator.current_stream_of(device)


# ---------------------------------------------------------------------------------------------
# Memory

class MemoryPointer:
    """A pointer into an allocation: `.ptr` is its address, `.mem` the allocation."""

    __slots__ = ("mem", "offset", "ptr", "device_id")

    def __init__(self, mem: _emulator.Memory, offset: int) -> None:
        self.mem = mem
        self.offset = offset
        self.ptr = mem.ptr + offset
        self.device_id = mem.device_id

    def __int__(self) -> int:
        return self.ptr

    def __add__(self, offset: int) -> MemoryPointer:
        return MemoryPointer(self.mem, self.offset + offset)


class MemoryPool:
    """cupy.cuda.MemoryPool: allocations rounded up to 512 bytes; freed blocks stay in the
    pool (total_bytes counts them) and are handed out again for the same rounded size."""

    def __init__(self, allocator: Any = None) -> None:
        self._free: dict[int, list[np.ndarray]] = {}
        self._total = 0
        self._used = 0
        self._lock = threading.Lock()

    def malloc(self, size: int) -> MemoryPointer:
        size = int(size)
        if size < 0:
            raise ValueError(f"negative allocation size {size}")
        device = _emulator.current_device_id()
        if size == 0:
            return MemoryPointer(_emulator.Memory(np.empty(0, np.uint8), 0, device, None), 0)
        rounded = _emulator.round_size(size)
        with self._lock:
            blocks = self._free.get(rounded)
            if blocks:
                host = blocks.pop()
            else:
                # 64-byte aligned like a device allocation (cuBLAS and vector loads assume it)
                raw = np.empty(rounded + 64, np.uint8)
                start = -raw.__array_interface__["data"][0] % 64
                host = raw[start:start + rounded]
                self._total += rounded
            self._used += rounded
        return MemoryPointer(_emulator.Memory(host, rounded, device, self._release, size), 0)

    def _release(self, host: np.ndarray) -> None:
        with self._lock:
            self._used -= host.nbytes
            self._free.setdefault(host.nbytes, []).append(host)

    def total_bytes(self) -> int:
        return self._total

    def used_bytes(self) -> int:
        return self._used

    def free_bytes(self) -> int:
        return self._total - self._used

    def free_all_blocks(self, stream: Any = None) -> None:
        with self._lock:
            for blocks in self._free.values():
                self._total -= sum(b.nbytes for b in blocks)
            self._free.clear()

    def n_free_blocks(self) -> int:
        return sum(len(b) for b in self._free.values())


_default_pool = MemoryPool()
_allocator = threading.local()


def get_allocator() -> Callable[[int], MemoryPointer]:
    return getattr(_allocator, "fn", None) or _default_pool.malloc


def set_allocator(allocator: Callable[[int], MemoryPointer] | None = None) -> None:
    _allocator.fn = allocator


@contextlib.contextmanager
def using_allocator(allocator: Callable[[int], MemoryPointer] | None = None) -> Iterator[None]:
    previous = getattr(_allocator, "fn", None)
    _allocator.fn = allocator
    try:
        yield
    finally:
        _allocator.fn = previous


def alloc(size: int) -> MemoryPointer:
    """Memory from the allocator in force (the default pool unless using_allocator says)."""
    return get_allocator()(size)


def get_default_memory_pool() -> MemoryPool:
    return _default_pool


def is_available() -> bool:
    return _emulator.DEVICE_COUNT > 0
