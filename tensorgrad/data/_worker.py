"""DataLoader worker processes: the loop each worker runs, and the pool the loader drives.

The protocol: the loader sends each worker tasks (serial, key, indices) on the worker's own
queue; the worker answers (serial, key, batch) on one shared result queue. `indices` is the
list of sample indices of a map-style batch, or None for "your next batch" of an
IterableDataset. `serial` counts the loader's epochs, so a persistent worker restarts its
iterable dataset at a new epoch and results of an abandoned epoch are told apart.
Tensors cross the process boundary as NumPy arrays (a Tensor holds its backend, which
does not pickle) and are rebuilt as CPU tensors in the loader's process.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import random
import traceback
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._tensor import Tensor

_POLL_S = 1.0  # how often a waiting loader checks that its workers are still alive


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker process knows about itself, as torch.utils.data.get_worker_info()."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """This worker's WorkerInfo inside a DataLoader worker process, None elsewhere."""
    return _worker_info


class _End:
    """A worker's answer when its IterableDataset has no further batch."""


@dataclass(frozen=True)
class _Failure:
    """An exception raised in a worker, carried back as text (it may not pickle)."""

    worker_id: int
    text: str


@dataclass(frozen=True)
class _Array:
    """A Tensor on its way between processes."""

    array: np.ndarray


def _pack(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        if obj.device.type != "cpu":
            raise RuntimeError(f"a DataLoader worker produced a tensor on {obj.device}; workers "
                               "run on the CPU: keep the dataset on the CPU and move each "
                               "batch to the device in the training loop")
        return _Array(obj.numpy())
    if isinstance(obj, tuple):
        return tuple(_pack(v) for v in obj)
    if isinstance(obj, list):
        return [_pack(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _pack(v) for k, v in obj.items()}
    return obj


def _unpack(obj: Any) -> Any:
    if isinstance(obj, _Array):
        return Tensor(obj.array, device="cpu")
    if isinstance(obj, tuple):
        return tuple(_unpack(v) for v in obj)
    if isinstance(obj, list):
        return [_unpack(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _unpack(v) for k, v in obj.items()}
    return obj


def _seed_everything(seed: int) -> None:
    """Seed what a dataset draws from, as PyTorch's workers do: Python's random, NumPy's
    global generator and tensorgrad's generators."""
    from .._creation import manual_seed

    random.seed(seed)
    np.random.seed(seed % 2**32)
    manual_seed(seed)


def _worker_loop(worker_id: int, num_workers: int, seed: int, dataset: Any, fetch: Any,
                 worker_init_fn: Any, tasks: Any, results: Any) -> None:
    global _worker_info
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    try:
        _seed_everything(seed)
        if worker_init_fn is not None:
            worker_init_fn(worker_id)
    except Exception:
        results.put((None, None, _Failure(worker_id, traceback.format_exc())))
        return
    stream, stream_serial = None, None
    while (task := tasks.get()) is not None:
        serial, key, indices = task
        try:
            if indices is None:
                if stream_serial != serial:
                    stream, stream_serial = iter(dataset), serial
                batch = fetch(stream)
            else:
                batch = fetch(indices)
            answer = _End() if indices is None and batch is None else _pack(batch)
        except Exception:
            answer = _Failure(worker_id, traceback.format_exc())
        results.put((serial, key, answer))
    # Shut down: answers nobody will read must not keep this process from exiting.
    results.cancel_join_thread()


class WorkerError(RuntimeError):
    """An exception in a DataLoader worker process (its traceback is in the message)."""


class WorkerPool:
    """num_workers processes with a task queue each and one result queue."""

    def __init__(self, num_workers: int, base_seed: int, dataset: Any, fetch: Any,
                 worker_init_fn: Any, context: Any) -> None:
        ctx = multiprocessing.get_context(context)
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(num_workers)]
        self.processes = [
            ctx.Process(target=_worker_loop, daemon=True,
                        args=(i, num_workers, base_seed + i, dataset, fetch, worker_init_fn,
                              self.tasks[i], self.results))
            for i in range(num_workers)]
        for p in self.processes:
            p.start()
        self._finalizer = weakref.finalize(self, _shutdown, self.processes, self.tasks,
                                           self.results)
        self._received: dict[Any, Any] = {}

    def send(self, worker: int, serial: int, key: int, indices: list[int] | None) -> None:
        self.tasks[worker].put((serial, key, indices))

    def receive(self, serial: int, key: int) -> Any:
        """The answer to task `key` of epoch `serial` (answers arrive in any order)."""
        while (serial, key) not in self._received:
            try:
                got_serial, got_key, answer = self.results.get(timeout=_POLL_S)
            except queue.Empty:
                dead = [(i, p.exitcode) for i, p in enumerate(self.processes)
                        if not p.is_alive()]
                if not dead:
                    continue
                try:  # what a worker sent just before it ended may still be on its way
                    got_serial, got_key, answer = self.results.get(timeout=_POLL_S)
                except queue.Empty:
                    self.close()
                    raise WorkerError("DataLoader worker(s) exited unexpectedly: "
                                      + ", ".join(f"worker {i} with exit code {code}"
                                                  for i, code in dead)) from None
            if isinstance(answer, _Failure):
                self.close()
                raise WorkerError(f"in DataLoader worker process {answer.worker_id}:\n"
                                  f"{answer.text}")
            if got_serial == serial:  # older epochs' answers were abandoned
                self._received[got_serial, got_key] = answer
        answer = self._received.pop((serial, key))
        return None if isinstance(answer, _End) else _unpack(answer)

    def forget(self) -> None:
        """Drop answers kept from an epoch that was left before its end."""
        self._received.clear()

    def close(self) -> None:
        self._finalizer()


def _shutdown(processes: list[Any], tasks: list[Any], results: Any) -> None:
    for q in tasks:
        try:
            q.put(None)
        except (OSError, ValueError):  # already closed
            pass
    for p in processes:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()
            p.join()
    for q in itertools.chain(tasks, [results]):
        q.cancel_join_thread()  # unread answers must not block this process's exit
        q.close()
