"""tg.data (also tg.utils.data): datasets, and the loader that batches and shuffles them.

What lives here: Dataset, IterableDataset, TensorDataset, DataLoader (with worker processes),
default_collate and get_worker_info, as torch.utils.data's. Ready-made data sets (digits,
spirals, 1-D regression) live in tg.data.datasets.
"""

from __future__ import annotations

from . import datasets
from ._dataset import Dataset, IterableDataset, TensorDataset
from ._loader import DataLoader, default_collate
from ._worker import WorkerError, WorkerInfo, get_worker_info
from .distributed import DistributedSampler

__all__ = ["DataLoader", "Dataset", "DistributedSampler", "IterableDataset", "TensorDataset",
           "WorkerError", "WorkerInfo", "datasets", "default_collate", "get_worker_info"]
