"""What a training step launches on the (emulated) GPU: kernel launches by name and bytes read +
written, for a tiny MLP step and the optimizers, derived here launch by launch from the shapes.

The counts come from the emulated CuPy of tests/cuda_emulator (`cupy._emulator.counting()`),
so these tests run where it is first on PYTHONPATH (the suite's second, emulated run). A change
that adds or removes a launch, or moves more bytes, must change the tables below on purpose.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

import tensorgrad as tg
from benchmarks.counts import count_step

cupy = pytest.importorskip("cupy")
if not hasattr(cupy, "_emulator"):
    pytest.skip("launch counts come from the emulated CuPy (tests/cuda_emulator first on "
                "PYTHONPATH); a real GPU's CuPy has no counters", allow_module_level=True)

F, I64, B = 4, 8, 1  # bytes of float32, int64 and bool elements
N, IN, HID, C = 2, 4, 3, 2  # batch, input, hidden and class sizes of the tiny MLP


def _counted(step: Callable[[], None]) -> tuple[Counter[str], int, int]:
    """(launches by name, GEMMs, bytes) of the second call of step (the first compiles the
    kernels and makes lazy state), as the benchmark suite counts them."""
    counts = count_step(step)
    assert sum(counts["by_name"].values()) == counts["launches"]
    assert counts["host_copies"] == 0
    return Counter(counts["by_name"]), counts["gemms"], counts["bytes"]


def _gemm(m: int, n: int, k: int) -> tuple[str, int]:
    """An (m, k) @ (k, n) product: reads both operands, writes the result."""
    return "gemm", F * (m * k + k * n + m * n)


def _sgd(size: int) -> tuple[str, int]:
    """The fused SGD update: reads g and p, writes p, reads the learning rate (float64)."""
    return "tg_sgd_step", 3 * F * size + 8


def _tiny_mlp_step(opt_cls: type, **kw: float) -> Callable[[], None]:
    rng = np.random.default_rng(0)
    model = tg.nn.Sequential(tg.nn.Linear(IN, HID), tg.nn.ReLU(), tg.nn.Linear(HID, C))
    model.to("cuda")
    x = tg.tensor(rng.normal(size=(N, IN)).astype(np.float32), device="cuda")
    y = tg.tensor(np.array([0, 1]), device="cuda")
    opt = opt_cls(model.parameters(), **kw)
    loss_fn = tg.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def test_an_sgd_step_of_a_tiny_mlp() -> None:
    expected = [
        # forward: Linear+ReLU as a GEMM and the fused bias+ReLU kernel; the last Linear's bias
        # is an add
        _gemm(N, HID, IN), ("tg_bias_relu_fwd", F * (2 * N * HID + HID)),
        _gemm(N, C, HID), ("add", F * (2 * N * C + C)),
        # cross-entropy forward (ops/loss.py): log-softmax, one fused pass over the rows (each
        # row's loss, clamped target and weight; reads the log-probabilities whole, as a raw
        # array), the kept probabilities, the loss (sum / count) and the mean's weights
        # (weight / max(count, 1): 0, not NaN, when every row is ignored)
        ("tg_log_softmax_fwd", 2 * F * N * C),
        ("tg_softmax_xent_fwd", F * N * C + 2 * I64 * N + 2 * F * N),
        ("exp", 2 * F * N * C),
        ("sum", F * N + F), ("sum", F * N + F), ("divide", 3 * F),
        ("maximum", 2 * F), ("divide", 2 * F * N + F),
        # backward: the seed, the per-row scale gy * weight and the loss's fused gradient
        ("ones", F), ("multiply", F + 2 * F * N),
        ("tg_softmax_xent_bwd", 2 * F * N * C + I64 * N + F * N),
        # the layers backward: no gradient for the input x, so one GEMM fewer in layer 1
        _gemm(C, HID, N), _gemm(N, HID, C), ("sum", F * (N * C + C)),
        ("tg_relu_bwd", 3 * F * N * HID), _gemm(HID, IN, N), ("sum", F * (N * HID + HID)),
        # one fused update per parameter
        _sgd(HID * IN), _sgd(HID), _sgd(C * HID), _sgd(C),
    ]
    by_name, gemms, nbytes = _counted(_tiny_mlp_step(tg.optim.SGD, lr=0.1))
    assert by_name == Counter(name for name, _ in expected)
    assert gemms == 5
    assert nbytes == sum(n for _, n in expected) == 1212


@pytest.mark.parametrize("opt_cls", [tg.optim.Adam, tg.optim.AdamW])
def test_adam_launches_twice_per_parameter(opt_cls: type) -> None:
    # Per parameter, one thread counts the step and computes the step size and bias
    # corrections (reads lr, reads and writes the float64 step, writes 3 float64 scalars),
    # then the element update reads g and the scalars and reads and writes p, m and v. It
    # was three launches: the step count was incremented by a launch of its own.
    p = tg.zeros(3, 4, device="cuda", requires_grad=True)
    p.grad = tg.ones(3, 4, device="cuda")
    opt = opt_cls([p], lr=0.1)
    by_name, gemms, nbytes = _counted(opt.step)
    assert by_name == {"tg_adam_scalars": 1, "tg_adam_step": 1} and gemms == 0
    assert nbytes == (8 + 2 * 8 + 3 * 8) + (F * 12 + 3 * 8 + 3 * 2 * F * 12)
    assert float(opt.state[p]["step"]) == 2.0


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_rmsprop_launches_once_per_parameter(momentum: float) -> None:
    # The update also counts the step (the thread of element 0 does; PyTorch keeps the count
    # in the state): reads g and lr, reads and writes p, sq (and buf) and the float64 step.
    # The count was a launch of its own.
    p = tg.zeros(3, 4, device="cuda", requires_grad=True)
    p.grad = tg.ones(3, 4, device="cuda")
    opt = tg.optim.RMSprop([p], lr=0.1, momentum=momentum)
    by_name, gemms, nbytes = _counted(opt.step)
    name = "tg_rmsprop_momentum_step" if momentum else "tg_rmsprop_step"
    assert by_name == {name: 1} and gemms == 0
    states = 3 if momentum else 2
    assert nbytes == F * 12 + 8 + states * 2 * F * 12 + 2 * 8
    assert float(opt.state[p]["step"]) == 2.0
