"""Run under mpiexec with 1, 2 or 4 ranks: DDP over the ranks, each on its share of every
batch, against a single process (this rank, without the group) on the whole batch. Prints one
`ok <case>` line per case on rank 0; any difference raises (and aborts the job). Arguments: a
folder shared by the ranks, for the checkpoint, and the device (cpu, the default, or cuda: the
nccl backend).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import weakref
from pathlib import Path

import numpy as np

import tensorgrad as tg
import tensorgrad.distributed as dist
from tensorgrad.nn.parallel import DistributedDataParallel

STEPS = 4
DEVICE = sys.argv[2] if len(sys.argv) > 2 else "cpu"
BATCH = 8


def mlp() -> tg.nn.Module:
    tg.manual_seed(0)
    return tg.nn.Sequential(tg.nn.Linear(5, 7), tg.nn.Tanh(), tg.nn.Linear(7, 7), tg.nn.Tanh(),
                            tg.nn.Linear(7, 3)).double().to(DEVICE)


def data(step: int) -> tuple[tg.Tensor, tg.Tensor]:
    rng = np.random.default_rng(100 + step)
    return (tg.tensor(rng.standard_normal((BATCH, 5)), device=DEVICE),
            tg.tensor(rng.integers(0, 3, BATCH), device=DEVICE))


def shard(t: tg.Tensor) -> tg.Tensor:
    n = BATCH // dist.get_world_size()
    return t[dist.get_rank() * n:(dist.get_rank() + 1) * n]


def train(model, opt, steps, distributed, accumulate=1):
    for step in range(steps):
        opt.zero_grad()
        for micro in range(accumulate):
            x, y = data(step * accumulate + micro)
            if distributed:
                x, y = shard(x), shard(y)
            local = distributed and micro < accumulate - 1
            with model.no_sync() if local else contextlib.nullcontext():
                (tg.nn.functional.cross_entropy(model(x), y) / accumulate).backward()
        opt.step()


def params(model):
    return [p.numpy().copy() for p in model.parameters()]


def same_on_every_rank(arrays, what):
    for a in arrays:
        gathered = [tg.zeros(a.shape, dtype=tg.float64, device=DEVICE)
                    for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tg.tensor(a, device=DEVICE))
        for r, g in enumerate(gathered):
            if not np.array_equal(g.numpy(), a):
                raise AssertionError(f"{what}: rank {r} differs from rank {dist.get_rank()}")


def close(a_list, b_list, what, tol=1e-12):
    for a, b in zip(a_list, b_list, strict=True):
        err = np.abs(a - b).max()
        if not err <= tol:
            raise AssertionError(f"{what}: DDP and one process differ by {err:.3g}")


def case_optimizer(name, make_opt, accumulate=1):
    ref = mlp()
    train(ref, make_opt(ref), STEPS, False, accumulate)
    ddp = DistributedDataParallel(mlp(), bucket_cap_mb=1e-3)  # several buckets
    train(ddp, make_opt(ddp), STEPS, True, accumulate)
    close(params(ref), params(ddp.module), name)
    same_on_every_rank(params(ddp.module), name)
    report(name)


class Shared(tg.nn.Module):
    """One Linear applied twice: its parameters get two gradients per backward, both of
    which must be in before their bucket is reduced."""

    def __init__(self):
        super().__init__()
        self.inp = tg.nn.Linear(5, 7)
        self.mid = tg.nn.Linear(7, 7)
        self.out = tg.nn.Linear(7, 3)

    def forward(self, x):
        h = tg.tanh(self.inp(x))
        return self.out(tg.tanh(self.mid(tg.tanh(self.mid(h)))))


def case_shared():
    def make():
        tg.manual_seed(0)
        return Shared().double().to(DEVICE)

    ref = make()
    train(ref, tg.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9), STEPS, False)
    ddp = DistributedDataParallel(make(), bucket_cap_mb=1e-4)
    train(ddp, tg.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9), STEPS, True)
    close(params(ref), params(ddp.module), "shared")
    report("shared")


def case_batchnorm():
    tg.manual_seed(0)
    model = tg.nn.Sequential(tg.nn.Linear(5, 6), tg.nn.BatchNorm1d(6), tg.nn.ReLU(),
                             tg.nn.Linear(6, 3)).double().to(DEVICE)
    ddp = DistributedDataParallel(model)
    opt = tg.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    bn = model[1]
    for step in range(STEPS):
        # What rank 0 holds now is what every rank must start this step's forward from.
        rank0 = [b.clone() for b in (bn.running_mean, bn.running_var)]
        for t in rank0:
            dist.broadcast(t, 0)
        x, y = data(step)
        x = shard(x)
        h = model[0](x).detach().numpy()
        opt.zero_grad()
        tg.nn.functional.cross_entropy(ddp(x), shard(y)).backward()
        opt.step()
        m = bn.momentum
        expect_mean = (1 - m) * rank0[0].numpy() + m * h.mean(0)
        expect_var = (1 - m) * rank0[1].numpy() + m * h.var(0, ddof=1)
        close([bn.running_mean.numpy(), bn.running_var.numpy()], [expect_mean, expect_var],
              "batchnorm buffers from rank 0", tol=1e-12)
        same_on_every_rank(params(model), "batchnorm parameters")
    report("batchnorm")


def case_unused():
    class TwoHeads(tg.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = tg.nn.Linear(4, 4)
            self.left = tg.nn.Linear(4, 2)
            self.right = tg.nn.Linear(4, 2)

        def forward(self, x):
            h = self.body(x)
            # Even ranks use only the left head, odd ones only the right one.
            return self.left(h) if dist.get_rank() % 2 == 0 else self.right(h)

    tg.manual_seed(0)
    ddp = DistributedDataParallel(TwoHeads().double().to(DEVICE))
    x = tg.ones(2, 4, dtype=tg.float64, device=DEVICE)
    for _ in range(2):  # the second forward checks that the first reduction finished
        ddp.zero_grad()
        ddp(x).sum().backward()
    m = ddp.module
    grads = {n: p.grad for n, p in m.named_parameters()}
    size = dist.get_world_size()
    if size == 1:  # the right head is unused on every rank: its .grad stays None
        assert grads["right.weight"] is None and grads["right.bias"] is None, grads
        assert np.allclose(grads["left.bias"].numpy(), np.full(2, 2.0))
        report("unused")
        return
    assert all(g is not None for g in grads.values()), grads
    same_on_every_rank([g.numpy() for g in grads.values()], "unused parameters")
    # Each head's gradient is its users', averaged with the other ranks' zeros.
    h = m.body(x).detach()
    left = (size + 1) // 2
    assert np.allclose(grads["left.bias"].numpy(), np.full(2, 2.0) * left / size)
    assert np.allclose(grads["right.weight"].numpy(), h.sum(0).numpy() * (size - left) / size)
    report("unused")


def case_overlap():
    tg.manual_seed(0)
    model = tg.nn.Sequential(tg.nn.Linear(6, 6), tg.nn.ReLU(), tg.nn.Linear(6, 6), tg.nn.ReLU(),
                             tg.nn.Linear(6, 2)).double().to(DEVICE)
    ddp = DistributedDataParallel(model, bucket_cap_mb=1e-4)  # about one layer per bucket
    events = []
    real = dist.all_reduce

    def recording(t, *args, **kwargs):
        events.append("all_reduce started")
        return real(t, *args, **kwargs)

    dist.all_reduce = recording
    model[0].weight.register_hook(lambda g: events.append("first layer's gradient"))
    try:
        ddp(tg.ones(3, 6, dtype=tg.float64, device=DEVICE)).sum().backward()
    finally:
        dist.all_reduce = real
    first = events.index("first layer's gradient")
    assert events.index("all_reduce started") < first, events
    assert events.count("all_reduce started") == len(ddp._buckets) > 2, events
    report("overlap")


def case_dropped():
    """A DDP that is dropped is freed (its hooks hold it weakly), and the module it wrapped
    then trains alone, with local gradients."""
    model = mlp()
    ref = weakref.ref(DistributedDataParallel(model))
    gc.collect()
    assert ref() is None
    alone = mlp()
    x, y = data(0)
    for m in (model, alone):
        tg.nn.functional.cross_entropy(m(shard(x)), shard(y)).backward()
    close([p.grad.numpy() for p in model.parameters()],
          [p.grad.numpy() for p in alone.parameters()], "dropped", tol=0.0)
    report("dropped")


def case_resume():
    def fresh():
        ddp = DistributedDataParallel(mlp())
        return ddp, tg.optim.Adam(ddp.parameters(), lr=0.01)

    whole, opt = fresh()
    train(whole, opt, STEPS, True)
    first, opt = fresh()
    train(first, opt, STEPS // 2, True)
    folder = Path(sys.argv[1])
    path = folder / "ckpt.tg"
    if dist.get_rank() == 0:  # one writer (atomic), then everyone reads
        tg.save({"model": first.state_dict(), "opt": opt.state_dict()}, path)
    dist.barrier()
    state = tg.load(path, device=DEVICE)
    assert all(k.startswith("module.") for k in state["model"]), list(state["model"])
    second, opt = fresh()
    second.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    for step in range(STEPS // 2, STEPS):
        x, y = data(step)
        opt.zero_grad()
        tg.nn.functional.cross_entropy(second(shard(x)), shard(y)).backward()
        opt.step()
    close(params(whole.module), params(second.module), "resume", tol=0.0)
    report("resume")


def report(name):
    if dist.get_rank() == 0:
        print(f"ok {name}", flush=True)


def main():
    global DEVICE
    # None picks NCCL where every rank has a GPU: the path to test for cuda.
    dist.init_process_group("mpi" if DEVICE == "cpu" else None, timeout=60)
    assert dist.get_backend() == ("mpi" if DEVICE == "cpu" else "nccl"), dist.get_backend()
    if DEVICE == "cuda":  # each rank on its own GPU, where its NCCL communicator is
        DEVICE = f"cuda:{dist.get_node_local_rank() % tg.cuda.device_count()}"
    assert BATCH % dist.get_world_size() == 0
    case_optimizer("sgd-momentum", lambda m: tg.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    case_optimizer("adam", lambda m: tg.optim.Adam(m.parameters(), lr=0.01))
    case_optimizer("no_sync", lambda m: tg.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
                   accumulate=2)
    case_shared()
    case_batchnorm()
    case_unused()
    case_overlap()
    case_dropped()
    case_resume()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
