"""Capture on CUDA: a CUDA graph with its own capture stream and private memory pool (the CPU
twin is _cpu_graph.py). The GEMMs inside go through _cublas.py, bound to the capture stream
before the capture begins."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._base import CaptureError

if TYPE_CHECKING:
    from ._cuda import CudaBackend

# cudaErrorStreamCaptureUnsupported ... cudaErrorStreamCaptureWrongThread (900-908) and
# cudaErrorCapturedEvent: what the CUDA runtime answers to work a capture cannot record.
_CAPTURE_STATUSES = frozenset(range(900, 909))


class CudaGraph:
    """A CUDA graph with its own capture stream and private memory pool, kept alive with it:
    what the captured work allocates is never handed to other work, so replays may write it.
    Recording does not run the work (see Backend.new_graph)."""

    runs_when_captured = False
    reads_through = None

    def __init__(self, backend: CudaBackend) -> None:
        cupy = backend._cupy
        self._backend = backend
        with backend._device_ctx:
            self._stream = cupy.cuda.Stream(non_blocking=True)
        self._pool = cupy.cuda.MemoryPool()
        self._graph: Any = None
        self._generator: Any = None  # the random generator a capture drew from, kept alive

    @contextlib.contextmanager
    def capture(self) -> Iterator[CudaGraph]:
        backend, cupy = self._backend, self._backend._cupy
        if self._graph is not None:
            raise RuntimeError("this graph already holds a capture; create a new one")
        if backend.capturing:
            raise CaptureError("a capture is already running on this device")
        with backend._device_ctx:
            # Work queued on the current stream (inputs being written) must come first.
            self._stream.wait_event(cupy.cuda.get_current_stream().record())
            # Created (on first use) outside the graph's pool: the handle's workspace outlives
            # this graph and serves eager products and other graphs too.
            cublas = backend.cublas()
            self._generator = backend.random()
            with self._stream, cupy.cuda.using_allocator(self._pool.malloc):
                cublas.bind(self._stream)
                self._stream.begin_capture()
                backend.capturing = True
                try:
                    yield self
                except BaseException as err:
                    backend.capturing = False
                    with contextlib.suppress(Exception):
                        self._stream.end_capture()
                    if (isinstance(err, cupy.cuda.runtime.CUDARuntimeError)
                            and err.status in _CAPTURE_STATUSES):
                        raise CaptureError(
                            f"the captured code did something a CUDA graph cannot record "
                            f"({err}). Typical causes: reading values on the host, "
                            "boolean-mask indexing or other ops whose output size depends "
                            "on the data, or random numbers from a generator that "
                            "synchronizes.") from err
                    raise
                backend.capturing = False
                self._graph = self._stream.end_capture()

    def replay(self) -> None:
        """Run the captured work again, on the current stream."""
        if self._graph is None:
            raise RuntimeError("replay() before anything was captured")
        cupy = self._backend._cupy
        with self._backend._device_ctx:
            self._graph.launch(cupy.cuda.get_current_stream())

    def pool_bytes(self) -> int:
        """Bytes held by the graph's private memory pool."""
        return int(self._pool.total_bytes())
