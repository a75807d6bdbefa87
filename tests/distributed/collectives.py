"""Run under mpiexec with any number of ranks: every collective, over dtypes, on contiguous and
non-contiguous tensors, blocking and with work handles, checked against the values each rank
can compute alone. Prints `ok collectives <world size>` on rank 0; a wrong value raises.

Argument: the device, cpu (default: the mpi backend), cuda (the nccl backend, which
init_process_group() picks when every rank has a GPU) or cuda-mpi (CUDA tensors over MPI).
"""

from __future__ import annotations

import sys

import numpy as np

import tensorgrad as tg
import tensorgrad.distributed as dist
from tensorgrad.distributed import ReduceOp

DTYPES = [tg.float16, tg.float32, tg.float64, tg.int32, tg.int64]


def values(rank: int, dtype: tg.DType) -> np.ndarray:
    """Rank r's 3x4 input: distinct per rank and element, exact in float16."""
    return (np.arange(12).reshape(3, 4) * (rank + 1) - 5 * rank).astype(dtype.name)


def check(got: tg.Tensor, want: np.ndarray, what: str) -> None:
    if got.dtype.name != want.dtype.name or not np.array_equal(got.numpy(), want):
        raise AssertionError(f"{what} on rank {dist.get_rank()}: got {got.dtype.name} "
                             f"{got.numpy().tolist()}, want {want.dtype.name} {want.tolist()}")


def main(device: str) -> None:
    # None picks NCCL where every rank has a GPU: the path to test for cuda; cuda-mpi is
    # CUDA tensors over MPI (through the host).
    backend = "nccl" if device == "cuda" else "mpi"
    dist.init_process_group(None if backend == "nccl" else "mpi", timeout=60)
    rank, size = dist.get_rank(), dist.get_world_size()
    assert dist.is_initialized() and dist.get_backend() == backend, dist.get_backend()
    if device == "cuda-mpi":
        device = f"cuda:{dist.get_node_local_rank() % tg.cuda.device_count()}"
    if device == "cuda":  # each rank on its own GPU, where its NCCL communicator is
        gpus = tg.cuda.device_count()
        device = f"cuda:{dist.get_node_local_rank() % gpus}"
        if gpus > 1:
            elsewhere = tg.ones(2, device=f"cuda:{(dist.get_node_local_rank() + 1) % gpus}")
            try:
                dist.all_reduce(elsewhere)
            except ValueError as err:
                assert "NCCL communicator is on" in str(err), err
            else:
                raise AssertionError("a tensor on another GPU than the communicator's passed")

    def tensor(a: np.ndarray) -> tg.Tensor:
        return tg.tensor(a, device=device)

    every = [values(r, tg.float64) for r in range(size)]
    expected = {ReduceOp.SUM: sum(every), ReduceOp.AVG: sum(every) / size,
                ReduceOp.MAX: np.max(every, axis=0), ReduceOp.MIN: np.min(every, axis=0),
                ReduceOp.PRODUCT: np.prod(every, axis=0)}
    for dtype in DTYPES:
        for op, want in expected.items():
            if op is ReduceOp.AVG and not dtype.is_floating_point:
                continue
            if op is ReduceOp.PRODUCT and dtype is tg.float16:
                continue  # products overflow float16's range
            t = tensor(values(rank, dtype))
            assert dist.all_reduce(t, op=op) is None
            check(t, want.astype(dtype.name), f"all_reduce {op.name} {dtype.name}")

        # A transposed view: the result lands in the view's own memory layout.
        base = tensor(values(rank, dtype))
        view = base.T
        work = dist.all_reduce(view, async_op=True)
        work.wait()
        assert work.is_completed()
        check(view, expected[ReduceOp.SUM].T.astype(dtype.name), f"all_reduce of .T {dtype.name}")
        check(base, expected[ReduceOp.SUM].astype(dtype.name), f"base of .T {dtype.name}")

        src = size - 1
        t = tensor(values(rank, dtype))[:, ::2]
        dist.broadcast(t, src)
        check(t, values(src, dtype)[:, ::2], f"broadcast {dtype.name}")

        gathered = [tg.zeros((3, 4), dtype=dtype, device=device) for _ in range(size)]
        dist.all_gather(gathered, tensor(values(rank, dtype)), async_op=True).wait()
        for r, g in enumerate(gathered):
            check(g, values(r, dtype), f"all_gather[{r}] {dtype.name}")

        out = tg.zeros((3, 4), dtype=dtype, device=device)
        inputs = [tensor(values(rank, dtype) + k) for k in range(size)]
        dist.reduce_scatter(out, inputs)
        check(out, (expected[ReduceOp.SUM] + size * rank).astype(dtype.name),
              f"reduce_scatter {dtype.name}")

    flags = tensor(np.array([rank == 0, True, False]))
    dist.all_reduce(flags, op=ReduceOp.MAX)
    check(flags, np.array([True, True, False]), "all_reduce of bool")
    scalar = tensor(np.array(rank, np.float32))
    dist.all_reduce(scalar, op=ReduceOp.MAX)
    check(scalar, np.array(size - 1.0, np.float32), "all_reduce of a 0-d tensor")
    # In place, as torch: a parameter's version moves, so a stale saved value is caught.
    p = tg.ones(2, requires_grad=True, device=device)
    before = p._version[0]
    dist.all_reduce(p)
    assert p._version[0] == before + 1
    objects = [None] * size
    dist.all_gather_object(objects, {"rank": rank})
    assert objects == [{"rank": r} for r in range(size)], objects
    dist.barrier()
    dist.destroy_process_group()
    assert not dist.is_initialized()
    dist.init_process_group("mpi", timeout=60)  # a group again after destroy
    again = tg.ones(2)
    dist.all_reduce(again)
    check(again, np.full(2, float(size), np.float32), "all_reduce in a second group")
    dist.destroy_process_group()
    if rank == 0:
        print(f"ok collectives {size}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu")
