"""Names a PyTorch user reaches for first: as_tensor, set_grad_enabled, inference_mode."""

from __future__ import annotations

import numpy as np
import pytest

import tensorgrad as tg


def test_as_tensor_shares_numpy_memory_and_returns_a_matching_tensor_as_is():
    a = np.arange(3.0)
    t = tg.as_tensor(a)
    a[0] = 7.0
    assert t.dtype is tg.float64 and t.tolist() == [7.0, 1.0, 2.0]
    assert tg.as_tensor(t) is t and tg.as_tensor(t, dtype=tg.float64, device="cpu") is t
    converted = tg.as_tensor(t, dtype=tg.float32)
    assert converted.dtype is tg.float32 and converted.tolist() == [7.0, 1.0, 2.0]
    assert tg.as_tensor([1.0, 2.0]).dtype is tg.float32  # Python floats, as torch.as_tensor
    assert tg.as_tensor(3).dtype is tg.int64


def test_as_tensor_keeps_the_graph_of_a_dtype_change():
    x = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    (tg.as_tensor(x, dtype=tg.float32) * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_set_grad_enabled_as_a_call_a_context_and_a_decorator():
    x = tg.ones(2, requires_grad=True)
    try:
        tg.set_grad_enabled(False)  # a statement switches at once, as in PyTorch
        assert not tg.is_grad_enabled() and not (x * 2).requires_grad
    finally:
        tg.set_grad_enabled(True)
    assert tg.is_grad_enabled()
    with tg.set_grad_enabled(False):
        assert not (x * 2).requires_grad
        with tg.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()

    @tg.set_grad_enabled(False)
    def double(t: tg.Tensor) -> tg.Tensor:
        return t * 2

    assert tg.is_grad_enabled()  # decorating switched nothing
    assert not double(x).requires_grad and tg.is_grad_enabled()
    with pytest.raises(TypeError, match="set_grad_enabled takes a bool, got 0"):
        tg.set_grad_enabled(0)


def test_inference_mode_records_nothing():
    x = tg.ones(2, requires_grad=True)
    with tg.inference_mode():
        y = x * 2
    assert not y.requires_grad and tg.is_grad_enabled()
    with tg.inference_mode(False):
        assert (x * 2).requires_grad

    @tg.inference_mode()
    def predict(t: tg.Tensor) -> tg.Tensor:
        return predict_inner(t) if t.ndim == 2 else t * 3

    def predict_inner(t: tg.Tensor) -> tg.Tensor:
        return predict(t[0])  # reentering the decorated function

    assert not predict(tg.ones(2, 2, requires_grad=True)).requires_grad
    assert tg.is_grad_enabled()
    assert tg.autograd.set_grad_enabled is tg.set_grad_enabled
    assert tg.autograd.inference_mode is tg.inference_mode


def test_grad_modes_decorate_without_parentheses_as_pytorch_allows():
    x = tg.ones(2, requires_grad=True)

    @tg.no_grad
    def double(t: tg.Tensor) -> tg.Tensor:
        return t * 2

    @tg.inference_mode
    def triple(t: tg.Tensor) -> tg.Tensor:
        return t * 3

    @tg.enable_grad
    def recorded(t: tg.Tensor) -> tg.Tensor:
        return t * 4

    assert double.__name__ == "double" and not double(x).requires_grad
    assert not triple(x).requires_grad and tg.is_grad_enabled()
    with tg.no_grad():
        assert recorded(x).requires_grad and not tg.is_grad_enabled()
