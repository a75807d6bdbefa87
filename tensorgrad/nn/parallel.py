"""DistributedDataParallel: one model replica per rank, gradients averaged during backward.

The shape is PyTorch DDP's (Li et al., VLDB 2020): parameters are packed, in reverse
registration order (about the order backward produces their gradients), into buckets of about
bucket_cap_mb; a hook on each parameter copies its gradient into its bucket, and a bucket's
all-reduce starts, non-blocking, as soon as its last gradient is in, while backward goes on.
The last gradient of the iteration waits for every bucket and writes the averages into .grad,
so backward returns with every rank holding the same gradients.

tensorgrad's engine calls a leaf's hooks once per use of the leaf in the graph, before adding
that use's gradient to .grad, so forward walks the graph it recorded and counts each
parameter's uses: a parameter is ready at its last use's hook, and one with no use (unused in
this iteration) is ready at once, as under PyTorch's find_unused_parameters.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Iterator
from typing import Any

from .. import distributed as dist
from .._tensor import Tensor
from ..autograd import is_grad_enabled, no_grad
from ..distributed._group import on_device as _on
from .module import Module, Parameter

_FIRST_BUCKET_BYTES = 1 << 20  # a small first bucket, as PyTorch's, so reduction starts early


class _Bucket:
    """Gradients of a run of parameters of one dtype and device, flat, followed by one flag per
    parameter (whether this rank had a gradient for it), all-reduced as one tensor."""

    def __init__(self, members: list[int], params: list[Parameter]) -> None:
        self.members = members
        self.offsets = []
        total = 0
        for i in members:
            self.offsets.append(total)
            total += params[i].numel()
        self.numel = total
        first = params[members[0]]
        with _on(first._backend):
            flat = first._backend.xp.zeros(total + len(members), first._data.dtype)
        self.flat = Tensor._make(flat, first._backend)
        self.ready = 0
        self.work: Any = None


class DistributedDataParallel(Module):
    """Data parallelism over the ranks of tg.distributed, as torch.nn.parallel.DDP.

    On construction, checks that every rank holds the same parameters (names, shapes, dtypes;
    a mismatch raises on every rank, naming the first difference) and copies rank 0's
    parameters and buffers to all. Each forward with gradients enabled (outside no_sync) first
    copies rank 0's buffers (BatchNorm statistics) to every rank (broadcast_buffers, as
    PyTorch's default); the backward that follows leaves in .grad the average over ranks of
    each rank's gradient (accumulated ones included). A parameter that no rank used keeps its
    .grad; find_unused_parameters is accepted for PyTorch's signature: unused parameters are
    always found. One backward per forward, as in PyTorch: the reduction follows the graph of
    the latest forward. State dict keys carry the `module.` prefix, as PyTorch's.
    """

    def __init__(self, module: Module, bucket_cap_mb: float = 25.0,
                 broadcast_buffers: bool = True, find_unused_parameters: bool = False) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel wraps a Module, got {type(module).__name__}")
        if not bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb!r}")
        if not dist.is_initialized():
            raise ValueError("DistributedDataParallel needs a process group: call "
                             "tg.distributed.init_process_group() first")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.bucket_cap_mb = bucket_cap_mb
        self.require_backward_grad_sync = True
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._index = {id(p): i for i, p in enumerate(self._params)}
        _check_same_model(module)
        with no_grad():
            _broadcast_coalesced(list(module.parameters()) + list(module.buffers()))
        self._buckets = self._make_buckets(bucket_cap_mb)
        self._bucket_of = {}
        for b, bucket in enumerate(self._buckets):
            for slot, i in enumerate(bucket.members):
                self._bucket_of[i] = (b, slot)
        self._uses: list[int] | None = None  # per parameter, uses left in this backward
        self._unused: set[int] = set()  # parameters this iteration's forward did not use
        self._hooks_left = 0
        self._next_bucket = 0
        self._started = False
        # The hooks hold the wrapper weakly: a DDP that is dropped can be freed (its buckets
        # are as large as the model), and its hooks then do nothing.
        ref = weakref.ref(self)
        for i, p in enumerate(self._params):
            p.register_hook(functools.partial(_hook, ref, i))

    def _make_buckets(self, cap_mb: float) -> list[_Bucket]:
        cap = int(cap_mb * (1 << 20))
        buckets: list[_Bucket] = []
        members: list[int] = []
        size = 0
        limit = min(cap, _FIRST_BUCKET_BYTES)
        for i in reversed(range(len(self._params))):
            p = self._params[i]
            if members and (p._data.dtype != self._params[members[0]]._data.dtype
                            or p._backend is not self._params[members[0]]._backend):
                buckets.append(_Bucket(members, self._params))
                members, size, limit = [], 0, cap
            members.append(i)
            size += p._data.nbytes
            if size >= limit:
                buckets.append(_Bucket(members, self._params))
                members, size, limit = [], 0, cap
        if members:
            buckets.append(_Bucket(members, self._params))
        return buckets

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if self._started:
            left = [self._names[i] for i, n in enumerate(self._uses or ()) if n > 0]
            raise RuntimeError(
                "DistributedDataParallel: the previous iteration's gradient reduction did not "
                "finish, so its gradients were not averaged: backward reached no gradient for "
                f"{', '.join(left) or 'some parameters'} although forward used them (an output "
                "left out of the loss?). Make every output that depends on a parameter take "
                "part in the loss.")
        sync = is_grad_enabled() and self.require_backward_grad_sync
        if sync and self.broadcast_buffers:
            buffers = list(self.module.buffers())
            if buffers:
                with no_grad():
                    _broadcast_coalesced(buffers)
        output = self.module(*inputs, **kwargs)
        if sync and self._params:
            self._prepare_for_backward(output)
        return output

    def _prepare_for_backward(self, output: Any) -> None:
        uses = [0] * len(self._params)
        seen: set[int] = set()
        stack = [t._grad_fn if t._grad_fn is not None else t for t in _tensors(output)
                 if t.requires_grad]
        while stack:
            node = stack.pop()
            if isinstance(node, Tensor):  # a parameter returned as it is
                i = self._index.get(id(node))
                if i is not None:
                    uses[i] += 1
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            for parent in node.parents:
                if parent is None:
                    continue
                if isinstance(parent, Tensor):
                    i = self._index.get(id(parent))
                    if i is not None:
                        uses[i] += 1
                elif id(parent) not in seen:
                    stack.append(parent)
        self._uses = uses
        self._unused = {i for i, n in enumerate(uses) if n == 0}
        self._hooks_left = sum(uses)
        self._next_bucket = 0
        self._started = False
        for bucket in self._buckets:
            bucket.ready = sum(1 for i in bucket.members if uses[i] == 0)
            bucket.work = None

    # ---- backward --------------------------------------------------------------------------
    def _on_grad(self, i: int, grad: Tensor) -> Tensor | None:
        uses = self._uses
        if uses is None or uses[i] == 0:
            return None  # no reduction prepared (no_sync, or a backward of another graph)
        self._started = True
        uses[i] -= 1
        self._hooks_left -= 1
        p = self._params[i]
        if uses[i] == 0:
            local = grad if p.grad is None else p.grad + grad
            b, slot = self._bucket_of[i]
            bucket = self._buckets[b]
            self._pack(bucket, slot, local)
            bucket.ready += 1
            self._launch_ready()
        if self._hooks_left:
            return None
        self._launch_ready()
        reduced = self._finish()
        # The engine adds what this hook returns to .grad: clear it so that .grad becomes the
        # average itself.
        p.grad = None
        return reduced[i]

    def _pack(self, bucket: _Bucket, slot: int, grad: Tensor | None) -> None:
        i = bucket.members[slot]
        start = bucket.offsets[slot]
        p = self._params[i]
        data = bucket.flat._data
        with _on(bucket.flat._backend):
            if grad is None:
                data[start:start + p.numel()] = 0
                data[bucket.numel + slot] = 0
            else:
                data[start:start + p.numel()] = grad._data.reshape(-1)
                data[bucket.numel + slot] = 1

    def _launch_ready(self) -> None:
        """Start the all-reduce of every full bucket, in bucket order on every rank (so that
        the ranks' collectives match whatever order their gradients came in)."""
        buckets = self._buckets
        while self._next_bucket < len(buckets):
            bucket = buckets[self._next_bucket]
            if bucket.ready < len(bucket.members):
                break
            for slot, i in enumerate(bucket.members):
                if i in self._unused:  # packed now: .grad may have been zeroed after forward
                    self._pack(bucket, slot, self._params[i].grad)
            bucket.work = dist.all_reduce(bucket.flat, async_op=True)
            self._next_bucket += 1
        for bucket in buckets[:self._next_bucket]:
            bucket.work.is_completed()  # lets MPI progress while backward goes on

    def _finish(self) -> dict[int, Tensor]:
        """Wait for every bucket and set each used parameter's .grad to the average."""
        size = dist.get_world_size()
        reduced: dict[int, Tensor] = {}
        for bucket in self._buckets:
            bucket.work.wait()
            data = bucket.flat._data
            backend = bucket.flat._backend
            with _on(backend):
                had_grad = backend.to_numpy(data[bucket.numel:])  # one read, not one per flag
                for slot, i in enumerate(bucket.members):
                    if not had_grad[slot]:
                        continue  # no rank had a gradient for it
                    p = self._params[i]
                    start = bucket.offsets[slot]
                    avg = data[start:start + p.numel()].reshape(p.shape) / size
                    reduced[i] = p.grad = Tensor._make(avg, backend)
        self._uses = None
        self._started = False
        return reduced

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Gradients of forwards run inside accumulate locally; the first forward/backward
        after it averages the accumulated sum, as torch's no_sync."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    def extra_repr(self) -> str:
        return f"bucket_cap_mb={self.bucket_cap_mb:g}, buckets={len(self._buckets)}"


def _hook(ref: weakref.ref, i: int, grad: Tensor) -> Tensor | None:
    ddp = ref()
    return None if ddp is None else ddp._on_grad(i, grad)


def _tensors(output: Any) -> Iterator[Tensor]:
    if isinstance(output, Tensor):
        yield output
    elif isinstance(output, (list, tuple)):
        for item in output:
            yield from _tensors(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from _tensors(item)


def _check_same_model(module: Module) -> None:
    """Raise on every rank, naming the first difference, unless every rank's module has the
    same parameters and buffers (names, shapes, dtypes): a rank with another model would
    otherwise wait forever in a collective the others never start."""
    mine = [(kind, name, t.shape, t.dtype.name)
            for kind, members in (("parameter", module.named_parameters()),
                                  ("buffer", module.named_buffers()))
            for name, t in members]
    models = [None] * dist.get_world_size()
    dist.all_gather_object(models, mine)
    reference = models[0]
    for rank, model in enumerate(models):
        if model == reference:
            continue
        for k in range(max(len(model), len(reference))):
            ours = model[k] if k < len(model) else None
            theirs = reference[k] if k < len(reference) else None
            if ours != theirs:
                raise ValueError(
                    f"DistributedDataParallel: the ranks hold different models: rank {rank} has "
                    f"{_describe(ours)} where rank 0 has {_describe(theirs)}; every rank must "
                    "build the same model")


def _describe(entry: Any) -> str:
    if entry is None:
        return "nothing"
    kind, name, shape, dtype = entry
    return f"{kind} {name!r} of shape {shape} and dtype {dtype}"


def _broadcast_coalesced(tensors: list[Tensor]) -> None:
    """Copy rank 0's values into `tensors` on every rank: one broadcast per dtype and device."""
    groups: dict[Any, list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t._data.dtype, t._backend), []).append(t)
    for (_, backend), members in groups.items():
        with _on(backend):
            flat = Tensor._make(backend.xp.concatenate([t._data.reshape(-1) for t in members]),
                                backend)
            dist.broadcast(flat, 0)
            start = 0
            for t in members:
                n = t._data.size
                t._data[...] = flat._data[start:start + n].reshape(t._data.shape)
                t._version[0] += 1
                start += n
