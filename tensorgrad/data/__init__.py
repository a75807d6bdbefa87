"""tg.data: datasets of tensors and the loader that batches and shuffles them.

What lives here: TensorDataset and DataLoader (as torch.utils.data's). Ready-made data sets
(digits, spirals, 1-D regression) live in tg.data.datasets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._device import Device
from .._tensor import Tensor
from ..backend import get_backend
from ..ops.shape import stack
from . import datasets


class TensorDataset:
    """Samples are the rows of tensors that share their first dimension, as
    torch.utils.data.TensorDataset: dataset[i] is (t[i] for t in tensors)."""

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        for k, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset: argument {k} is a {type(t).__name__}, "
                                "expected a Tensor")
            if t.ndim == 0:
                raise ValueError(f"TensorDataset: tensor {k} is 0-d; samples are taken along "
                                 "the first dimension")
        sizes = [t.shape[0] for t in tensors]
        if len(set(sizes)) > 1:
            shapes = ", ".join(str(t.shape) for t in tensors)
            raise ValueError(f"TensorDataset: tensors must have the same first dimension, got "
                             f"shapes {shapes}")
        self.tensors = tensors

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index: Any) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)


class DataLoader:
    """Batches of a dataset, as torch.utils.data.DataLoader (single process).

    Each batch has the structure of one sample with every field batched along a new first
    dimension: a TensorDataset gives tuples of Tensors (gathered with one indexing op per
    tensor); another dataset's samples (Tensors, numbers or tuples of them) are stacked.

    With shuffle=True the order changes every epoch. Under a seed it is a function of
    (seed, epoch) only, so two loaders with one seed agree, and setting `loader.epoch` replays
    the order of any epoch (for resuming); with seed=None each epoch's order is drawn from the
    CPU generator, so tg.manual_seed makes it reproducible. `epoch` counts the iterations
    started so far.
    """

    def __init__(self, dataset: Any, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, seed: int | None = None) -> None:
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader needs a dataset with __len__ and __getitem__, got "
                            f"{type(dataset).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                                 or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self) -> np.ndarray | None:
        """This epoch's sample order, or None for 0, 1, 2, ... (then batches are slices)."""
        if not self.shuffle:
            return None
        if self.seed is None:
            rng = get_backend(Device("cpu")).random()
        else:
            rng = np.random.default_rng([self.seed, self.epoch])
        return rng.permutation(len(self.dataset))

    def __iter__(self) -> Iterator[Any]:
        order = self._order()
        self.epoch += 1
        n = len(self.dataset)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, n)
            index = slice(start, end) if order is None else order[start:end]
            yield self._batch(index)

    def _batch(self, index: Any) -> Any:
        if isinstance(self.dataset, TensorDataset):
            return self.dataset[index]
        rows = range(len(self.dataset))[index] if isinstance(index, slice) else index
        return _collate([self.dataset[int(i)] for i in rows])

    def __repr__(self) -> str:
        return (f"DataLoader(batches={len(self)}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed})")


def _collate(samples: list[Any]) -> Any:
    """One batch from a list of samples of one structure, as torch's default_collate."""
    first = samples[0]
    if isinstance(first, Tensor):
        return stack(samples)
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in samples):
            raise ValueError("DataLoader: samples of one batch have different numbers of fields")
        return tuple(_collate([s[k] for s in samples]) for k in range(len(first)))
    if isinstance(first, (bool, int, float, np.generic, np.ndarray)):
        return Tensor(np.asarray(samples))
    raise TypeError(f"DataLoader cannot batch samples of type {type(first).__name__}; return "
                    "Tensors, numbers or tuples of them from the dataset")


__all__ = ["DataLoader", "TensorDataset", "datasets"]
