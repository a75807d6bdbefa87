"""Optimizers against torch.optim: 20 steps of trajectory on the same model for every option,
param groups, state_dict round trips (also resuming mid-run), skipped parameters, no
recording, and validation errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import nn, optim

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, betas=(0.85, 0.95), weight_decay=0.3)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.005, alpha=0.9, eps=1e-6, weight_decay=0.05, momentum=0.7)),
]
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-6)}


def _models(torch: Any, dtype: str, device: str) -> tuple[nn.Module, Any]:
    tg.manual_seed(0)
    ours = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(device, dtype)
    ref = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    ref = ref.to(getattr(torch, dtype))
    ref.load_state_dict({k: torch.from_numpy(v.numpy().copy())
                         for k, v in ours.state_dict().items()})
    return ours, ref


def _data(rng: np.random.Generator, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((16, 5)).astype(dtype), rng.integers(0, 3, 16)


def _run(ours: nn.Module, opt: optim.Optimizer, x: np.ndarray, y: np.ndarray, steps: int,
         device: str) -> None:
    xs, ys = tg.tensor(x, device=device), tg.tensor(y, device=device)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(ours(xs), ys).backward()
        opt.step()


def _run_torch(torch: Any, ref: Any, opt: Any, x: np.ndarray, y: np.ndarray,
               steps: int) -> None:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(xt), yt).backward()
        opt.step()


def _assert_same(ours: nn.Module, ref: Any, dtype: str) -> None:
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(p.numpy(), q.detach().numpy(), **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, options", CONFIGS,
                         ids=[f"{n}-{'-'.join(o)}" for n, o in CONFIGS])
def test_twenty_steps_match_torch(name: str, options: dict[str, Any], dtype: str, device: str,
                                  rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    ours, ref = _models(torch, dtype, device)
    x, y = _data(rng, dtype)
    _run(ours, getattr(optim, name)(ours.parameters(), **options), x, y, 20, device)
    _run_torch(torch, ref, getattr(torch.optim, name)(ref.parameters(), **options), x, y, 20)
    _assert_same(ours, ref, dtype)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_default_arguments_match_torch(name: str, device: str, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    ours, ref = _models(torch, "float64", device)
    x, y = _data(rng, "float64")
    _run(ours, getattr(optim, name)(ours.parameters()), x, y, 20, device)
    _run_torch(torch, ref, getattr(torch.optim, name)(ref.parameters()), x, y, 20)
    _assert_same(ours, ref, "float64")


@pytest.mark.parametrize("name, options", CONFIGS[1::2], ids=[n for n, _ in CONFIGS[1::2]])
def test_state_dict_round_trip_resumes_identically(name: str, options: dict[str, Any],
                                                   device: str,
                                                   rng: np.random.Generator) -> None:
    """10 steps, save, rebuild model and optimizer from the saved state, 10 more steps: the
    same as 20 uninterrupted steps, and the state dict has PyTorch's layout."""
    torch = pytest.importorskip("torch")
    x, y = _data(rng, "float64")
    straight, _ = _models(torch, "float64", device)
    _run(straight, getattr(optim, name)(straight.parameters(), **options), x, y, 20, device)

    first, _ = _models(torch, "float64", device)
    opt = getattr(optim, name)(first.parameters(), **options)
    _run(first, opt, x, y, 10, device)
    saved_model = {k: v.clone() for k, v in first.state_dict().items()}
    saved = opt.state_dict()
    ref_model, ref = _models(torch, "float64", "cpu")
    ref_opt = getattr(torch.optim, name)(ref.parameters(), **options)
    _run_torch(torch, ref, ref_opt, x, y, 1)
    ref_state = ref_opt.state_dict()
    assert sorted(saved) == ["param_groups", "state"]
    assert saved["param_groups"][0]["params"] == ref_state["param_groups"][0]["params"]
    assert set(saved["param_groups"][0]) <= set(ref_state["param_groups"][0])
    assert sorted(saved["state"]) == sorted(ref_state["state"])
    tensor_keys = {k for k, v in ref_state["state"][0].items() if v.ndim > 0}
    # The step count is a 0-d tensor in both (on the device, for CUDA-graph replays).
    assert {k for k, v in saved["state"][0].items()
            if isinstance(v, tg.Tensor) and v.ndim > 0} == tensor_keys

    second, _ = _models(torch, "float64", device)
    second.load_state_dict(saved_model)
    opt2 = getattr(optim, name)(second.parameters(), lr=123.0)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == options["lr"]
    _run(second, opt2, x, y, 10, device)
    for p, q in zip(second.parameters(), straight.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    # The loaded state is a copy: stepping the new optimizer leaves the saved one alone.
    key = next(k for k, v in saved["state"][0].items() if isinstance(v, tg.Tensor))
    assert saved["state"][0][key] is not opt2.state[next(second.parameters())][key]


def test_param_groups_with_their_own_options_match_torch(device: str,
                                                         rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    ours, ref = _models(torch, "float64", device)
    x, y = _data(rng, "float64")
    opt = optim.SGD([{"params": ours[0].parameters()},
                     {"params": ours[2].parameters(), "lr": 0.01, "momentum": 0.5}], lr=0.1)
    ref_opt = torch.optim.SGD([{"params": ref[0].parameters()},
                               {"params": ref[2].parameters(), "lr": 0.01, "momentum": 0.5}],
                              lr=0.1)
    assert opt.param_groups[1]["momentum"] == 0.5 and opt.param_groups[0]["momentum"] == 0.0
    _run(ours, opt, x, y, 20, device)
    _run_torch(torch, ref, ref_opt, x, y, 20)
    _assert_same(ours, ref, "float64")
    assert opt.state_dict()["param_groups"][1]["params"] == [2, 3]


def test_add_param_group_and_duplicates() -> None:
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = optim.Adam(a.parameters())
    opt.add_param_group({"params": b.parameters(), "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a.weight]})
    with pytest.raises(ValueError, match="lists the same parameter more than once"):
        optim.SGD([a.bias, a.bias], lr=0.1)


def test_parameters_without_grad_are_skipped_and_nothing_is_recorded(device: str) -> None:
    net = nn.Linear(3, 2).to(device)
    opt = optim.Adam(net.parameters(), lr=0.1)
    bias = net.bias.numpy().copy()
    (net(tg.randn(4, 3, device=device)) * 0.0 + net.weight.sum()).sum().backward()
    net.bias.grad = None
    version = net.weight._version[0]
    opt.step()
    np.testing.assert_array_equal(net.bias.numpy(), bias)
    assert net.bias not in opt.state
    assert net.weight.is_leaf and net.weight.grad_fn is None and net.weight.requires_grad
    assert net.weight._version[0] == version + 1


def test_step_after_in_place_update_invalidates_saved_graph(device: str) -> None:
    """The step bumps the version counter, so a graph recorded before it refuses to
    backward instead of using the updated weights silently."""
    net = nn.Linear(3, 1).to(device)
    opt = optim.SGD(net.parameters(), lr=0.1)
    net(tg.randn(2, 3, device=device)).sum().backward()
    x = tg.randn(2, 3, device=device, requires_grad=True)  # so the forward saves the weight
    loss = (net(x) ** 2).sum()
    opt.step()
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


def test_closure_is_evaluated_with_grad_enabled() -> None:
    net = nn.Linear(2, 1)
    opt = optim.SGD(net.parameters(), lr=0.1)
    x = tg.randn(4, 2)

    def closure() -> tg.Tensor:
        opt.zero_grad()
        loss = (net(x) ** 2).mean()
        loss.backward()
        return loss

    with tg.no_grad():
        loss = opt.step(closure)
    assert isinstance(loss, tg.Tensor) and net.weight.grad is not None


def test_zero_grad_of_the_optimizer() -> None:
    net = nn.Linear(2, 1)
    opt = optim.RMSprop(net.parameters())
    net(tg.randn(3, 2)).sum().backward()
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(net.weight.grad.numpy(), 0.0)
    opt.zero_grad()
    assert net.weight.grad is None


@pytest.mark.parametrize("make, error, pattern", [
    (lambda p: optim.SGD([], lr=0.1), ValueError, "optimizer got an empty parameter list"),
    (lambda p: optim.Adam(iter(()), lr=0.1), ValueError, "empty parameter list"),
    (lambda p: optim.SGD([p * 2.0], lr=0.1), ValueError, "can't optimize a non-leaf Tensor"),
    (lambda p: optim.SGD(p, lr=0.1), TypeError, "iterable of Tensors"),
    (lambda p: optim.SGD({p}, lr=0.1), TypeError, "ordered collections"),
    (lambda p: optim.SGD([p], lr=-0.1), ValueError, "Invalid learning rate: -0.1"),
    (lambda p: optim.SGD([p], lr=0.1, momentum=-1), ValueError, "Invalid momentum value: -1"),
    (lambda p: optim.SGD([p], lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires"),
    (lambda p: optim.Adam([p], betas=(1.0, 0.999)), ValueError,
     "Invalid beta parameter at index 0: 1.0"),
    (lambda p: optim.Adam([p], betas=(0.9, -0.1)), ValueError,
     "Invalid beta parameter at index 1: -0.1"),
    (lambda p: optim.AdamW([p], eps=-1e-8), ValueError, "Invalid epsilon value: -1e-08"),
    (lambda p: optim.Adam([p], weight_decay=-1), ValueError, "Invalid weight_decay value: -1"),
    (lambda p: optim.RMSprop([p], lr=-1), ValueError, "Invalid learning rate: -1"),
    (lambda p: optim.RMSprop([p], alpha=-0.5), ValueError, "Invalid alpha value: -0.5"),
    (lambda p: optim.Adam([p], lr=-1), ValueError, "Invalid learning rate: -1"),
    (lambda p: optim.AdamW([p], lr=-1e-3), ValueError, "Invalid learning rate: -0.001"),
    (lambda p: optim.Adam([p], eps=-1.0), ValueError, "Invalid epsilon value: -1.0"),
    (lambda p: optim.AdamW([p], betas=(-0.1, 0.999)), ValueError,
     "Invalid beta parameter at index 0: -0.1"),
    (lambda p: optim.AdamW([p], betas=(0.9, 1.0)), ValueError,
     "Invalid beta parameter at index 1: 1.0"),
    (lambda p: optim.AdamW([p], weight_decay=-0.5), ValueError,
     "Invalid weight_decay value: -0.5"),
    (lambda p: optim.SGD([p], lr=0.1, weight_decay=-1), ValueError,
     "Invalid weight_decay value: -1"),
    (lambda p: optim.RMSprop([p], eps=-1e-8), ValueError, "Invalid epsilon value: -1e-08"),
    (lambda p: optim.RMSprop([p], momentum=-0.9), ValueError, "Invalid momentum value: -0.9"),
    (lambda p: optim.RMSprop([p], weight_decay=-2), ValueError,
     "Invalid weight_decay value: -2"),
])
def test_bad_arguments_raise(make: Any, error: type, pattern: str) -> None:
    p = nn.Parameter(tg.zeros(2))
    with pytest.raises(error, match=pattern):
        make(p)


@pytest.mark.parametrize("make", [
    lambda p: optim.SGD([p], lr=0.0, momentum=0.0, weight_decay=0.0),
    lambda p: optim.Adam([p], lr=0.0, betas=(0.0, 0.0), eps=0.0, weight_decay=0.0),
    lambda p: optim.AdamW([p], lr=0.0, betas=(0.0, 0.0), eps=0.0, weight_decay=0.0),
    lambda p: optim.RMSprop([p], lr=0.0, alpha=0.0, eps=0.0, momentum=0.0, weight_decay=0.0),
], ids=["SGD", "Adam", "AdamW", "RMSprop"])
def test_zero_is_a_valid_value_of_every_hyperparameter(make: Any) -> None:
    # As torch.optim's checks (0 <= value, and 0 <= beta < 1); lr=0 leaves p unchanged.
    p = nn.Parameter(tg.tensor([1.0, -2.0]))
    opt = make(p)
    p.grad = tg.tensor([0.5, 0.5])
    opt.step()
    np.testing.assert_array_equal(p.numpy(), [1.0, -2.0])


def test_load_state_dict_with_mismatched_groups_raises() -> None:
    a = optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    b = optim.SGD(nn.Linear(2, 2, bias=False).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        b.load_state_dict(a.state_dict())


def test_load_state_dict_of_other_shapes_raises_and_changes_nothing() -> None:
    small, wide = nn.Linear(3, 2), nn.Linear(4, 2)
    trained = optim.Adam(small.parameters())
    small(tg.ones(1, 3)).sum().backward()
    trained.step()
    fresh = optim.Adam(wide.parameters())
    with pytest.raises(ValueError, match=r"'exp_avg' of shape \(2, 3\) for parameter 0, whose "
                                         r"shape is \(2, 4\)"):
        fresh.load_state_dict(trained.state_dict())
    assert fresh.state == {}
