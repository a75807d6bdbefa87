"""DataLoader: batches of a dataset, shuffled per epoch, in this process or in worker processes."""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .._device import Device
from .._tensor import Tensor
from ..backend import get_backend
from ..ops.shape import stack
from ._dataset import IterableDataset, TensorDataset
from ._worker import WorkerPool


def default_collate(samples: list[Any]) -> Any:
    """One batch from a list of samples of one structure, as torch's default_collate: Tensors
    are stacked along a new first dimension, numbers and NumPy arrays become a Tensor, tuples,
    lists and dicts are batched field by field, strings are kept as a list."""
    first = samples[0]
    if isinstance(first, Tensor):
        return stack(samples)
    if isinstance(first, str):
        return list(samples)
    if isinstance(first, dict):
        if any(s.keys() != first.keys() for s in samples):
            raise ValueError("DataLoader: dict samples of one batch have different keys")
        return {k: default_collate([s[k] for s in samples]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in samples):
            raise ValueError("DataLoader: samples of one batch have different numbers of fields")
        fields = [default_collate([s[k] for s in samples]) for k in range(len(first))]
        if isinstance(first, tuple) and hasattr(first, "_fields"):  # a namedtuple
            return type(first)(*fields)
        return tuple(fields)
    if isinstance(first, (bool, int, float, np.generic, np.ndarray)):
        return Tensor(np.asarray(samples))
    raise TypeError(f"DataLoader cannot batch samples of type {type(first).__name__}; return "
                    "Tensors, numbers, strings, or tuples or dicts of them from the dataset, "
                    "or pass a collate_fn")


class _Fetch:
    """Builds one batch: from a list of indices (map-style) or from the next samples of a
    stream (iterable; None when the stream has no further batch). A class, not a closure, so
    that it pickles for workers started by spawn or forkserver."""

    def __init__(self, dataset: Any, collate_fn: Callable[[list[Any]], Any] | None,
                 batch_size: int, drop_last: bool) -> None:
        self.dataset = dataset
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        # A TensorDataset batch by default is one indexing op per tensor, not a stack of rows.
        self.whole_batches = collate_fn is None and isinstance(dataset, TensorDataset)
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __call__(self, source: Any) -> Any:
        if isinstance(source, Iterator):
            samples = list(itertools.islice(source, self.batch_size))
            if not samples or (self.drop_last and len(samples) < self.batch_size):
                return None
            return self.collate_fn(samples)
        if self.whole_batches:
            return self.dataset[source]
        rows = range(len(self.dataset))[source] if isinstance(source, slice) else source
        return self.collate_fn([self.dataset[int(i)] for i in rows])


class DataLoader:
    """Batches of a dataset, as torch.utils.data.DataLoader.

    Each batch has the structure of one sample with every field batched along a new first
    dimension (`default_collate`, or your `collate_fn(list_of_samples)`): a TensorDataset gives
    tuples of Tensors (one indexing op per tensor); dict samples give dicts of batches.

    With shuffle=True the order changes every epoch. Under a seed it is a function of
    (seed, epoch) only, so two loaders with one seed agree, and setting `loader.epoch` replays
    the order of any epoch (for resuming); with seed=None each epoch's order is drawn from the
    CPU generator, so tg.manual_seed makes it reproducible. `epoch` counts the iterations
    started so far. `sampler` (an iterable of indices) replaces the order instead.

    num_workers > 0 builds batches in that many worker processes (multiprocessing, batches in
    order, `prefetch_factor` batches ahead per worker). Worker i is seeded with base_seed + i
    (Python's random, NumPy's global generator and tensorgrad's), base_seed being drawn for
    each epoch's workers from the seed or the CPU generator, then calls worker_init_fn(i);
    `get_worker_info()` tells a dataset which worker runs it. Workers run on the CPU, so the
    dataset must hold CPU tensors (move each batch to the GPU in the loop), and with a spawn
    or forkserver `multiprocessing_context` (Python's default from 3.14 on) it must pickle, as
    a TensorDataset does. `persistent_workers` keeps the
    workers from one epoch to the next. `pin_memory` is accepted for PyTorch's scripts and
    changes nothing: batches are built in ordinary host memory.
    """

    def __init__(self, dataset: Any, batch_size: int = 1, shuffle: bool = False,
                 sampler: Iterable[int] | None = None, *, num_workers: int = 0,
                 collate_fn: Callable[[list[Any]], Any] | None = None,
                 pin_memory: bool = False, drop_last: bool = False,
                 worker_init_fn: Callable[[int], None] | None = None,
                 multiprocessing_context: str | None = None,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 seed: int | None = None) -> None:
        iterable = isinstance(dataset, IterableDataset)
        if not iterable and not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader needs a dataset with __len__ and __getitem__ (or a "
                            f"tg.data.IterableDataset), got {type(dataset).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                                 or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        if iterable and (shuffle or sampler is not None):
            raise ValueError("DataLoader: an IterableDataset gives its own order; shuffle and "
                             "sampler are for map-style datasets")
        if shuffle and sampler is not None:
            raise ValueError("DataLoader: sampler and shuffle=True are mutually exclusive")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
        if num_workers == 0 and (prefetch_factor is not None or persistent_workers):
            raise ValueError("prefetch_factor and persistent_workers need num_workers > 0")
        if prefetch_factor is not None and (isinstance(prefetch_factor, bool)
                                            or not isinstance(prefetch_factor, int)
                                            or prefetch_factor < 1):
            raise ValueError(f"prefetch_factor must be a positive int, got {prefetch_factor!r}")
        if num_workers and isinstance(dataset, TensorDataset):
            devices = {str(t.device) for t in dataset.tensors if t.device.type != "cpu"}
            if devices:
                raise ValueError(f"DataLoader workers run on the CPU, but the dataset holds "
                                 f"tensors on {', '.join(sorted(devices))}: keep it on the CPU "
                                 f"and move each batch, or use num_workers=0")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.sampler = sampler
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.prefetch_factor = 2 if num_workers and prefetch_factor is None else prefetch_factor
        self.persistent_workers = persistent_workers
        self.seed = seed
        self.epoch = 0
        self._fetch = _Fetch(dataset, collate_fn, batch_size, drop_last)
        self._pool: WorkerPool | None = None

    def __len__(self) -> int:
        if isinstance(self.dataset, IterableDataset) and not hasattr(self.dataset, "__len__"):
            raise TypeError(f"this DataLoader's {type(self.dataset).__name__} has no length")
        n = len(self.dataset) if self.sampler is None else len(self.sampler)  # type: ignore
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _rng(self, stream: int) -> np.random.Generator:
        """The generator of this epoch's draws: from (seed, epoch, stream) when seeded."""
        if self.seed is None:
            return get_backend(Device("cpu")).random()
        return np.random.default_rng([self.seed, self.epoch, stream] if stream else
                                     [self.seed, self.epoch])

    def _batches(self) -> list[Any] | None:
        """This epoch's batches of indices (slices when unshuffled), None for a stream."""
        if isinstance(self.dataset, IterableDataset):
            return None
        if self.sampler is not None:
            order: Any = list(self.sampler)
        elif self.shuffle:
            order = self._rng(0).permutation(len(self.dataset))
        else:
            order = None
        n = len(self.dataset) if order is None else len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        return [slice(start, min(start + self.batch_size, n)) if order is None
                else order[start:start + self.batch_size]
                for start in range(0, stop, self.batch_size)]

    def __iter__(self) -> Iterator[Any]:
        batches = self._batches()
        serial = self.epoch
        if not self.num_workers:
            self.epoch += 1
            return self._in_process(batches)
        pool = self._pool or self._start_workers()  # its seeds are this epoch's
        self.epoch += 1
        return self._from_workers(pool, serial, batches)

    def _in_process(self, batches: list[Any] | None) -> Iterator[Any]:
        if batches is not None:
            yield from map(self._fetch, batches)
            return
        stream = iter(self.dataset)
        while (batch := self._fetch(stream)) is not None:
            yield batch

    def _start_workers(self) -> WorkerPool:
        base_seed = int(self._rng(1).integers(2**62))
        pool = WorkerPool(self.num_workers, base_seed, self.dataset, self._fetch,
                          self.worker_init_fn, self.multiprocessing_context)
        if self.persistent_workers:
            self._pool = pool
        return pool

    def _from_workers(self, pool: WorkerPool, serial: int,
                      batches: list[Any] | None) -> Iterator[Any]:
        # Tasks go round-robin to the workers and batches come back in the order sent. For a
        # stream, a worker that answered "no further batch" gets no more requests.
        keys = itertools.count()
        todo = None if batches is None else iter(batches)
        workers = deque(range(self.num_workers))
        sent: deque[tuple[int, int]] = deque()

        def send() -> None:
            if not workers:
                return
            if todo is None:
                indices = None
            elif (indices := next(todo, None)) is None:
                return
            worker = workers[0]
            workers.rotate(-1)
            key = next(keys)
            pool.send(worker, serial, key, indices)
            sent.append((key, worker))

        try:
            for _ in range(self.prefetch_factor * self.num_workers):  # type: ignore[operator]
                send()
            while sent:
                key, worker = sent.popleft()
                batch = pool.receive(serial, key)
                ended = todo is None and batch is None
                if ended and worker in workers:
                    workers.remove(worker)
                send()
                if not ended:
                    yield batch
        finally:
            if pool is self._pool:
                pool.forget()
            else:
                pool.close()

    def __repr__(self) -> str:
        try:
            batches = str(len(self))
        except TypeError:  # a stream without a length
            batches = "?"
        workers = f", num_workers={self.num_workers}" if self.num_workers else ""
        return (f"DataLoader(batches={batches}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed}"
                f"{workers})")
