"""The process group behind tg.distributed: an MPI communicator, and an NCCL one on top of it
for CUDA tensors, with the work handles their non-blocking collectives return.

Every collective is started non-blocking (MPI's I-collectives, NCCL on a stream of its own) so
that DDP can overlap it with backward, and every wait polls with a deadline, so that a rank
that died, exited early or called another collective makes the others raise instead of hang.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np

from .._tensor import Tensor

# A wait tests its request in a loop: MPICH makes progress only inside MPI calls, so a
# collective finishes fastest when tested without pause. After _SPIN_SECONDS each test is
# followed by a yield of the core (to another rank sharing it, on a loaded machine), and after
# _YIELD_SECONDS (another rank is still computing) by a short sleep.
_SPIN_SECONDS = 5e-4
_YIELD_SECONDS = 0.05
_SLEEP_SECONDS = 1e-4
_yield = getattr(os, "sched_yield", lambda: time.sleep(0))  # not on Windows


class DistributedError(RuntimeError):
    """A collective that could not complete: a timeout, or ranks that disagree."""


def mpi() -> Any:
    """mpi4py's MPI module (importing it initializes MPI), or an error naming the extra."""
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as err:  # mpi4py 4 raises RuntimeError without libmpi
        raise ImportError("tg.distributed needs mpi4py and an MPI library: pip install "
                          "'tensorgrad-engine[mpi]' (mpi4py and the mpich wheel, which brings "
                          f"mpiexec) ({err})") from err
    return MPI


class Work:
    """A collective started with async_op=True, as torch.distributed.Work: wait() returns once
    the result is in place; is_completed() asks without waiting."""

    __slots__ = ("_test", "_finish", "_what", "_group", "_done")

    def __init__(self, test: Callable[[], bool], finish: Callable[[], None] | None, what: str,
                 group: ProcessGroup) -> None:
        self._test = test
        self._finish = finish
        self._what = what
        self._group = group
        self._done = False

    def is_completed(self) -> bool:
        return self._done or bool(self._test())

    def wait(self, timeout: timedelta | float | None = None) -> bool:
        """Block until done, at most `timeout` (default: the group's); then DistributedError."""
        if self._done:
            return True
        if timeout is None:
            limit = self._group.timeout
        else:
            limit = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        test = self._test
        if not test():
            start = time.monotonic()
            while not test():
                waited = time.monotonic() - start
                if waited > limit:
                    raise DistributedError(
                        f"rank {self._group.rank}: {self._what} did not complete within "
                        f"{limit:g} s: another rank failed, exited, or did not call the same "
                        "collective (the limit is init_process_group's timeout)")
                if waited > _YIELD_SECONDS:
                    time.sleep(_SLEEP_SECONDS)
                elif waited > _SPIN_SECONDS:
                    _yield()
        self._done = True
        if self._finish is not None:
            self._finish()
        return True


def on_device(backend: Any) -> Any:
    """A context with the backend's device current: raw array code outside an op's apply needs
    it on a machine with several GPUs (ops switch in apply)."""
    return contextlib.nullcontext() if backend.switch is None else backend.switch()


def _host_buffer(t: Tensor) -> tuple[np.ndarray, Callable[[], None] | None]:
    """A C-contiguous host array holding t's values for MPI to work on in place, and how to
    copy it back into t (None when it is t's own memory)."""
    data = t._data
    host = t._backend.to_numpy(data)
    if host is data and host.flags.c_contiguous and host.flags.writeable:
        return host, None
    buf = np.array(host, order="C")

    def write_back() -> None:
        with on_device(t._backend):
            t._data[...] = t._backend.asarray(buf)

    return buf, write_back


