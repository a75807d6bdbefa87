"""Run under mpiexec with 2 ranks, one failure per run (the first argument names it); each must
end the whole job with a clear message, never hang:

mismatch       the ranks build models of different shapes and wrap them in DDP
raise          rank 1 raises while rank 0 waits in an all_reduce
kill           rank 1 is killed (SIGKILL) while rank 0 waits in an all_reduce
timeout        rank 1 is alive but never joins rank 0's all_reduce (1 s timeout)
debug          the ranks all_reduce tensors of different shapes, under
               TENSORGRAD_DISTRIBUTED_DEBUG=1
nccl           backend="nccl" where a rank cannot use it
"""

from __future__ import annotations

import os
import signal
import sys
import time

import tensorgrad as tg
import tensorgrad.distributed as dist
from tensorgrad.nn.parallel import DistributedDataParallel


def main(mode: str) -> None:
    if mode == "nccl":
        dist.init_process_group("nccl", timeout=10)
        return
    dist.init_process_group("mpi", timeout=1 if mode == "timeout" else 10)
    rank = dist.get_rank()
    if mode == "mismatch":
        width = 4 if rank == 0 else 5
        DistributedDataParallel(tg.nn.Sequential(tg.nn.Linear(3, width), tg.nn.Linear(width, 2)))
    elif mode == "debug":
        dist.all_reduce(tg.ones(3 + rank))
    elif rank == 1:
        if mode == "raise":
            raise RuntimeError("rank 1 fails on purpose")
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "timeout":
            time.sleep(60)
    else:
        dist.all_reduce(tg.ones(3))
    print(f"rank {rank} finished although it should not have", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
