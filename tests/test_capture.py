"""tg.cuda.capture and tg.cuda.CUDAGraph: the eager fallback on the CPU everywhere; on a GPU,
replayed training steps must be bitwise equal to eager ones and memory must stay flat."""

from __future__ import annotations

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import nn


def test_capture_on_cpu_runs_the_function_each_call():
    calls = []

    @tg.cuda.capture
    def step(x, scale):
        calls.append(1)
        return (x * scale).sum()

    x = tg.tensor([1.0, 2.0, 3.0])
    assert [step(x, 2.0).item() for _ in range(5)] == [12.0] * 5
    assert len(calls) == 5


def test_capture_decorator_with_arguments_and_validation():
    step = tg.cuda.capture(warmup=3)(lambda x: x + 1)
    assert step.warmup == 3
    assert step(tg.zeros(2)).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="warm-up"):
        tg.cuda.capture(lambda x: x, warmup=0)


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
           scheduler: object = None) -> list[float]:
    """Losses of one training step per batch, eager or through tg.cuda.capture; the
    scheduler (if any) steps between calls, outside the captured function."""
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    run = tg.cuda.capture(step) if captured else step
    losses = []
    for x, y in batches:
        losses.append(run(x, y).item())
        if scheduler is not None:
            scheduler.step()
    return losses


@pytest.mark.parametrize("make_opt", [
    lambda p: tg.optim.SGD(p, lr=0.05, momentum=0.9),
    lambda p: tg.optim.Adam(p, lr=1e-3),
], ids=["sgd", "adam"])
def test_replayed_steps_are_bitwise_equal_to_eager_steps(device, make_opt):
    if device != "cuda":
        pytest.skip("graph capture needs CUDA; the CPU path is the eager fallback above")
    batches = _batches(12, device)
    eager, replayed = _mlp(0, device), _mlp(0, device)
    eager_losses = _train(eager, make_opt(eager.parameters()), batches, captured=False)
    replay_losses = _train(replayed, make_opt(replayed.parameters()), batches, captured=True)
    assert replay_losses == eager_losses
    for (name, a), (_, b) in zip(eager.named_parameters(), replayed.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def test_host_reads_inside_capture_raise_a_clear_error(device):
    if device != "cuda":
        pytest.skip("graph capture needs CUDA")
    x = tg.ones(4, device=device)
    graph = tg.cuda.CUDAGraph(device)
    with pytest.raises(tg.cuda.CaptureError, match=r"\.item\(\)"):
        with graph.capture():
            (x * 2).sum().item()


def test_graph_memory_stays_flat_over_replays(device):
    if device != "cuda":
        pytest.skip("graph capture needs CUDA")
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
    if device != "cuda":
        pytest.skip("graph capture needs CUDA")
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
    if device != "cuda":
        pytest.skip("graph capture needs CUDA")
    drop = nn.Dropout(0.5)
    step = tg.cuda.capture(lambda x: drop(x) * 1.0)
    x = tg.ones(4096, device=device)
    masks = [step(x).numpy() != 0 for _ in range(5)]  # 2 eager, 1 capture, 2 replays
    assert not np.array_equal(masks[3], masks[4])
    assert abs(masks[4].mean() - 0.5) < 0.05


def test_cnn_with_batchnorm_replays_match_eager_including_running_stats(device):
    if device != "cuda":
        pytest.skip("graph capture needs CUDA")
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