class ProcessGroup:
    """All ranks of the job: an MPI communicator of their own (a duplicate of COMM_WORLD, so a
    user's own MPI traffic never mixes with ours) and, for backend "nccl", an NCCL one."""

    def __init__(self, comm: Any, timeout: float, debug: bool) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        MPI = mpi()
        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank = node.Get_rank()
        node.Free()
        self.timeout = timeout
        self.debug = debug
        self.backend = "mpi"
        self._nccl: Any = None
        self._mpi_ops = {"sum": MPI.SUM, "avg": MPI.SUM, "product": MPI.PROD, "max": MPI.MAX,
                         "min": MPI.MIN}
        self._bool_ops = {"sum": MPI.LOR, "max": MPI.LOR, "min": MPI.LAND}
        self._previous_excepthook = sys.excepthook
        sys.excepthook = self._abort_on_exception

    # ---- life cycle ---------------------------------------------------------------------
    def use_nccl(self) -> None:
        """Add an NCCL communicator on this rank's GPU (cuda:local_rank modulo the GPUs of
        the machine), its unique id sent from rank 0 over MPI as ChainerMN does."""
        from ..backend import _nccl

        # Every rank learns whether every other can: a rank that raised alone would leave the
        # others blocked in NCCL's initialization, which no timeout of ours bounds.
        for rank, reason in enumerate(self.all_gather_object(_nccl.unusable_reason())):
            if reason is not None:
                raise RuntimeError(f"backend 'nccl': rank {rank} cannot use NCCL: {reason}")
        uid = self.all_gather_object(_nccl.unique_id() if self.rank == 0 else None)[0]
        self._nccl = _nccl.Communicator(self.size, uid, self.rank, self.local_rank)
        self.backend = "nccl"

    def close(self) -> None:
        if sys.excepthook == self._abort_on_exception:
            sys.excepthook = self._previous_excepthook
        if self._nccl is not None:
            self._nccl.destroy()
        self.comm.Free()

    def _abort_on_exception(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # An exception no rank code caught ends this rank; the others would wait for it in
        # their next collective until the timeout, so take them all down now, as mpi4py's
        # `python -m mpi4py` does.
        self._previous_excepthook(exc_type, exc, tb)
        if self.size > 1:
            sys.stderr.write(f"tensorgrad.distributed: rank {self.rank} of {self.size} stopped "
                             f"on this {exc_type.__name__}; aborting every rank (MPI_Abort) so "
                             "that none waits for it\n")
            sys.stderr.flush()
            self.comm.Abort(1)

    # ---- checks ------------------------------------------------------------------------
    def _same_everywhere(self, what: str, description: str) -> None:
        """Under TENSORGRAD_DISTRIBUTED_DEBUG=1: raise on every rank when the ranks called
        different collectives (op, shape, dtype), instead of hanging or mixing data."""
        if not self.debug:
            return
        calls = self.all_gather_object(description)
        for rank, call in enumerate(calls):
            if call != calls[0]:
                raise DistributedError(f"{what}: the ranks called different collectives: rank 0 "
                                       f"{calls[0]}, rank {rank} {call}")

    def _cuda(self, what: str, t: Tensor) -> bool:
        """Whether t goes through NCCL; MPI takes CPU tensors (and CUDA ones through the host)."""
        if self._nccl is None:
            return False
        if t.device.type != "cuda":
            raise ValueError(f"{what}: the nccl backend works on CUDA tensors, got one on "
                             f"{t.device}; move it with .cuda(), or use backend='mpi'")
        if t._data.device.id != self._nccl.device_index:
            raise ValueError(f"{what}: this rank's NCCL communicator is on "
                             f"cuda:{self._nccl.device_index} (its node-local rank "
                             f"{self.local_rank} modulo the GPUs), got a tensor on {t.device}")
        return True

    # ---- collectives on tensors ------------------------------------------------------------
    def all_reduce(self, t: Tensor, op: str) -> Work:
        what = f"all_reduce({op}) of {t.dtype.name} {t.shape}"
        self._same_everywhere("all_reduce", what)
        if self._cuda("all_reduce", t):
            return self._nccl_in_place(t, lambda buf: self._nccl.all_reduce(buf, op),
                                       op == "avg", what)
        buf, write_back = _host_buffer(t)
        mpi_op = self._bool_ops[op] if buf.dtype == np.bool_ else self._mpi_ops[op]
        request = self.comm.Iallreduce(mpi().IN_PLACE, buf, op=mpi_op)
        return Work(request.Test, self._after(t, buf, write_back, op == "avg"), what, self)

    def broadcast(self, t: Tensor, src: int) -> Work:
        what = f"broadcast from rank {src} of {t.dtype.name} {t.shape}"
        self._same_everywhere("broadcast", what)
        if self._cuda("broadcast", t):
            return self._nccl_in_place(t, lambda buf: self._nccl.broadcast(buf, src), False,
                                       what)
        buf, write_back = _host_buffer(t)
        request = self.comm.Ibcast(buf, root=src)
        return Work(request.Test, self._after(t, buf, write_back, False), what, self)

    def all_gather(self, outputs: list[Tensor], t: Tensor) -> Work:
        what = f"all_gather of {t.dtype.name} {t.shape}"
        self._same_everywhere("all_gather", what)
        if self._cuda("all_gather", t):
            xp = t._backend.xp
            with self._nccl.device:
                send = xp.ascontiguousarray(t._data)
                recv = xp.empty((self.size, *t.shape), send.dtype)
                done = self._nccl.all_gather(send, recv)

            def finish_cuda() -> None:
                for rank, out in enumerate(outputs):
                    out._data[...] = recv[rank]
                    out._version[0] += 1

            return self._nccl_work(done, finish_cuda, what)
        send = np.ascontiguousarray(t._backend.to_numpy(t._data))
        recv = np.empty((self.size, *t.shape), send.dtype)
        request = self.comm.Iallgather(send, recv)

        def finish() -> None:
            for rank, out in enumerate(outputs):
                with on_device(out._backend):
                    out._data[...] = out._backend.asarray(recv[rank])
                out._version[0] += 1

        return Work(request.Test, finish, what, self)

    def reduce_scatter(self, output: Tensor, inputs: list[Tensor], op: str) -> Work:
        what = f"reduce_scatter({op}) of {output.dtype.name} {output.shape}"
        self._same_everywhere("reduce_scatter", what)
        if self._cuda("reduce_scatter", output):
            xp = output._backend.xp
            with self._nccl.device:
                send = xp.stack([x._data for x in inputs])
                recv = xp.empty(output.shape, send.dtype)
                done = self._nccl.reduce_scatter(send, recv, op)

            def finish_cuda() -> None:
                if op == "avg":
                    recv[...] /= self.size
                output._data[...] = recv
                output._version[0] += 1

            return self._nccl_work(done, finish_cuda, what)
        send = np.stack([x._backend.to_numpy(x._data) for x in inputs])
        buf, write_back = _host_buffer(output)
        mpi_op = self._bool_ops[op] if buf.dtype == np.bool_ else self._mpi_ops[op]
        request = self.comm.Ireduce_scatter_block(send, buf, op=mpi_op)
        return Work(request.Test, self._after(output, buf, write_back, op == "avg"), what, self)

    def _nccl_in_place(self, t: Tensor, start: Callable[[Any], Any], average: bool,
                       what: str) -> Work:
        """An in-place NCCL collective on t, started by start(buf): buf is t's own memory when
        it is C-contiguous, else a contiguous copy written back when the collective is done."""
        with self._nccl.device:
            buf = t._data if t._data.flags.c_contiguous else t._backend.xp.ascontiguousarray(
                t._data)
            done = start(buf)

        def finish() -> None:
            if average:
                buf[...] /= self.size
            if buf is not t._data:
                t._data[...] = buf
            t._version[0] += 1

        return self._nccl_work(done, finish, what)

    def _nccl_work(self, done: Any, finish: Callable[[], None], what: str) -> Work:
        """The handle of an NCCL collective that ends with event `done`: its finish runs on the
        communicator's GPU, on the current stream made to wait for the collective."""
        nccl = self._nccl

        def after() -> None:
            with nccl.device:
                nccl.wait_on(done)
                finish()

        return Work(lambda: done.done, after, what, self)

    def _after(self, t: Tensor, buf: np.ndarray, write_back: Callable[[], None] | None,
               average: bool) -> Callable[[], None]:
        def finish() -> None:
            if average:
                np.divide(buf, self.size, out=buf)
            if write_back is not None:
                write_back()
            t._version[0] += 1

        return finish

    # ---- over MPI only ---------------------------------------------------------------------
    def barrier(self) -> Work:
        return Work(self.comm.Ibarrier().Test, None, "barrier", self)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's picklable obj, in rank order; bounded by the timeout like any wait."""
        data = np.frombuffer(pickle.dumps(obj), np.uint8)
        sizes = np.empty(self.size, np.int64)
        Work(self.comm.Iallgather(np.array([data.size], np.int64), sizes).Test, None,
             "all_gather_object (sizes)", self).wait()
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        recv = np.empty(int(sizes.sum()), np.uint8)
        byte = mpi().BYTE
        request = self.comm.Iallgatherv([data, byte], [recv, sizes, offsets, byte])
        Work(request.Test, None, "all_gather_object", self).wait()
        return [pickle.loads(recv[o:o + n].tobytes()) for o, n in zip(offsets, sizes)]


def new_group(backend: str | None, timeout: float, debug: bool) -> ProcessGroup:
    group = ProcessGroup(mpi().COMM_WORLD.Dup(), timeout, debug)
    try:
        if backend is None:
            from .. import cuda

            backend = "nccl" if all(group.all_gather_object(cuda.is_available())) else "mpi"
        if backend == "nccl":
            group.use_nccl()
    except BaseException:
        group.close()
        raise
    return group
