"""Weights move between PyTorch and tensorgrad through safetensors files, both directions: a state
dict saved by tg.save loads into the same PyTorch architecture (safetensors.torch.load_file +
load_state_dict), and one saved by safetensors.torch.save_file loads into tensorgrad (tg.load +
load_state_dict), with bitwise equal weights and the same outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import tensorgrad as tg

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _mlp(nn: Any) -> Any:
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3))


def _cnn(nn: Any) -> Any:
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, 3))


def _embedding(nn: Any) -> Any:
    return nn.Sequential(nn.Embedding(11, 5), nn.LayerNorm(5), nn.Linear(5, 2))


def _input(name: str, rng: np.random.Generator) -> np.ndarray:
    if name == "embedding":
        return rng.integers(0, 11, (4, 7))
    return rng.standard_normal((4, 6) if name == "mlp" else (4, 2, 5, 5)).astype(np.float32)


MODELS: dict[str, Callable[[Any], Any]] = {"mlp": _mlp, "cnn": _cnn, "embedding": _embedding}


def _run(model: Any, x: np.ndarray, lib: Any) -> np.ndarray:
    """One train-mode pass (so BatchNorm's running statistics move), then the eval output."""
    with lib.no_grad():
        model.train()
        model(lib.tensor(x))
        model.eval()
        return np.asarray(model(lib.tensor(x)).numpy())


def _assert_same_weights(tg_state: dict, torch_state: dict) -> None:
    assert list(tg_state) == list(torch_state)
    for key, value in torch_state.items():
        mine = tg_state[key].numpy()
        theirs = value.numpy()
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, key
        assert mine.tobytes() == theirs.tobytes(), key


@pytest.mark.parametrize("name", MODELS)
def test_tensorgrad_weights_load_into_pytorch(tmp_path, rng, name):
    tg.manual_seed(1)
    mine = MODELS[name](tg.nn)
    x = _input(name, rng)
    _run(mine, x, tg)  # running statistics that are not the initial ones
    path = tmp_path / "tg.safetensors"
    tg.save(mine.state_dict(), path)

    theirs = MODELS[name](torch.nn)
    state = safetensors_torch.load_file(path)
    theirs.load_state_dict(state)  # strict: the same keys, shapes and dtypes
    _assert_same_weights(mine.state_dict(), theirs.state_dict())
    mine.eval()
    theirs.eval()
    with tg.no_grad(), torch.no_grad():
        expected = theirs(torch.tensor(x)).numpy()
        got = mine(tg.tensor(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_pytorch_weights_load_into_tensorgrad(tmp_path, rng, name):
    torch.manual_seed(1)
    theirs = MODELS[name](torch.nn)
    x = _input(name, rng)
    expected = _run(theirs, x, torch)
    path = tmp_path / "torch.safetensors"
    safetensors_torch.save_file(theirs.state_dict(), path)

    mine = MODELS[name](tg.nn)
    mine.load_state_dict(tg.load(path))
    _assert_same_weights(mine.state_dict(), theirs.state_dict())
    mine.eval()
    with tg.no_grad():
        got = mine(tg.tensor(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_full_training_checkpoint_keeps_its_state_dict_readable_by_pytorch(tmp_path, rng):
    """Optimizer state and Python values ride along; PyTorch sees every tensor by its path."""
    tg.manual_seed(2)
    model = _mlp(tg.nn)
    optimizer = tg.optim.Adam(model.parameters(), lr=1e-2)
    model(tg.tensor(_input("mlp", rng))).sum().backward()
    optimizer.step()
    path = tmp_path / "ckpt.safetensors"
    tg.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1}, path)
    tensors = safetensors_torch.load_file(path)
    model_keys = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    theirs = _mlp(torch.nn)
    theirs.load_state_dict(model_keys)
    _assert_same_weights(model.state_dict(), theirs.state_dict())
    assert torch.equal(tensors["optimizer.state.0.exp_avg"],
                       torch.from_numpy(optimizer.state_dict()["state"][0]["exp_avg"].numpy()))
