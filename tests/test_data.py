"""tg.data: TensorDataset, DataLoader (batching, shuffling, epochs) and the bundled data sets."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad.data import DataLoader, TensorDataset, datasets


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
    with pytest.raises(TypeError, match="cannot batch samples of type dict"):
        next(iter(DataLoader([{"a": 1}, {"a": 2}], batch_size=2)))


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
