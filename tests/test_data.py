"""tg.data: TensorDataset, DataLoader (batching, shuffling, epochs) and the bundled data sets."""

from __future__ import annotations

import builtins
import os
import pickle
import random

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    TensorDataset,
    WorkerError,
    datasets,
    get_worker_info,
)


def _xy(n: int, device: str) -> tuple[tg.Tensor, tg.Tensor]:
    x = tg.arange(n * 2, dtype=tg.float32, device=device).reshape(n, 2)
    y = tg.arange(n, dtype=tg.int64, device=device)
    return x, y


def test_tensor_dataset_indexes_rows(device):
    x, y = _xy(5, device)
    ds = TensorDataset(x, y)
    assert len(ds) == 5
    xi, yi = ds[3]
    assert xi.tolist() == [6.0, 7.0] and yi.item() == 3 and xi.device == device


def test_tensor_dataset_refuses_mismatched_or_bad_tensors():
    with pytest.raises(ValueError, match=r"same first dimension.*\(5, 2\), \(4,\)"):
        TensorDataset(tg.zeros(5, 2), tg.zeros(4))
    with pytest.raises(ValueError, match="at least one tensor"):
        TensorDataset()
    with pytest.raises(ValueError, match="tensor 0 is 0-d"):
        TensorDataset(tg.tensor(1.0))
    with pytest.raises(TypeError, match="argument 1 is a list"):
        TensorDataset(tg.zeros(2), [1, 2])


@pytest.mark.parametrize("n, batch, drop_last, sizes", [
    (10, 3, False, [3, 3, 3, 1]),
    (10, 3, True, [3, 3, 3]),
    (9, 3, True, [3, 3, 3]),
    (2, 5, False, [2]),
    (2, 5, True, []),
])
def test_batch_sizes_and_len(device, n, batch, drop_last, sizes):
    loader = DataLoader(TensorDataset(*_xy(n, device)), batch_size=batch, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(sizes)
    assert [b[1].shape[0] for b in batches] == sizes
    assert all(isinstance(b, tuple) and len(b) == 2 for b in batches)
    assert all(b[0].shape[1:] == (2,) and b[0].device == device for b in batches)


def test_unshuffled_order_is_the_dataset_order(device):
    x, y = _xy(7, device)
    batches = list(DataLoader(TensorDataset(x, y), batch_size=3))
    assert [v for _, yb in batches for v in yb.tolist()] == list(range(7))
    np.testing.assert_array_equal(np.concatenate([xb.numpy() for xb, _ in batches]), x.numpy())


def _epoch(loader: DataLoader) -> list[int]:
    return [v for _, yb in loader for v in yb.tolist()]


def test_shuffle_is_a_permutation_that_changes_every_epoch_and_repeats_under_a_seed(device):
    ds = TensorDataset(*_xy(50, device))
    a = DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    b = DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    epochs_a = [_epoch(a) for _ in range(3)]
    epochs_b = [_epoch(b) for _ in range(3)]
    assert epochs_a == epochs_b
    assert all(sorted(e) == list(range(50)) for e in epochs_a)
    assert epochs_a[0] != epochs_a[1] != epochs_a[2] and epochs_a[0] != list(range(50))
    assert a.epoch == 3
    other = DataLoader(ds, batch_size=8, shuffle=True, seed=4)
    assert _epoch(other) != epochs_a[0]


def test_rows_stay_paired_after_shuffling(device):
    x, y = _xy(20, device)
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=6, shuffle=True, seed=0):
        np.testing.assert_array_equal(xb.numpy()[:, 0], 2 * yb.numpy())


def test_setting_epoch_replays_that_epochs_order():
    ds = TensorDataset(*_xy(30, "cpu"))
    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=11)
    orders = [_epoch(loader) for _ in range(3)]
    resumed = DataLoader(ds, batch_size=4, shuffle=True, seed=11)
    resumed.epoch = 2
    assert _epoch(resumed) == orders[2]


def test_unseeded_shuffle_follows_manual_seed():
    ds = TensorDataset(*_xy(30, "cpu"))
    tg.manual_seed(5)
    first = _epoch(DataLoader(ds, batch_size=4, shuffle=True))
    tg.manual_seed(5)
    again = _epoch(DataLoader(ds, batch_size=4, shuffle=True))
    assert first == again and sorted(first) == list(range(30))


