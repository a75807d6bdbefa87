"""Linear followed by ReLU/Sigmoid/Tanh inside Sequential runs as one fused op: same values
and gradients as the two modules applied one after the other, and correct derivatives."""

from __future__ import annotations

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import nn
from tensorgrad.ops.fused import linear_activation

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_sequential_fusion_matches_the_modules_one_by_one(name, device, rng):
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), ACTIVATIONS[name](), nn.Linear(5, 3)).to(device)
    x = tg.tensor(rng.standard_normal((4, 6)), dtype=tg.float64, device=device)
    model = model.to(dtype="float64")
    weights = tg.tensor(rng.standard_normal((4, 3)), dtype=tg.float64, device=device)

    fused = (model(x) * weights).sum()
    fused.backward()
    fused_grads = {k: p.grad.numpy().copy() for k, p in model.named_parameters()}
    model.zero_grad()

    h = x
    for module in model:  # iterating calls each module on its own: no fusion
        h = module(h)
    plain = (h * weights).sum()
    plain.backward()
    assert fused.item() == pytest.approx(plain.item(), rel=1e-12)
    for k, p in model.named_parameters():
        np.testing.assert_allclose(fused_grads[k], p.grad.numpy(), rtol=1e-10, err_msg=k)
    assert model[0](x).grad_fn.name() == "LinearBackward"
    assert "LinearActivation" not in repr(model)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_linear_activation_gradients(name, device, rng):
    def arg(*shape):
        return tg.tensor(rng.standard_normal(shape), dtype=tg.float64, device=device,
                         requires_grad=True)

    x, w, b = arg(3, 4), arg(2, 4), arg(2)
    tg.autograd.gradcheck(lambda x, w, b: linear_activation(x, w, b, name), [x, w, b])

    def first_derivative(x, w, b):
        y = linear_activation(x, w, b, name)
        return tg.grad((y * y).sum(), [x, w], create_graph=True)

    tg.autograd.gradcheck(first_derivative, [x, w, b])


def test_linear_activation_keeps_leading_dims(device, rng):
    x = tg.tensor(rng.standard_normal((2, 3, 4)), device=device)
    w = tg.tensor(rng.standard_normal((5, 4)), device=device)
    b = tg.tensor(rng.standard_normal(5), device=device)
    y = linear_activation(x, w, b, "relu")
    expected = np.maximum(x.numpy() @ w.numpy().T + b.numpy(), 0)
    assert y.shape == (2, 3, 5)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-6)
