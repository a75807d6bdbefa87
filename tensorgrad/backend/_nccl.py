"""NCCL through CuPy's cupy.cuda.nccl, for tg.distributed's "nccl" backend.

Each collective runs on a stream of the communicator's own, after the work already queued on
the current stream, and returns the event that marks its end: the caller polls it (bounded
waits) and then makes the current stream wait for it, so compute queued meanwhile (the rest of
backward) overlaps the transfer. Buffers must stay referenced until then.
"""

from __future__ import annotations

from typing import Any

# tg.distributed's op names -> NCCL's; AVG is a SUM that the caller divides afterwards (ncclAvg
# needs NCCL 2.10, and integer tensors are refused for AVG anyway). A bool travels as uint8,
# where MAX is a logical or and MIN a logical and.
_OPS = {"sum": "NCCL_SUM", "avg": "NCCL_SUM", "product": "NCCL_PROD", "max": "NCCL_MAX",
        "min": "NCCL_MIN"}
_BOOL_OPS = {"sum": "NCCL_MAX", "max": "NCCL_MAX", "min": "NCCL_MIN"}
_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
           "int32": "NCCL_INT32", "int64": "NCCL_INT64", "bool": "NCCL_UINT8"}


def _nccl() -> Any:
    from cupy.cuda import nccl

    return nccl


def unusable_reason() -> str | None:
    """Why this rank cannot use NCCL, or None when it can."""
    from . import cuda_unusable_reason

    reason = cuda_unusable_reason()
    if reason is not None:
        return f"CUDA is not usable: {reason}"
    try:
        nccl = _nccl()
    except ImportError as err:
        return (f"CuPy cannot load NCCL ({err}): pip install 'tensorgrad-engine[cuda12]' or "
                "'[cuda13]', which bring the nvidia-nccl wheel")
    if not getattr(nccl, "available", True):
        return ("CuPy has no NCCL: pip install 'tensorgrad-engine[cuda12]' or '[cuda13]', which "
                "bring the nvidia-nccl wheel")
    return None


def unique_id() -> tuple[int, ...]:
    return _nccl().get_unique_id()


class Communicator:
    """One rank's NCCL communicator on GPU `local_rank` modulo the GPUs of its machine."""

    def __init__(self, size: int, uid: tuple[int, ...], rank: int, local_rank: int) -> None:
        import cupy

        self._cupy = cupy
        nccl = _nccl()
        self.device_index = local_rank % cupy.cuda.runtime.getDeviceCount()
        self.device = cupy.cuda.Device(self.device_index)
        # This rank's GPU becomes the process's current one (torch.cuda.set_device(local_rank)
        # in PyTorch scripts), so that work queued outside a device switch lands there too.
        self.device.use()
        with self.device:
            self._comm = nccl.NcclCommunicator(size, uid, rank)
            self._stream = cupy.cuda.Stream(non_blocking=True)
        self._ops = {k: getattr(nccl, v) for k, v in _OPS.items()}
        self._bool_ops = {k: getattr(nccl, v) for k, v in _BOOL_OPS.items()}
        self._dtypes = {k: getattr(nccl, v) for k, v in _DTYPES.items()}

    def _type(self, array: Any) -> Any:
        try:
            return self._dtypes[array.dtype.name]
        except KeyError:
            raise TypeError(f"the nccl backend has no {array.dtype.name} type") from None

    def _op(self, array: Any, op: str) -> Any:
        return self._bool_ops[op] if array.dtype.name == "bool" else self._ops[op]

    def _launch(self, call: Any) -> Any:
        with self.device:
            self._stream.wait_event(self._cupy.cuda.get_current_stream().record())
            call(self._stream.ptr)
            return self._stream.record()

    def all_reduce(self, buf: Any, op: str) -> Any:
        ptr, count, dtype, nop = buf.data.ptr, buf.size, self._type(buf), self._op(buf, op)
        return self._launch(lambda s: self._comm.allReduce(ptr, ptr, count, dtype, nop, s))

    def broadcast(self, buf: Any, root: int) -> Any:
        ptr, count, dtype = buf.data.ptr, buf.size, self._type(buf)
        return self._launch(lambda s: self._comm.bcast(ptr, count, dtype, root, s))

    def all_gather(self, send: Any, recv: Any) -> Any:
        dtype = self._type(send)
        return self._launch(lambda s: self._comm.allGather(send.data.ptr, recv.data.ptr,
                                                           send.size, dtype, s))

    def reduce_scatter(self, send: Any, recv: Any, op: str) -> Any:
        dtype, nop = self._type(recv), self._op(recv, op)
        return self._launch(lambda s: self._comm.reduceScatter(send.data.ptr, recv.data.ptr,
                                                               recv.size, dtype, nop, s))

    def wait_on(self, done: Any) -> None:
        """Make the current stream wait for a collective's end (no host wait)."""
        with self.device:
            self._cupy.cuda.get_current_stream().wait_event(done)

    def destroy(self) -> None:
        self._comm.destroy()
