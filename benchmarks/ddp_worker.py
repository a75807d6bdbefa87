"""One rank of the data-parallel benchmark (started by benchmarks/distributed.py under mpiexec).

The medium MLP (784-1024-1024-10, float32) trains with SGD on a global batch split evenly over
the ranks: tensorgrad's DistributedDataParallel over MPI, or PyTorch's DDP over gloo (its
rendezvous address from the MPI launcher's rank and size). With --plain (one rank) the model is
trained without any DDP wrapper: the baseline of the scaling efficiency. Rank 0 prints one
JSON line: the median over --rounds of the mean time per step.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

SIZES = (784, 1024, 1024, 10)


def weights() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1 / np.sqrt(fan_in)
        out.append((rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32),
                    rng.uniform(-bound, bound, fan_out).astype(np.float32)))
    return out


def batch(rank: int, size: int, global_batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((global_batch, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], global_batch)
    share = global_batch // size
    return x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share]


def tensorgrad_step(args: argparse.Namespace) -> tuple[int, int, object, object]:
    import tensorgrad as tg
    import tensorgrad.distributed as dist

    layers = []
    for w, b in weights():
        linear = tg.nn.Linear(w.shape[1], w.shape[0])
        linear.weight.data, linear.bias.data = w, b
        layers += [linear, tg.nn.ReLU()]
    model = tg.nn.Sequential(*layers[:-1])
    rank, size = 0, 1
    if not args.plain:
        dist.init_process_group("mpi")
        rank, size = dist.get_rank(), dist.get_world_size()
        model = tg.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=args.bucket_cap_mb)
    x, y = (tg.tensor(a) for a in batch(rank, size, args.batch))
    opt = tg.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = tg.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    barrier = (lambda: None) if args.plain else dist.barrier
    return rank, size, step, barrier


def torch_step(args: argparse.Namespace) -> tuple[int, int, object, object]:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    layers = []
    for w, b in weights():
        linear = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    rank, size = 0, 1
    if not args.plain:
        rank, size = int(os.environ["PMI_RANK"]), int(os.environ["PMI_SIZE"])
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank,
                                world_size=size)
        model = torch.nn.parallel.DistributedDataParallel(model,
                                                          bucket_cap_mb=args.bucket_cap_mb)
    xa, ya = batch(rank, size, args.batch)
    x, y = torch.from_numpy(xa), torch.from_numpy(ya)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    barrier = (lambda: None) if args.plain else dist.barrier
    return rank, size, step, barrier


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--impl", choices=["tensorgrad", "torch"], required=True)
    p.add_argument("--plain", action="store_true", help="one process, no DDP")
    p.add_argument("--batch", type=int, default=512, help="global batch")
    p.add_argument("--steps", type=int, default=10, help="steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--bucket-cap-mb", type=float, default=25.0)
    p.add_argument("--port", type=int, default=29517)
    args = p.parse_args()
    rank, size, step, barrier = (tensorgrad_step if args.impl == "tensorgrad"
                                 else torch_step)(args)
    for _ in range(3):
        step()
    times = []
    for _ in range(args.rounds):
        barrier()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        barrier()
        times.append((time.perf_counter() - start) / args.steps)
    if rank == 0:
        print(json.dumps({"impl": args.impl, "ranks": size, "plain": args.plain,
                          "ms_per_step": 1e3 * float(np.median(times)),
                          "min_ms": 1e3 * min(times), "bucket_cap_mb": args.bucket_cap_mb}),
              flush=True)


if __name__ == "__main__":
    main()