def test_batches_carry_gradients_back_to_the_dataset_tensor():
    x = tg.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    (xb,) = next(iter(DataLoader(TensorDataset(x), batch_size=2, shuffle=True, seed=1)))
    (xb * xb).sum().backward()
    picked = np.zeros(3)
    picked[[int(r[0]) // 2 for r in xb.tolist()]] = 1
    np.testing.assert_array_equal(x.grad.numpy(), 2 * x.numpy() * picked[:, None])


class _Squares:
    """A map-style dataset that is not a TensorDataset: (Tensor, int, float) per sample."""

    def __init__(self, device: str) -> None:
        self.device = device

    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int):
        return tg.tensor([i, i * i], dtype=tg.float32, device=self.device), i, i / 2


def test_generic_dataset_samples_are_stacked(device):
    batches = list(DataLoader(_Squares(device), batch_size=2))
    assert len(batches) == 3
    x, labels, halves = batches[1]
    assert x.tolist() == [[2.0, 4.0], [3.0, 9.0]] and x.device == device
    assert labels.dtype is tg.int64 and labels.tolist() == [2, 3]
    assert halves.dtype is tg.float64 and halves.tolist() == [1.0, 1.5]
    shuffled = [v for _, lb, _ in DataLoader(_Squares(device), batch_size=2, shuffle=True, seed=0)
                for v in lb.tolist()]
    assert sorted(shuffled) == [0, 1, 2, 3, 4]


def test_loader_argument_errors():
    ds = TensorDataset(tg.zeros(3))
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="seed must be"):
        DataLoader(ds, seed=-1)
    with pytest.raises(TypeError, match="__len__ and __getitem__"):
        DataLoader(iter([1, 2]))
    with pytest.raises(TypeError, match="cannot batch samples of type set.*collate_fn"):
        next(iter(DataLoader([{1}, {2}], batch_size=2)))
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, shuffle=True, sampler=[0, 1])
    with pytest.raises(ValueError, match="num_workers must be a non-negative int, got -1"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="need num_workers > 0"):
        DataLoader(ds, persistent_workers=True)
    with pytest.raises(ValueError, match="shuffle and sampler are for map-style"):
        DataLoader(_Stream(4), shuffle=True)


