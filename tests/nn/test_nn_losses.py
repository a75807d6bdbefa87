"""Losses beyond their op_db rows (tests/op_db.py gradchecks every loss Module under each
reduction to second order and compares it with PyTorch): class weights and ignore_index,
weighted Modules, numerically extreme inputs, and bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import nn
from tensorgrad.nn import functional as F

REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_class_weights_and_ignore_index_match_torch(weighted: bool, reduction: str,
                                                    device: str,
                                                    rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((7, 5))
    t = np.array([0, 4, -100, 2, 2, -100, 1])
    weight = rng.uniform(0.5, 2.0, 5) if weighted else None
    for ours, theirs in ((F.cross_entropy, torch.nn.functional.cross_entropy),
                         (F.nll_loss, torch.nn.functional.nll_loss)):
        xs = tg.tensor(x, device=device, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        w_ours = None if weight is None else tg.tensor(weight, device=device)
        w_torch = None if weight is None else torch.from_numpy(weight)
        out = ours(xs, tg.tensor(t, device=device), w_ours, reduction=reduction)
        out_t = theirs(xt, torch.from_numpy(t), w_torch, reduction=reduction)
        np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-10)
        g = rng.standard_normal(out.shape)
        (out * tg.tensor(g, device=device)).sum().backward()
        (out_t * torch.from_numpy(g)).sum().backward()
        np.testing.assert_allclose(xs.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_loss_modules_with_weights_match_torch(device: str, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    p = rng.uniform(0.1, 0.9, (4, 3))
    z = rng.standard_normal((4, 3))
    y = rng.integers(0, 2, (4, 3)).astype(np.float64)
    w, pw = rng.uniform(0.5, 2, (4, 3)), rng.uniform(0.5, 2, 3)
    ours = nn.BCELoss(weight=tg.tensor(w)).to(device)(tg.tensor(p, device=device),
                                                      tg.tensor(y, device=device))
    ref = torch.nn.BCELoss(weight=torch.from_numpy(w))(torch.from_numpy(p), torch.from_numpy(y))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    ours = nn.BCEWithLogitsLoss(weight=tg.tensor(w), pos_weight=tg.tensor(pw)).to(device)(
        tg.tensor(z, device=device), tg.tensor(y, device=device))
    ref = torch.nn.BCEWithLogitsLoss(weight=torch.from_numpy(w), pos_weight=torch.from_numpy(pw))(
        torch.from_numpy(z), torch.from_numpy(y))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)


@pytest.mark.parametrize("target", [1.0, 0.0, 0.3])
def test_bce_of_a_subnormal_sigmoid_has_a_finite_gradient(target: float, device: str) -> None:
    """float32 sigmoid(x) is subnormal for x between about -88.7 and -104; 1/p overflowed and
    the gradient through sigmoid came out -inf. PyTorch divides by max(p (1 - p), 1e-12)."""
    torch = pytest.importorskip("torch")
    z = np.array([-80.0, -90.0, -95.0, -100.0, -103.0, -110.0, 0.3, 90.0], dtype=np.float32)
    x = tg.tensor(z, device=device, requires_grad=True)
    zt = torch.tensor(z, requires_grad=True)
    F.binary_cross_entropy(x.sigmoid(), tg.full((8,), target, device=device),
                           reduction="sum").backward()
    torch.nn.functional.binary_cross_entropy(torch.sigmoid(zt), torch.full((8,), target),
                                             reduction="sum").backward()
    assert np.isfinite(x.grad.numpy()).all()
    np.testing.assert_allclose(x.grad.numpy(), zt.grad.numpy(), rtol=1e-5, atol=1e-20)


@pytest.mark.parametrize("logits", [[-1047.0, -981.0, 1891.0], [-431.0, 279.0, 427.0],
                                    [5.0, 5.0, 5.0], [1e4, -1e4, 0.0]])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_is_finite_for_extreme_logits(logits: list[float], dtype: str,
                                                    device: str) -> None:
    torch = pytest.importorskip("torch")
    x = tg.tensor([logits], dtype=dtype, device=device, requires_grad=True)
    for target in range(3):
        x.grad = None
        loss = F.cross_entropy(x, tg.tensor([target], device=device))
        loss.backward()
        xt = torch.tensor([logits], dtype=getattr(torch, dtype), requires_grad=True)
        ref = torch.nn.functional.cross_entropy(xt, torch.tensor([target]))
        ref.backward()
        assert np.isfinite(loss.item()) and np.isfinite(x.grad.numpy()).all()
        assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
        np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), atol=1e-7)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_hessian_vector_product_matches_torch(reduction: str, device: str,
                                                           rng: np.random.Generator) -> None:
    # The upstream gradient here is a constant (op_db's second-order check differentiates
    # with respect to it too), so the double backward runs with only x needing a gradient.
    torch = pytest.importorskip("torch")
    x, v = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    t = np.array([0, 3, -100, 2, 1])
    xs = tg.tensor(x, device=device, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    loss = F.cross_entropy(xs, tg.tensor(t, device=device), reduction=reduction).sum()
    loss_t = torch.nn.functional.cross_entropy(xt, torch.from_numpy(t), reduction=reduction)
    (gx,) = tg.grad(loss, xs, create_graph=True)
    (gxt,) = torch.autograd.grad(loss_t.sum(), xt, create_graph=True)
    (gx * tg.tensor(v, device=device)).sum().backward()
    (gxt * torch.from_numpy(v)).sum().backward()
    np.testing.assert_allclose(xs.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_out_of_range_targets_raise_on_the_cpu_and_give_nan_on_cuda(device: str) -> None:
    """The CPU checks targets, as PyTorch; CUDA does not read them back to the host (no sync
    per step), so there a bad class is NaN, never a silently wrapped index."""
    x = tg.zeros(2, 3, device=device)
    bad, negative = tg.tensor([1, 3], device=device), tg.tensor([-2, 0], device=device)
    if device == "cpu":
        with pytest.raises(IndexError, match=r"cross_entropy: target 3 is out of bounds for 3"):
            F.cross_entropy(x, bad)
        with pytest.raises(IndexError, match=r"nll_loss: target -2 is out of bounds"):
            F.nll_loss(x, negative)
        with pytest.raises(IndexError, match="target 3"):
            F.cross_entropy(x, bad, weight=tg.ones(3))
    else:
        loss = F.cross_entropy(x, bad, reduction="none")
        assert np.isnan(loss.numpy()[1]) and loss.numpy()[0] == pytest.approx(np.log(3))
        assert np.isnan(F.nll_loss(x, negative).item())
        np.testing.assert_array_equal(F.nll_loss(x, bad, reduction="none").numpy(),
                                      [0.0, np.nan])  # class C itself is out of range too
    ignored = F.cross_entropy(x, tg.tensor([1, -100], device=device), reduction="none")
    np.testing.assert_allclose(ignored.numpy(), [np.log(3), 0.0], rtol=1e-6)


def test_out_of_range_message_names_the_first_bad_target_not_an_ignored_one() -> None:
    x = tg.zeros(4, 3)
    for loss in (F.cross_entropy, F.nll_loss):
        with pytest.raises(IndexError, match=r"target 5 is out of bounds for 3 classes \(and is "
                                             r"not ignore_index=-100\)"):
            loss(x, tg.tensor([-100, 5, 2, -7]))
        with pytest.raises(IndexError, match="target -1 is out of bounds"):
            loss(x, tg.tensor([0, -1, 2, -100]), ignore_index=-100)
        with pytest.raises(IndexError, match="target -100 is out of bounds"):
            loss(x, tg.tensor([0, -100, 2, 1]), ignore_index=1)
        # the edges of [0, C) are valid classes
        np.testing.assert_allclose(loss(x, tg.tensor([0, 2, 2, 0]), reduction="none").numpy(),
                                   [np.log(3) if loss is F.cross_entropy else 0.0] * 4)


_LOSS_CALLS = {
    "mse_loss": lambda r: F.mse_loss(tg.zeros(2), tg.zeros(2), reduction=r),
    "cross_entropy": lambda r: F.cross_entropy(tg.zeros(2, 3), tg.tensor([0, 1]), reduction=r),
    "nll_loss": lambda r: F.nll_loss(tg.zeros(2, 3), tg.tensor([0, 1]), reduction=r),
    "binary_cross_entropy": lambda r: F.binary_cross_entropy(tg.zeros(2), tg.zeros(2),
                                                             reduction=r),
    "binary_cross_entropy_with_logits": lambda r: F.binary_cross_entropy_with_logits(
        tg.zeros(2), tg.zeros(2), reduction=r),
}


@pytest.mark.parametrize("name", list(_LOSS_CALLS))
def test_every_loss_refuses_an_unknown_reduction(name: str) -> None:
    call = _LOSS_CALLS[name]
    for reduction in ("avg", "Mean", None):
        with pytest.raises(ValueError, match=rf"{name}: reduction must be 'mean', 'sum' or "
                                             rf"'none', got {reduction!r}"):
            call(reduction)
    assert [call(r).shape for r in ("mean", "sum", "none")] == [(), (), (2,)]


@pytest.mark.parametrize("module", ["MSELoss", "CrossEntropyLoss", "NLLLoss", "BCELoss",
                                    "BCEWithLogitsLoss"])
def test_every_loss_module_refuses_an_unknown_reduction(module: str) -> None:
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        getattr(nn, module)(reduction="avg")


def test_bce_refuses_values_outside_0_1_on_the_cpu() -> None:
    p, t = tg.tensor([0.5, 0.5]), tg.tensor([1.0, 0.0])
    with pytest.raises(ValueError, match="input must be between 0 and 1.*with_logits"):
        F.binary_cross_entropy(tg.tensor([1.5, 0.5]), t)
    with pytest.raises(ValueError, match="target must be between 0 and 1"):
        F.binary_cross_entropy(p, tg.tensor([2.0, 0.0]))
    assert F.binary_cross_entropy(tg.tensor([1.0, 0.0]), t).item() == 0.0


def test_bce_computes_in_the_inputs_dtype_whatever_the_targets(device: str) -> None:
    # PyTorch refuses a float64 target for float32 probabilities; tensorgrad converts the target
    # (the probabilities set the dtype, as they do for every other loss here).
    p = tg.tensor([0.3, 0.8], dtype=tg.float32, device=device, requires_grad=True)
    loss = F.binary_cross_entropy(p, tg.tensor([1.0, 0.0], dtype=tg.float64, device=device))
    assert loss.dtype == tg.float32
    assert loss.item() == pytest.approx(-(np.log(0.3) + np.log(0.2)) / 2, rel=1e-6)
    loss.backward()
    assert p.grad.dtype == tg.float32


@pytest.mark.parametrize("weighted", [False, True])
def test_an_ignored_row_counts_zero_whatever_it_picked(weighted: bool, device: str) -> None:
    # log-probabilities of -inf (a class masked out) in ignored rows, as with padding tokens
    torch = pytest.importorskip("torch")
    with np.errstate(divide="ignore"):
        logp = np.log(np.array([[0.0, 0.5, 0.5], [0.0, 0.2, 0.8], [0.3, 0.3, 0.4]]))
    t = np.array([-100, 2, 1])
    weight = np.array([1.0, 2.0, 3.0]) if weighted else None
    ours_x = tg.tensor(logp, device=device, requires_grad=True)
    ours = F.nll_loss(ours_x, tg.tensor(t, device=device),
                      None if weight is None else tg.tensor(weight, device=device))
    ref_x = torch.tensor(logp, requires_grad=True)
    ref = torch.nn.functional.nll_loss(ref_x, torch.from_numpy(t),
                                       None if weight is None else torch.from_numpy(weight))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    ours.backward()
    ref.backward()
    np.testing.assert_array_equal(ours_x.grad.numpy(), ref_x.grad.numpy())


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
def test_all_targets_ignored_gives_nan_mean_and_zero_gradients_like_torch(
        fn: str, weighted: bool, device: str) -> None:
    # A batch of padding only: the mean is 0 / 0, but the gradients are 0, not NaN, so that an
    # optimizer step leaves the weights as they were.
    x = tg.zeros(2, 3, device=device, requires_grad=True)
    weight = tg.tensor([1.0, 2.0, 3.0], device=device) if weighted else None
    loss = getattr(F, fn)(x, tg.tensor([-100, -100], device=device), weight)
    assert np.isnan(loss.item())
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((2, 3)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_clamps_log_at_minus_100(dtype: str, device: str) -> None:
    torch = pytest.importorskip("torch")
    p = np.array([0.0, 1.0, 1e-30, 1.0, 0.5], dtype=dtype)
    y = np.array([1.0, 0.0, 1.0, 1.0, 0.0], dtype=dtype)
    ours = F.binary_cross_entropy(tg.tensor(p, device=device), tg.tensor(y, device=device),
                                  reduction="none").numpy()
    ref = torch.nn.functional.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(y),
                                                   reduction="none").numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    assert ours[0] == 100.0 and ours[1] == 100.0


def test_bce_with_logits_is_stable_at_extremes(device: str) -> None:
    z = tg.tensor([1000.0, -1000.0, 88.0, -88.0], device=device, requires_grad=True)
    y = tg.tensor([0.0, 1.0, 1.0, 0.0], device=device)
    loss = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    np.testing.assert_allclose(loss.numpy(), [1000.0, 1000.0, 0.0, 0.0], atol=1e-30)
    loss.sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), [1.0, -1.0, 0.0, 0.0], atol=1e-30)


@pytest.mark.parametrize("call, error, pattern", [
    (lambda d: F.cross_entropy(tg.randn(3, 4, device=d), tg.tensor([0, 1], device=d)),
     ValueError, r"input of shape \(3, 4\) the target must have shape \(3,\), got \(2,\)"),
    (lambda d: F.cross_entropy(tg.randn(3, 4, device=d), tg.randn(3, device=d)),
     TypeError, "class indices.*float32"),
    (lambda d: F.mse_loss(tg.randn(3, device=d), tg.randn(4, device=d)),
     ValueError, r"\(3,\) and target shape \(4,\)"),
    (lambda d: F.binary_cross_entropy(tg.rand(3, device=d), tg.rand(2, device=d)),
     ValueError, r"input's shape \(3,\), got \(2,\)"),
    (lambda d: nn.MSELoss(reduction="avg"), ValueError, "reduction must be.*'avg'"),
    (lambda d: F.cross_entropy(tg.tensor(1.0, device=d), tg.tensor(0, device=d)),
     ValueError, "cross_entropy: input must have a class dim, got a 0-d tensor"),
    (lambda d: F.nll_loss(tg.tensor(1.0, device=d), tg.tensor(0, device=d)),
     ValueError, "nll_loss: input must have a class dim"),
    (lambda d: F.nll_loss(tg.randn(3, 4, device=d), tg.tensor([0, 1, 2], device=d),
                          weight=tg.ones(3, device=d)),
     ValueError, r"nll_loss: weight must have shape \(4,\), got \(3,\)"),
    (lambda d: F.cross_entropy(tg.randn(3, 4, device=d), tg.tensor([0, 1, 2], device=d),
                               weight=tg.ones(5, device=d)),
     ValueError, r"weight must have shape \(4,\), got \(5,\)"),
])
def test_bad_loss_input_raises(call: Any, error: type, pattern: str, device: str) -> None:
    with pytest.raises(error, match=pattern):
        call(device)
