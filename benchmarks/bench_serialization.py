"""Workload 8, checkpoints: saving and loading a float32 state dict of 400 MiB (32 MiB in quick
mode), tg.save/tg.load against torch.save/torch.load(weights_only=True) of the same weights, and
safetensors.numpy's save_file/load_file as the floor of the format (the "hand" row). The
"load mmap" case maps the file instead (tg.load and torch.load with mmap=True): it returns
without reading, each page being read when first used, so it is not the same work as a load.

The state dict is a stack of 2048 x 2048 weights with their biases, on the CPU. Files go to the
run's temporary folder, so after the first call the reads come from the page cache and the
writes end in it: the times are the libraries' own work, not the disk's. tg.save also fsyncs the
file and its folder (a checkpoint must survive a crash), which neither reference does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from . import config
from ._harness import measure
from .impls import ALL, Impl, impl_param

LAYER = 2048  # a LAYER x LAYER float32 weight is 16 MiB
STATE_MIB = {"full": 400, "quick": 32}


def _host_state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    state = {}
    for i in range(STATE_MIB[config.mode()] // 16):
        state[f"layers.{i}.weight"] = rng.standard_normal((LAYER, LAYER), dtype=np.float32)
        state[f"layers.{i}.bias"] = rng.standard_normal(LAYER, dtype=np.float32)
    return state


def _state(impl: Impl) -> tuple[dict[str, Any], int]:
    """The state dict in the implementation's tensors, and its size in bytes."""
    host = _host_state()
    nbytes = sum(v.nbytes for v in host.values())
    if impl.family == "hand":
        return host, nbytes
    return {k: impl.array(v) for k, v in host.items()}, nbytes


def _save_load(impl: Impl, mapped: bool = False) -> tuple[Any, Any]:
    """(save(state, path), load(path)) of the implementation."""
    if impl.family == "tensorgrad":
        import tensorgrad as tg

        return tg.save, lambda path: tg.load(path, mmap=mapped)
    if impl.family == "torch":
        import torch

        return torch.save, lambda path: torch.load(path, weights_only=True, mmap=mapped)
    if mapped:
        pytest.skip("safetensors.numpy.load_file always copies")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    return safetensors_numpy.save_file, safetensors_numpy.load_file


CPU_IMPLS = [impl_param(i) for i in ALL if i.device == "cpu"]


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_state_dict_save(benchmark: Any, impl: Impl, tmp_path: Path) -> None:
    state, nbytes = _state(impl)
    save, _ = _save_load(impl)
    path = tmp_path / "state"
    measure(benchmark, impl, lambda: save(state, path), workload="checkpoint",
            case="state dict save", size=STATE_MIB[config.mode()], nbytes=nbytes)


@pytest.mark.parametrize("mapped", [False, True], ids=["read", "mmap"])
@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_state_dict_load(benchmark: Any, impl: Impl, mapped: bool, tmp_path: Path) -> None:
    state, nbytes = _state(impl)
    save, load = _save_load(impl, mapped)
    path = tmp_path / "state"
    save(state, path)
    del state
    measure(benchmark, impl, lambda: load(path), workload="checkpoint",
            case="state dict load mmap" if mapped else "state dict load",
            size=STATE_MIB[config.mode()], nbytes=nbytes)
