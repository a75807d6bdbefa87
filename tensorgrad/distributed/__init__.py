"""tg.distributed: one process group per job and collectives on Tensors, as torch.distributed.

What lives here: init_process_group and friends, the collectives (in place, each with a work
handle under async_op=True), and the guards that keep a failed job from hanging: every wait is
bounded by the group's timeout, and an exception that no rank code catches aborts every rank.
The transports are existing libraries only: MPI through mpi4py (the `[mpi]` extra) and NCCL
through CuPy's cupy.cuda.nccl (reached through tg's CUDA backend), whose unique id travels over
MPI, so one launcher, mpiexec, starts both (see tensorgrad.distributed.run). Nothing here is
imported by `import tensorgrad`. DistributedDataParallel lives in tg.nn.parallel and
DistributedSampler in tg.data.
"""

from __future__ import annotations

import enum
import os
from datetime import timedelta

from .._tensor import Tensor
from ._group import DistributedError, Work, mpi, new_group

_DEFAULT_TIMEOUT = timedelta(minutes=30)  # PyTorch's default for its process groups


class ReduceOp(enum.Enum):
    """How all_reduce and reduce_scatter combine the ranks' values, as torch's ReduceOp.
    AVG is SUM divided by the world size (floating tensors only)."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MAX = "max"
    MIN = "min"


_group = None


def init_process_group(backend: str | None = None,
                       timeout: timedelta | float = _DEFAULT_TIMEOUT) -> None:
    """Join the job's process group; rank and world size come from the MPI launcher.

    backend: "mpi", "nccl", or None for NCCL when every rank has a usable CUDA device and MPI
    otherwise. timeout (a timedelta or seconds) bounds every wait for the other ranks: a rank
    that died or never reaches a collective makes the others raise DistributedError instead
    of hanging.
    """
    global _group
    if _group is not None:
        raise RuntimeError("trying to initialize the default process group twice: call "
                           "destroy_process_group() first")
    if backend is not None and backend not in ("mpi", "nccl"):
        raise ValueError(f"init_process_group: backend must be 'mpi', 'nccl' or None, got "
                         f"{backend!r}")
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if not seconds > 0:
        raise ValueError(f"init_process_group: timeout must be positive, got {timeout!r}")
    _group = new_group(backend, seconds, debug=bool(os.environ.get(
        "TENSORGRAD_DISTRIBUTED_DEBUG")))


def destroy_process_group() -> None:
    """Leave the process group (MPI itself is finalized when the process exits)."""
    global _group
    if _group is not None:
        group, _group = _group, None
        group.close()


def is_initialized() -> bool:
    return _group is not None


def is_available() -> bool:
    """Whether mpi4py and an MPI library can be imported (init_process_group needs them)."""
    try:
        mpi()
    except ImportError:
        return False
    return True


def _default_group():
    if _group is None:  # a ValueError, as torch.distributed's
        raise ValueError("Default process group has not been initialized, please make sure "
                         "to call tg.distributed.init_process_group()")
    return _group


def get_rank() -> int:
    return _default_group().rank


def get_world_size() -> int:
    return _default_group().size


def get_backend() -> str:
    return _default_group().backend


def get_node_local_rank() -> int:
    """This process's rank among the ranks on its machine (picks its GPU under NCCL)."""
    return _default_group().local_rank


def barrier(async_op: bool = False) -> Work | None:
    """Return once every rank has reached this call."""
    return _finish(_default_group().barrier(), async_op)


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, async_op: bool = False
               ) -> Work | None:
    """Combine `tensor` over the ranks with op and leave the result in it on every rank."""
    group = _default_group()
    _check_tensor("all_reduce", tensor)
    op = _check_op("all_reduce", op, tensor)
    return _finish(group.all_reduce(tensor, op.value), async_op)


def broadcast(tensor: Tensor, src: int, async_op: bool = False) -> Work | None:
    """Copy rank src's `tensor` into `tensor` on every other rank."""
    group = _default_group()
    _check_tensor("broadcast", tensor)
    _check_rank("broadcast", "src", src, group.size)
    return _finish(group.broadcast(tensor, src), async_op)


def all_gather(tensor_list: list[Tensor], tensor: Tensor, async_op: bool = False
               ) -> Work | None:
    """Fill tensor_list[r] with rank r's `tensor`, on every rank."""
    group = _default_group()
    _check_tensor("all_gather", tensor)
    _check_list("all_gather", "tensor_list", tensor_list, tensor, group.size)
    return _finish(group.all_gather(tensor_list, tensor), async_op)


def reduce_scatter(output: Tensor, input_list: list[Tensor], op: ReduceOp = ReduceOp.SUM,
                   async_op: bool = False) -> Work | None:
    """Combine input_list[r] over the ranks with op and leave the result in rank r's output."""
    group = _default_group()
    _check_tensor("reduce_scatter", output)
    _check_list("reduce_scatter", "input_list", input_list, output, group.size)
    op = _check_op("reduce_scatter", op, output)
    return _finish(group.reduce_scatter(output, input_list, op.value), async_op)


def all_gather_object(object_list: list, obj: object) -> None:
    """Fill object_list (of world-size length) with every rank's picklable obj."""
    group = _default_group()
    if not isinstance(object_list, list) or len(object_list) != group.size:
        raise ValueError(f"all_gather_object: object_list must be a list of length "
                         f"{group.size} (the world size)")
    object_list[:] = group.all_gather_object(obj)


def _finish(work: Work, async_op: bool) -> Work | None:
    if async_op:
        return work
    work.wait()
    return None


def _check_tensor(what: str, tensor: object) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what} expects a Tensor, got {type(tensor).__name__}")


def _check_rank(what: str, name: str, rank: object, size: int) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < size:
        raise ValueError(f"{what}: {name} must be a rank in [0, {size}), got {rank!r}")


def _check_op(what: str, op: object, tensor: Tensor) -> ReduceOp:
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{what}: op must be a tg.distributed.ReduceOp, got {op!r}")
    if op is ReduceOp.AVG and not tensor.dtype.is_floating_point:
        raise TypeError(f"{what}: ReduceOp.AVG needs a floating tensor, got {tensor.dtype.name}")
    if tensor.dtype.name == "bool" and op in (ReduceOp.AVG, ReduceOp.PRODUCT):
        raise TypeError(f"{what}: ReduceOp.{op.name} is not defined for bool tensors")
    return op


def _check_list(what: str, name: str, tensors: object, like: Tensor, size: int) -> None:
    if not isinstance(tensors, (list, tuple)) or len(tensors) != size:
        raise ValueError(f"{what}: {name} must be a list of {size} tensors (the world size), "
                         f"got {type(tensors).__name__} of length "
                         f"{len(tensors) if isinstance(tensors, (list, tuple)) else '?'}")
    for k, t in enumerate(tensors):
        _check_tensor(f"{what}: {name}[{k}]", t)
        if t.shape != like.shape or t.dtype != like.dtype or t.device != like.device:
            raise ValueError(f"{what}: {name}[{k}] is {t.dtype.name} {t.shape} on {t.device}; "
                             f"expected {like.dtype.name} {like.shape} on {like.device} as the "
                             "tensor argument")


__all__ = [
    "DistributedError", "ReduceOp", "Work", "all_gather", "all_gather_object", "all_reduce",
    "barrier", "broadcast", "destroy_process_group", "get_backend", "get_node_local_rank",
    "get_rank", "get_world_size", "init_process_group", "is_available", "is_initialized",
    "reduce_scatter",
]
