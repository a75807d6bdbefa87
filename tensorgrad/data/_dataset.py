"""Dataset kinds, as torch.utils.data's: map-style (Dataset, TensorDataset) and IterableDataset."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .._tensor import Tensor


class Dataset:
    """A map-style dataset: subclasses define __len__ and __getitem__(index) -> one sample."""

    def __getitem__(self, index: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


class IterableDataset:
    """A stream of samples: subclasses define __iter__. With worker processes, each worker
    iterates its own copy; split the stream with get_worker_info(), as in PyTorch."""

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


class TensorDataset(Dataset):
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

    def __reduce__(self) -> tuple[Any, ...]:
        # A Tensor holds its backend, which does not pickle; DataLoader workers started by
        # spawn or forkserver receive the dataset pickled, so it travels as arrays.
        return (_tensor_dataset, tuple((t.numpy(), str(t.device)) for t in self.tensors))


def _tensor_dataset(*arrays: tuple[Any, str]) -> TensorDataset:
    return TensorDataset(*(Tensor(array, device=device) for array, device in arrays))