def test_dict_and_tuple_samples_and_a_collate_fn():
    samples = [{"x": tg.tensor([float(i), 1.0]), "label": i, "name": f"s{i}"} for i in range(5)]
    batch = next(iter(DataLoader(samples, batch_size=3)))
    assert batch.keys() == {"x", "label", "name"}
    assert batch["x"].tolist() == [[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
    assert batch["label"].tolist() == [0, 1, 2] and batch["name"] == ["s0", "s1", "s2"]
    pairs = [(tg.tensor(float(i)), (i, -i)) for i in range(4)]
    x, (a, b) = next(iter(DataLoader(pairs, batch_size=4)))
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0] and a.tolist() == [0, 1, 2, 3]
    assert b.tolist() == [0, -1, -2, -3]
    sizes = [len(b) for b in DataLoader(list(range(7)), batch_size=3, collate_fn=list)]
    assert sizes == [3, 3, 1]
    # A collate_fn replaces the TensorDataset shortcut too.
    ds = TensorDataset(*_xy(4, "cpu"))
    (first,) = DataLoader(ds, batch_size=4, collate_fn=lambda rows: [r[1].item() for r in rows])
    assert first == [0, 1, 2, 3]


def test_sampler_gives_the_order():
    ds = TensorDataset(*_xy(6, "cpu"))
    loader = DataLoader(ds, batch_size=4, sampler=[5, 0, 3, 1, 2])
    assert len(loader) == 2 and _epoch(loader) == [5, 0, 3, 1, 2]


class _Range(Dataset):
    """i -> (i, the id of the worker that read it, a draw from Python's random)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        info = get_worker_info()
        return i, -1 if info is None else info.id, random.random()


class _Stream(IterableDataset):
    """0..n-1, split between workers by get_worker_info as PyTorch's documentation shows."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        first, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(first, self.n, step))


class _Failing(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        if i == 5:
            raise KeyError(f"no sample {i}")
        return i


def test_workers_give_the_same_batches_in_the_same_order():
    ds = TensorDataset(*_xy(23, "cpu"))
    single = DataLoader(ds, batch_size=4, shuffle=True, seed=2)
    workers = DataLoader(ds, batch_size=4, shuffle=True, seed=2, num_workers=2)
    for _ in range(2):
        expected, got = list(single), list(workers)
        assert len(got) == len(expected) == 6
        for (xe, ye), (xg, yg) in zip(expected, got):
            np.testing.assert_array_equal(xg.numpy(), xe.numpy())
            assert yg.tolist() == ye.tolist() and yg.dtype is tg.int64
    # Round-robin: batch k comes from worker k % 2.
    batches = list(DataLoader(_Range(10), batch_size=3, num_workers=2))
    assert [b[0].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert [b[1].tolist() for b in batches] == [[0] * 3, [1] * 3, [0] * 3, [1]]


def test_worker_seeds_follow_the_base_seed_and_worker_init_fn_runs():
    def draws(loader: DataLoader) -> list[list[float]]:
        return [b[2].tolist() for b in loader]

    first = draws(DataLoader(_Range(8), batch_size=2, num_workers=2, seed=7))
    assert first == draws(DataLoader(_Range(8), batch_size=2, num_workers=2, seed=7))
    assert first != draws(DataLoader(_Range(8), batch_size=2, num_workers=2, seed=8))
    # Worker i is seeded with base_seed + i: seeding both workers alike gives both one stream.
    loader = DataLoader(_Range(8), batch_size=2, num_workers=2, seed=7,
                        worker_init_fn=lambda worker_id: random.seed(100))
    same = draws(loader)
    assert same[0] == same[1] and same[2] == same[3] and same[0] != same[2]
    # Unseeded loaders draw the base seed from tensorgrad's generator: manual_seed repeats it.
    tg.manual_seed(3)
    a = draws(DataLoader(_Range(4), batch_size=2, num_workers=2))
    tg.manual_seed(3)
    assert a == draws(DataLoader(_Range(4), batch_size=2, num_workers=2))


def test_iterable_dataset_in_process_and_in_workers():
    assert [b.tolist() for b in DataLoader(_Stream(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5],
                                                                          [6]]
    assert [b.tolist() for b in DataLoader(_Stream(7), batch_size=3, drop_last=True)] == [
        [0, 1, 2], [3, 4, 5]]
    # Two workers, each with its half of the stream, answer in turn (PyTorch's order).
    got = [b.tolist() for b in DataLoader(_Stream(11), batch_size=2, num_workers=2)]
    assert got == [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9]]
    with pytest.raises(TypeError, match="_Stream has no length"):
        len(DataLoader(_Stream(3)))


def test_persistent_workers_serve_every_epoch():
    ds = TensorDataset(*_xy(10, "cpu"))
    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=0, num_workers=2,
                        persistent_workers=True)
    reference = DataLoader(ds, batch_size=4, shuffle=True, seed=0)
    first = next(iter(loader))  # an epoch left after one batch
    pool = loader._pool
    assert first[1].tolist() == next(iter(reference))[1].tolist()
    for _ in range(2):
        assert _epoch(loader) == _epoch(reference)
    assert loader._pool is pool and all(p.is_alive() for p in pool.processes)
    stream = DataLoader(_Stream(5), batch_size=2, num_workers=2, persistent_workers=True)
    assert [b.tolist() for b in stream] == [b.tolist() for b in stream] == [[0, 2], [1, 3],
                                                                            [4]]
    pool.close()
    assert not any(p.is_alive() for p in pool.processes)


def test_worker_errors_name_the_worker_and_the_cause():
    with pytest.raises(WorkerError, match=r"(?s)worker process 0.*KeyError: 'no sample 5'"):
        list(DataLoader(_Failing(), batch_size=2, num_workers=2))

    def bad_init(worker_id: int) -> None:
        raise ValueError(f"init of {worker_id}")

    with pytest.raises(WorkerError, match=r"ValueError: init of \d"):
        list(DataLoader(_Range(4), batch_size=2, num_workers=2, worker_init_fn=bad_init))


class _Exiting(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        os._exit(3)


def test_a_worker_that_dies_is_reported():
    with pytest.raises(WorkerError, match="exited unexpectedly: worker 0 with exit code 3"):
        list(DataLoader(_Exiting(), batch_size=2, num_workers=1))


def test_tensor_dataset_pickles_as_arrays():
    x, y = _xy(4, "cpu")
    copy = pickle.loads(pickle.dumps(TensorDataset(x, y)))
    assert isinstance(copy, TensorDataset) and copy[2][1].item() == 2
    np.testing.assert_array_equal(copy.tensors[0].numpy(), x.numpy())
    assert copy.tensors[1].dtype is tg.int64 and copy.tensors[0].device == "cpu"


@pytest.mark.slow  # a spawned worker imports tensorgrad afresh: seconds on a busy machine
def test_workers_started_by_spawn_get_the_dataset_pickled():
    x, y = _xy(7, "cpu")
    loader = DataLoader(TensorDataset(x, y), batch_size=3, num_workers=1,
                        multiprocessing_context="spawn")
    batches = list(loader)
    assert [b[1].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    np.testing.assert_array_equal(batches[1][0].numpy(), x.numpy()[3:6])


def test_a_collate_fn_may_return_none_with_workers_too():
    def nothing(samples: list) -> None:
        return None

    assert list(DataLoader(list(range(4)), batch_size=2, collate_fn=nothing,
                           num_workers=1)) == [None, None]


def test_pin_memory_and_prefetch_factor_are_accepted():
    ds = TensorDataset(*_xy(9, "cpu"))
    loader = DataLoader(ds, batch_size=2, num_workers=1, pin_memory=True, prefetch_factor=3)
    assert _epoch(loader) == list(range(9))
    assert "num_workers=1" in repr(loader)


def test_workers_refuse_a_dataset_on_the_gpu(device):
    if device == "cpu":
        pytest.skip("a GPU dataset is what is refused")
    with pytest.raises(ValueError, match="workers run on the CPU.*cuda"):
        DataLoader(TensorDataset(*_xy(4, device)), num_workers=1)


def test_utils_data_is_data():
    import tensorgrad.utils.data as utils_data

    assert tg.utils.data is tg.data is utils_data
    assert tg.utils.data.DataLoader is DataLoader


# ---- data sets -------------------------------------------------------------------------------
def test_load_digits_matches_scikit_learn(device):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_digits(device=device)
    assert x.shape == (1797, 64) and x.dtype is tg.float32 and x.device == device
    assert y.shape == (1797,) and y.dtype is tg.int64
    ref = sklearn_datasets.load_digits()
    np.testing.assert_array_equal(x.numpy(), (ref.data / 16).astype(np.float32))
    np.testing.assert_array_equal(y.numpy(), ref.target)
    assert x.numpy().min() == 0.0 and x.numpy().max() == 1.0
    assert sorted(set(y.tolist())) == list(range(10))


def test_load_digits_without_scikit_learn_names_the_dependency(monkeypatch):
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(ImportError, match=r"scikit-learn.*pip install scikit-learn.*\[examples\]"):
        datasets.load_digits()


def test_make_spirals_is_the_cs231n_spiral(device):
    x, y = datasets.make_spirals(n=50, classes=4, noise=0.0, seed=0, device=device)
    assert x.shape == (200, 2) and x.dtype is tg.float32 and x.device == device
    assert y.dtype is tg.int64 and y.tolist() == [c for c in range(4) for _ in range(50)]
    xs = x.numpy().astype(np.float64)
    # Without noise, the radius grows linearly from 0 to 1 along each arm.
    np.testing.assert_allclose(np.hypot(xs[:, 0], xs[:, 1]), np.tile(np.linspace(0, 1, 50), 4),
                               atol=1e-6)
    theta = np.linspace(4.0, 8.0, 50)
    np.testing.assert_allclose(xs[50:100], np.stack([np.linspace(0, 1, 50) * np.sin(theta),
                                                     np.linspace(0, 1, 50) * np.cos(theta)], 1),
                               atol=1e-6)


def test_generators_are_seeded():
    a = datasets.make_spirals(30, 3, seed=1)[0].numpy()
    b = datasets.make_spirals(30, 3, seed=1)[0].numpy()
    c = datasets.make_spirals(30, 3, seed=2)[0].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    tg.manual_seed(0)
    r1 = datasets.make_regression(10)[1].numpy()
    tg.manual_seed(0)
    np.testing.assert_array_equal(r1, datasets.make_regression(10)[1].numpy())


def test_make_regression_recovers_its_line_by_least_squares(device):
    x, y = datasets.make_regression(n=2000, w=-3.0, b=0.5, noise=0.1, seed=0,
                                    dtype=tg.float64, device=device)
    assert x.shape == (2000, 1) and y.shape == (2000, 1) and x.dtype is tg.float64
    assert x.device == device and -1 <= x.numpy().min() and x.numpy().max() < 1
    design = np.hstack([x.numpy(), np.ones((2000, 1))])
    (w, b), *_ = np.linalg.lstsq(design, y.numpy()[:, 0], rcond=None)
    assert abs(w + 3.0) < 0.02 and abs(b - 0.5) < 0.01
    residual = y.numpy()[:, 0] - design @ np.array([w, b])
    assert 0.09 < residual.std() < 0.11


def test_dataset_argument_errors():
    with pytest.raises(ValueError, match="n >= 1 and classes >= 1, got n=0"):
        datasets.make_spirals(0)
    with pytest.raises(ValueError, match="n >= 1, got -2"):
        datasets.make_regression(-2)
