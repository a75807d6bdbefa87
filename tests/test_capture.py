"""tg.capture (and its alias tg.cuda.capture) on every device: replayed training steps are
bitwise equal to eager ones, host reads raise CaptureError, memory stays flat; and the
CUDA-only tg.cuda.CUDAGraph."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import nn


def test_capture_warms_up_records_once_then_replays(device):
    calls = []

    @tg.capture
    def step(x, scale):
        calls.append(1)
        return (x * scale).sum()

    x = tg.tensor([1.0, 2.0, 3.0], device=device)
    out = [step(x, 2.0).item() for _ in range(3)]
    assert len(calls) == 3  # two warm-up calls, one recording
    assert step(tg.tensor([1.0, 1.0, 1.0], device=device), 2.0).item() == 6.0
    assert [step(x, 2.0).item() for _ in range(2)] + out == [12.0] * 5
    assert len(calls) == 3  # replays run no Python of the step
    assert step(x, 3.0).item() == 18.0  # another constant is another key: warm-up again
    assert len(calls) == 4


def test_capture_is_tg_cuda_capture_and_validates_its_arguments():
    assert tg.cuda.capture is tg.capture and tg.cuda.CaptureError is tg.CaptureError
    step = tg.capture(warmup=3)(lambda x: x + 1)
    assert step.warmup == 3
    assert step(tg.zeros(2)).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="warm-up"):
        tg.capture(lambda x: x, warmup=0)
    with pytest.raises(ValueError, match="max_graphs"):
        tg.capture(lambda x: x, max_graphs=0)


def test_capture_records_again_per_shape_up_to_max_graphs(device):
    step = tg.capture(lambda x: x * 2, warmup=1, max_graphs=2)
    for n in (2, 3):
        for _ in range(3):
            assert step(tg.ones(n, device=device)).tolist() == [2.0] * n
    with pytest.raises(tg.CaptureError, match="already captured for 2"):
        for _ in range(2):
            step(tg.ones(4, device=device))


def test_capture_takes_lists_and_arrays_as_arguments(device):
    calls = []

    @tg.capture
    def step(x, dims, weights):
        calls.append(1)
        return x.sum(dim=dims) * float(weights.sum())

    x = tg.tensor(np.arange(24.0).reshape(2, 3, 4), device=device)
    host = np.arange(24.0).reshape(2, 3, 4)
    for dims, weights in [([0, 2], np.array([1.0, 2.0]))] * 5 + [([1], np.array([3.0]))] * 4:
        got = step(x, dims, weights).numpy()
        np.testing.assert_array_equal(got, host.sum(axis=tuple(dims)) * weights.sum())
    assert len(calls) == 3 + 3  # each key: two warm-up calls and the capture; then replays


def test_capture_refuses_tensors_inside_containers(device):
    step = tg.capture(lambda x, pair: x + pair[0] + pair[1])
    x = tg.ones(3, device=device)
    with pytest.raises(TypeError, match=r"argument 1\[0\] holds a tensor.*of its own"):
        step(x, [x, x])
    with pytest.raises(TypeError, match=r"argument 1 is a set.*compared by value"):
        tg.capture(lambda x, s: x)(x, {1, 2})


def test_cuda_graph_needs_a_cuda_device():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        tg.cuda.CUDAGraph("cpu")


def _mlp(seed: int, device: str) -> nn.Module:
    tg.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10)).to(device)


def _batches(n: int, device: str) -> list[tuple[tg.Tensor, tg.Tensor]]:
    rng = np.random.default_rng(1)
    return [(tg.tensor(rng.standard_normal((64, 784)), dtype=tg.float32, device=device),
             tg.tensor(rng.integers(0, 10, 64), device=device)) for _ in range(n)]


def _train(model: nn.Module, opt: object, batches: list, captured: bool,
           scheduler: object = None, before: object = None) -> list[float]:
    """Losses of one training step per batch, eager or through tg.capture; the
    scheduler (if any) steps between calls, outside the captured function, and before(k)
    (if given) runs before the k-th call."""
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    run = tg.capture(step) if captured else step
    losses = []
    for k, (x, y) in enumerate(batches):
        if before is not None:
            before(k)
        losses.append(run(x, y).item())
        if scheduler is not None:
            scheduler.step()
    return losses


@pytest.mark.parametrize("make_opt", [
    lambda p: tg.optim.SGD(p, lr=0.05, momentum=0.9),
    lambda p: tg.optim.Adam(p, lr=1e-3),
], ids=["sgd", "adam"])
def test_replayed_steps_are_bitwise_equal_to_eager_steps(device, make_opt):
    batches = _batches(12, device)
    eager, replayed = _mlp(0, device), _mlp(0, device)
    eager_losses = _train(eager, make_opt(eager.parameters()), batches, captured=False)
    replay_losses = _train(replayed, make_opt(replayed.parameters()), batches, captured=True)
    assert replay_losses == eager_losses
    for (name, a), (_, b) in zip(eager.named_parameters(), replayed.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_replays_follow_each_batch_targets(device, reduction):
    # ignore_index rows count 0 and leave the mean, as eager; a batch with every row ignored
    # replays as silently as eager (the mean's 0 / 0 is NaN, the gradients 0); a target out of
    # range, which the CPU refuses eagerly, gives NaN in a replay (the check would read values
    # on the host), as on CUDA; and the next batch's targets are read again.
    rng = np.random.default_rng(3)
    x = tg.tensor(rng.standard_normal((6, 5)), dtype=tg.float32, device=device,
                  requires_grad=True)
    loss_fn = nn.CrossEntropyLoss(ignore_index=2, reduction=reduction)

    def step(y):
        x.grad = None
        loss = loss_fn(x, y)
        loss.sum().backward()
        return loss, x.grad

    run = tg.capture(step, warmup=1)
    batches = [[0, 2, 4, 1, 2, 3], [2, 2, 2, 2, 2, 0], [1, 1, 0, 4, 3, 2], [2, 2, 2, 2, 2, 2],
               [0, 7, 2, 1, 1, 1]]
    for k, labels in enumerate(batches):
        y = tg.tensor(labels, device=device)
        loss, grad = (t.numpy().copy() for t in run(y))
        if k < 4:  # replays (from the second call) against eager on the same targets
            want_loss, want_grad = (t.numpy() for t in step(y))
            np.testing.assert_array_equal(loss, want_loss)
            np.testing.assert_array_equal(grad, want_grad)
            assert np.all(np.isfinite(loss)) == (k != 3 or reduction != "mean")
            assert np.any(grad) == (k != 3)
        elif reduction == "none":  # only the row whose target is 7 (of 5 classes)
            assert np.isnan(loss).tolist() == [False, True, False, False, False, False]
        else:
            assert np.isnan(loss)


@pytest.mark.parametrize("read, what", [
    (lambda t: t.item(), r"\.item\(\)"),
    (lambda t: t.numpy(), r"\.numpy\(\)"),
    (lambda t: t.tolist(), r"\.tolist\(\)"),
    (lambda t: str(t), "printing"),
    (lambda t: 1.0 if t > 0 else 0.0, "Python branch"),
], ids=["item", "numpy", "tolist", "print", "branch"])
def test_host_reads_inside_capture_raise_a_clear_error(device, read, what):
    def step(x):
        y = (x * 2).sum()
        read(y)
        return y

    captured = tg.capture(step, warmup=1)
    x = tg.ones(4, device=device)
    captured(x)  # the warm-up call runs eagerly: reads are fine there
    with pytest.raises(tg.CaptureError, match=what):
        captured(x)


def test_host_reads_inside_a_cuda_graph_raise_a_clear_error(device):
    if device != "cuda":
        pytest.skip("tg.cuda.CUDAGraph is CUDA's")
    x = tg.ones(4, device=device)
    graph = tg.cuda.CUDAGraph(device)
    with pytest.raises(tg.CaptureError, match=r"\.item\(\)"):
        with graph.capture():
            (x * 2).sum().item()


def test_data_dependent_sizes_inside_capture_raise_a_clear_error(device):
    step = tg.capture(lambda x: x[x > 0].sum(), warmup=1)
    x = tg.tensor([1.0, -1.0, 2.0], device=device)
    assert step(x).item() == 3.0
    with pytest.raises(tg.CaptureError):
        step(x)


def test_graph_memory_stays_flat_over_replays(device):
    if device != "cuda":
        pytest.skip("tg.cuda.CUDAGraph is CUDA's; test_captured_step_memory_stays_flat "
                    "covers every device")
    x = tg.randn(256, 256, device=device)
    w = tg.randn(256, 256, device=device)
    graph = tg.cuda.CUDAGraph(device)
    with graph.capture():
        y = (x @ w).relu().sum()
    graph.replay()
    before = graph.pool_bytes()
    for _ in range(1000):
        graph.replay()
    tg.cuda.synchronize()
    assert graph.pool_bytes() == before
    np.testing.assert_allclose(y.item(), np.maximum(x.numpy() @ w.numpy(), 0).sum(), rtol=1e-4)


def test_captured_step_memory_stays_flat(device):
    """1,000 replays of a training step hold no more host memory than the first 2,000 did
    (NumPy reports its allocations to tracemalloc; on CUDA this counts the host side only).
    The first ones may fill Python's free lists (up to 2,000 tuples per size), which
    tracemalloc counts as held."""
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.1),
                          nn.Linear(64, 10)).to(device)
    opt = tg.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    @tg.capture
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    x, y = tg.randn(16, 32, device=device), tg.randint(0, 10, (16,), device=device)
    tracemalloc.start()
    try:
        for _ in range(2000):
            step(x, y)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(1000):
            step(x, y)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 4096, (before, after)
    assert np.isfinite(step(x, y).item())


def test_schedulers_update_the_learning_rate_the_kernels_read(device):
    p = tg.zeros(3, device=device, requires_grad=True)
    opt = tg.optim.SGD([p], lr=0.5)
    sched = tg.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    for expected_delta in (0.5, 0.05, 0.005):
        p.grad = tg.ones(3, device=device)
        before = p.numpy().copy()
        opt.step()
        np.testing.assert_allclose(before - p.numpy(), expected_delta, rtol=1e-6)
        sched.step()
    (lr_array,) = opt.param_groups[0].lr_arrays.values()
    assert float(tg.Tensor(lr_array).item()) == pytest.approx(0.0005)


def test_adam_counts_its_steps_on_the_device(device):
    p = tg.ones(4, device=device, requires_grad=True)
    opt = tg.optim.Adam([p], lr=0.1)
    for _ in range(3):
        p.grad = tg.ones(4, device=device)
        opt.step()
    step = opt.state[p]["step"]
    assert step.device == tg.Device(device) and step.item() == 3.0


def test_replays_follow_a_scheduler_and_count_adam_steps(device):
    batches = _batches(8, device)
    results = []
    for captured in (False, True):
        model = _mlp(0, device)
        opt = tg.optim.Adam(model.parameters(), lr=1e-3)
        sched = tg.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        losses = _train(model, opt, batches, captured, scheduler=sched)
        results.append((losses, [p.numpy() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


def test_dropout_draws_a_new_mask_on_every_replay(device):
    drop = nn.Dropout(0.5)
    step = tg.capture(lambda x: drop(x) * 1.0)
    x = tg.ones(4096, device=device)
    masks = [step(x).numpy() != 0 for _ in range(5)]  # 2 eager, 1 capture, 2 replays
    assert not np.array_equal(masks[3], masks[4])
    assert abs(masks[4].mean() - 0.5) < 0.05


def test_dropout_replays_equal_eager_steps_under_a_fixed_seed(device):
    batches = _batches(6, device)
    runs = []
    for captured in (False, True):
        tg.manual_seed(5)
        model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.3),
                              nn.Linear(64, 10)).to(device)
        opt = tg.optim.SGD(model.parameters(), lr=0.1)
        runs.append((_train(model, opt, batches, captured),
                     [p.numpy() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def _snapshot(opt: object) -> dict:
    state = opt.state_dict()
    return {"state": {k: {n: v.clone() if isinstance(v, tg.Tensor) else v for n, v in s.items()}
                      for k, s in state["state"].items()},
            "param_groups": state["param_groups"]}


CHANGES = {  # (optimizer, what happens between the 5th and the 6th call)
    "momentum": ("sgd", lambda model, opt, saved: opt.param_groups[0].__setitem__(
        "momentum", 0.0)),
    "weight_decay": ("sgd", lambda model, opt, saved: opt.param_groups[0].__setitem__(
        "weight_decay", 0.01)),
    "betas": ("adam", lambda model, opt, saved: opt.param_groups[0].__setitem__(
        "betas", (0.5, 0.9))),
    "eval": ("sgd", lambda model, opt, saved: model.eval()),
    "freeze": ("sgd", lambda model, opt, saved: model[0].weight.requires_grad_(False)),
    "load_state_dict": ("adam", lambda model, opt, saved: opt.load_state_dict(saved)),
    "manual_seed": ("sgd", lambda model, opt, saved: tg.manual_seed(11)),  # dropout draws
    "data": ("sgd", lambda model, opt, saved: setattr(model[0].weight, "data",
                                                      model[0].weight.data * 0.5)),
    "to": ("sgd", lambda model, opt, saved: model.double().float()),  # new arrays, same values
    "add_param_group": ("sgd-first-layer", lambda model, opt, saved: opt.add_param_group(
        {"params": list(model[3].parameters())})),
}


def _train_with_a_change(device: str, change: str, captured: bool
                         ) -> tuple[list[float], list[np.ndarray]]:
    rng = np.random.default_rng(4)
    batches = [(tg.tensor(rng.standard_normal((8, 20)), dtype=tg.float32, device=device),
                tg.tensor(rng.integers(0, 4, 8), device=device)) for _ in range(12)]
    kind, apply = CHANGES[change]
    tg.manual_seed(7)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(16, 4)).to(device)
    params = model[0].parameters() if kind == "sgd-first-layer" else model.parameters()
    opt = (tg.optim.Adam(params, lr=0.01) if kind == "adam"
           else tg.optim.SGD(params, lr=0.1, momentum=0.9))
    saved = {}

    def before(k: int) -> None:
        if k == 2:
            saved.update(_snapshot(opt))
        if k == 5:
            apply(model, opt, saved)

    losses = _train(model, opt, batches, captured, before=before)
    return losses, [p.numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_of_baked_state_records_again_and_replays_match_eager(device, change):
    # What a recording reads once (hyperparameters, the optimizer's state tensors, modes,
    # requires_grad) changes between calls: the captured step warms up and records again, so
    # that it keeps matching the eager step bit for bit.
    eager_losses, eager_params = _train_with_a_change(device, change, captured=False)
    losses, params = _train_with_a_change(device, change, captured=True)
    assert losses == eager_losses
    for got, want in zip(params, eager_params):
        np.testing.assert_array_equal(got, want)


def test_setting_a_hyperparameter_to_its_value_keeps_the_recording():
    calls = []
    p = tg.zeros(3, requires_grad=True)
    opt = tg.optim.SGD([p], lr=0.1, momentum=0.9)

    @tg.capture
    def step():
        calls.append(1)
        opt.zero_grad()
        (p * 2.0).sum().backward()
        opt.step()

    for _ in range(4):
        step()
    opt.param_groups[0]["momentum"] = 0.9
    opt.param_groups[0]["lr"] = 0.5  # read on every replay
    step()
    assert len(calls) == 3  # two warm-up calls and one recording, no more


def test_cnn_with_batchnorm_replays_match_eager_including_running_stats(device):
    rng = np.random.default_rng(2)
    batches = [(tg.tensor(rng.standard_normal((16, 1, 8, 8)), dtype=tg.float32, device=device),
                tg.tensor(rng.integers(0, 10, 16), device=device)) for _ in range(6)]
    runs = []
    for captured in (False, True):
        tg.manual_seed(3)
        model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).to(device)
        opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        runs.append((_train(model, opt, batches, captured),
                     {k: v.numpy() for k, v in model.state_dict().items()}))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        np.testing.assert_array_equal(value, runs[1][1][key], err_msg=key)


def test_a_step_without_tensor_arguments_records_for_the_default_device(device):
    if device != "cuda":
        pytest.skip("the default device is the CPU here, where the step's tensors are")
    w = tg.ones(3, device=device)
    step = tg.capture(lambda: w * 2, warmup=1)
    step()
    with pytest.raises(tg.CaptureError, match="read a CUDA tensor"):
        step()  # recorded for the CPU, the default device: refused, not a silent no-op
    tg.set_default_device(device)
    try:
        fresh = tg.capture(lambda: w * 2, warmup=1)
        assert [fresh().tolist() for _ in range(3)] == [[2.0] * 3] * 3
    finally:
        tg.set_default_device(None)


def _grads_eager_and_replayed(fn, inputs):
    """fn's output and its inputs' gradients (under a fixed random upstream gradient), eager
    and from the third replay of tg.capture: (eager arrays, replayed arrays)."""
    def step(up, *xs):
        for x in xs:
            x.grad = None
        y = fn(*xs)
        (y * up).sum().backward()
        return (y, *(x.grad for x in xs))

    with tg.no_grad():
        shape = fn(*inputs).shape
    up = tg.tensor(np.random.default_rng(7).standard_normal(shape), device=inputs[0].device)
    eager = [t.numpy().copy() for t in step(up, *inputs)]
    captured = tg.capture(step)
    for _ in range(5):
        out = captured(up, *inputs)
    return eager, [t.numpy() for t in out]


@pytest.mark.parametrize("rows", [64, 65])
def test_linear_of_few_rows_by_a_wide_weight_matches_torch(device, rows):
    # 64 rows and 160 columns take the CPU's w @ x.T path (backend/_cpu.py), 65 the plain one.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    host = [rng.standard_normal(s) for s in ((rows, 200), (160, 200), (160,))]
    inputs = [tg.tensor(a, device=device, requires_grad=True) for a in host]
    eager, replayed = _grads_eager_and_replayed(tg.nn.functional.linear, inputs)
    for e, r in zip(eager, replayed):
        np.testing.assert_array_equal(r, e)
    ref = [torch.tensor(a, requires_grad=True) for a in host]
    y = torch.nn.functional.linear(*ref)
    (y * torch.tensor(np.random.default_rng(7).standard_normal(y.shape))).sum().backward()
    for got, want in zip(eager, [y.detach(), *(t.grad for t in ref)]):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)


def test_conv_bias_gradient_over_many_rows_matches_torch(device):
    # 2 x 48 x 48 = 4608 output positions: the bias gradient is the ones-row product of
    # ops/fused.py, not a sum.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    host = [rng.standard_normal(s) for s in ((2, 3, 48, 48), (5, 3, 3, 3), (5,))]
    inputs = [tg.tensor(a, device=device, requires_grad=True) for a in host]
    eager, replayed = _grads_eager_and_replayed(
        lambda x, w, b: tg.nn.functional.conv2d(x, w, b, padding=1), inputs)
    for e, r in zip(eager, replayed):
        np.testing.assert_array_equal(r, e)
    ref = [torch.tensor(a, requires_grad=True) for a in host]
    y = torch.nn.functional.conv2d(*ref, padding=1)
    (y * torch.tensor(np.random.default_rng(7).standard_normal(y.shape))).sum().backward()
    for got, want in zip(eager, [y.detach(), *(t.grad for t in ref)]):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-10)


def test_max_pool_gradient_keeps_inf_and_nan_at_the_maximum_only(device):
    # The backward masks each offset's gradient by its bits times 0 or 1 (ops/pooling.py):
    # a non-finite gradient must not leak onto a window's other positions, as in PyTorch.
    x = tg.tensor(np.arange(16.0).reshape(1, 1, 4, 4), device=device, requires_grad=True)
    gy = tg.tensor([[[[np.nan, np.inf], [-np.inf, 2.0]]]], device=device)
    (gx,) = tg.autograd.grad(tg.nn.functional.max_pool2d(x, 2), [x], gy)
    want = np.zeros((1, 1, 4, 4))
    want[0, 0, 1::2, 1::2] = [[np.nan, np.inf], [-np.inf, 2.0]]
    np.testing.assert_array_equal(gx.numpy(), want)
