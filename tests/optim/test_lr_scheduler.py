"""Learning-rate schedulers against torch.optim.lr_scheduler: the rate at every epoch (bit
for bit, as both use the same recursive formulas), param groups, and state_dict round trips."""

from __future__ import annotations

import math
from typing import Any

import pytest

import tensorgrad as tg
from tensorgrad import nn, optim
from tensorgrad.optim import lr_scheduler


def _lr_lambda(epoch: int) -> float:
    return 0.95 ** epoch / (1 + epoch % 3)


SCHEDULERS = [
    ("StepLR", dict(step_size=3)),
    ("StepLR", dict(step_size=2, gamma=0.5)),
    ("CosineAnnealingLR", dict(T_max=10)),
    ("CosineAnnealingLR", dict(T_max=4, eta_min=0.01)),  # past T_max: the cosine wave goes on
    ("LambdaLR", dict(lr_lambda=_lr_lambda)),
]


def _two_groups(lib: Any, params: tuple[Any, Any]) -> Any:
    return lib.optim.SGD([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.3}], lr=0.1,
                         momentum=0.9)


@pytest.mark.parametrize("name, options", SCHEDULERS,
                         ids=[f"{n}-{'-'.join(o)}" for n, o in SCHEDULERS])
def test_rates_match_torch_for_25_epochs(name: str, options: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    ours_opt = _two_groups(tg, (nn.Parameter(tg.zeros(2)), nn.Parameter(tg.zeros(2))))
    ref_opt = _two_groups(torch, (torch.nn.Parameter(torch.zeros(2)),
                                  torch.nn.Parameter(torch.zeros(2))))
    ours = getattr(lr_scheduler, name)(ours_opt, **options)
    ref = getattr(torch.optim.lr_scheduler, name)(ref_opt, **options)
    assert ours.get_last_lr() == ref.get_last_lr()
    for _ in range(25):
        ours_opt.step()
        ref_opt.step()
        ours.step()
        ref.step()
        assert ours.get_last_lr() == ref.get_last_lr()
        assert [g["lr"] for g in ours_opt.param_groups] == ref.get_last_lr()


def test_cosine_closed_form_within_the_first_period() -> None:
    opt = optim.SGD([nn.Parameter(tg.zeros(1))], lr=1.0)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=8, eta_min=0.1)
    for epoch in range(1, 9):
        sched.step()
        expected = 0.1 + 0.9 * (1 + math.cos(math.pi * epoch / 8)) / 2
        assert sched.get_last_lr()[0] == pytest.approx(expected, rel=1e-12)


def test_lambda_per_group_and_state_dict_round_trip() -> None:
    class Warmup:
        def __init__(self, steps: int) -> None:
            self.steps = steps

        def __call__(self, epoch: int) -> float:
            return min(1.0, (epoch + 1) / self.steps)

    opt = optim.Adam([{"params": [nn.Parameter(tg.zeros(1))]},
                      {"params": [nn.Parameter(tg.zeros(1))], "lr": 0.5}], lr=0.1)
    sched = lr_scheduler.LambdaLR(opt, [Warmup(4), lambda epoch: 0.5 ** epoch])
    for _ in range(2):
        sched.step()
    assert sched.get_last_lr() == pytest.approx([0.1 * 3 / 4, 0.5 * 0.25])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{"steps": 4}, None] and state["last_epoch"] == 2
    assert "optimizer" not in state

    opt2 = optim.Adam([{"params": [nn.Parameter(tg.zeros(1))]},
                       {"params": [nn.Parameter(tg.zeros(1))], "lr": 0.5}], lr=0.1)
    warmup = Warmup(100)
    restored = lr_scheduler.LambdaLR(opt2, [warmup, lambda epoch: 0.5 ** epoch])
    restored.load_state_dict(state)
    assert warmup.steps == 4 and restored.last_epoch == 2
    restored.step()
    sched.step()
    assert restored.get_last_lr() == sched.get_last_lr()


def test_step_lr_state_dict_resumes() -> None:
    opt = optim.SGD([nn.Parameter(tg.zeros(1))], lr=1.0)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    for _ in range(3):
        sched.step()
    state = sched.state_dict()
    opt2 = optim.SGD([nn.Parameter(tg.zeros(1))], lr=1.0)
    opt2.load_state_dict(opt.state_dict())
    resumed = lr_scheduler.StepLR(opt2, step_size=5)
    resumed.load_state_dict(state)
    resumed.step()
    sched.step()
    assert resumed.get_last_lr() == sched.get_last_lr() == pytest.approx([0.01])


def test_bad_scheduler_arguments() -> None:
    opt = optim.SGD([nn.Parameter(tg.zeros(1))], lr=1.0)
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        lr_scheduler.StepLR([], step_size=1)
    with pytest.raises(ValueError, match="step_size must be a positive int, got 0"):
        lr_scheduler.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="Expected 1 lr_lambdas, but got 2"):
        lr_scheduler.LambdaLR(opt, [lambda e: 1.0, lambda e: 1.0])
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.CosineAnnealingLR(optim.SGD([nn.Parameter(tg.zeros(1))], lr=1.0), T_max=3,
                                       last_epoch=4)
