"""cupy.cuda.nccl of the emulator: NCCL's communicator for the ranks of an mpiexec job.

The collectives are carried out over MPI (mpi4py's COMM_WORLD, duplicated per communicator)
on the emulated device memory, which is host memory at the pointer's address. Like every
emulated stream, they complete as they are issued. The names, signatures and enum values are
CuPy's (cupy_backends/cuda/libs/nccl.pyx) and NCCL's (nccl.h); the unique id is the 128 bytes
rank 0 hands the others, and every rank must pass the same one.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

available = True

NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_UINT32, NCCL_INT64, NCCL_UINT64 = range(6)
NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64, NCCL_BFLOAT16 = 6, 7, 8, 9
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN, NCCL_AVG = range(5)
_NCCL_UNIQUE_ID_BYTES = 128

_DTYPES = {NCCL_INT8: np.int8, NCCL_UINT8: np.uint8, NCCL_INT32: np.int32,
           NCCL_UINT32: np.uint32, NCCL_INT64: np.int64, NCCL_UINT64: np.uint64,
           NCCL_FLOAT16: np.float16, NCCL_FLOAT32: np.float32, NCCL_FLOAT64: np.float64}


class NcclError(RuntimeError):
    def __init__(self, status: int, what: str = "") -> None:
        self.status = status
        names = {3: "NCCL_ERROR_INTERNAL_ERROR", 4: "NCCL_ERROR_INVALID_ARGUMENT",
                 5: "NCCL_ERROR_INVALID_USAGE"}
        super().__init__(f"{names.get(status, status)}: {what}")


def get_version() -> int:
    return 22703


def get_build_version() -> int:
    return 22703


def get_unique_id() -> tuple[int, ...]:
    return tuple(int(b) for b in np.frombuffer(os.urandom(_NCCL_UNIQUE_ID_BYTES), np.int8))


def _array(ptr: int, count: int, datatype: int) -> np.ndarray:
    """The `count` elements of `datatype` at device (= host) address ptr, without a copy."""
    if datatype not in _DTYPES:
        raise NcclError(4, f"datatype {datatype} is not emulated")
    dtype = np.dtype(_DTYPES[datatype])
    if count == 0:
        return np.empty(0, dtype)
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(raw, dtype)


class NcclCommunicator:
    """One rank's communicator: ndev ranks in all, this one `rank`, as ncclCommInitRank."""

    def __init__(self, ndev: int, commId: tuple[int, ...], rank: int) -> None:
        from mpi4py import MPI

        if len(commId) != _NCCL_UNIQUE_ID_BYTES:
            raise NcclError(4, f"a unique id has {_NCCL_UNIQUE_ID_BYTES} bytes")
        world = MPI.COMM_WORLD
        if ndev != world.Get_size() or rank != world.Get_rank():
            raise NcclError(4, f"the emulator runs one rank per MPI process: ndev={ndev} and "
                               f"rank={rank} must be the MPI world size and rank")
        ids = world.allgather(tuple(commId))
        if any(other != ids[0] for other in ids):
            raise NcclError(5, "the ranks passed different unique ids")
        self._mpi = MPI
        self._comm: Any = world.Dup()
        self._rank = rank
        self._size = ndev

    def _ops(self, op: int) -> Any:
        MPI = self._mpi
        table = {NCCL_SUM: MPI.SUM, NCCL_PROD: MPI.PROD, NCCL_MAX: MPI.MAX, NCCL_MIN: MPI.MIN}
        if op not in table:
            raise NcclError(4, f"reduction op {op} is not emulated")
        return table[op]

    def _live(self) -> Any:
        if self._comm is None:
            raise NcclError(5, "the communicator was destroyed")
        return self._comm

    @property
    def comm(self) -> int:
        return id(self)

    def rank_id(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    def device_id(self) -> int:
        from .. import _emulator

        return _emulator.current_device_id()

    def allReduce(self, sendbuf: int, recvbuf: int, count: int, datatype: int, op: int,
                  stream: int) -> None:
        recv = _array(recvbuf, count, datatype)
        send = self._mpi.IN_PLACE if sendbuf == recvbuf else _array(sendbuf, count, datatype)
        self._live().Allreduce(send, recv, op=self._ops(op))

    def bcast(self, buff: int, count: int, datatype: int, root: int, stream: int) -> None:
        self._live().Bcast(_array(buff, count, datatype), root=root)

    def broadcast(self, sendbuff: int, recvbuff: int, count: int, datatype: int, root: int,
                  stream: int) -> None:
        recv = _array(recvbuff, count, datatype)
        if self._rank == root and sendbuff != recvbuff:
            recv[...] = _array(sendbuff, count, datatype)
        self._live().Bcast(recv, root=root)

    def allGather(self, sendbuf: int, recvbuf: int, count: int, datatype: int,
                  stream: int) -> None:
        send = _array(sendbuf, count, datatype).copy()
        self._live().Allgather(send, _array(recvbuf, count * self._size, datatype))

    def reduceScatter(self, sendbuf: int, recvbuf: int, recvcount: int, datatype: int, op: int,
                      stream: int) -> None:
        send = _array(sendbuf, recvcount * self._size, datatype).copy()
        self._live().Reduce_scatter_block(send, _array(recvbuf, recvcount, datatype),
                                          op=self._ops(op))

    def destroy(self) -> None:
        if self._comm is not None:
            self._comm.Free()
            self._comm = None

    def abort(self) -> None:
        self.destroy()
