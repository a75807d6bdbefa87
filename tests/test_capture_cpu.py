"""tg.capture on the CPU: what a replay runs (recorded NumPy calls only: no Tensor objects,
no step function), that every kind of array work a step does is replayed with new inputs
(views, in-place updates, creation, random draws, NumPy functions), that a failed recording
leaves nothing behind, and examples/train_digits.py --capture ends where the eager run does.
The training cases shared with CUDA are in test_capture.py."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from op_db import OPS, sample_arrays

import tensorgrad as tg
from tensorgrad import nn
from tensorgrad.backend import get_backend

ROOT = Path(__file__).resolve().parent.parent
CPU = get_backend(tg.Device("cpu"))


def test_replay_makes_no_tensors_and_runs_no_python_of_the_step(monkeypatch):
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = tg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    @tg.capture
    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    x, y = tg.randn(4, 8), tg.tensor([0, 1, 2, 0])
    for _ in range(3):
        step(x, y)
    made = []
    real_make = tg.Tensor._make.__func__
    monkeypatch.setattr(tg.Tensor, "_make", classmethod(
        lambda cls, *a, **k: made.append(1) or real_make(cls, *a, **k)))
    arrays = [p._data for p in model.parameters()]
    grads = [p.grad._data for p in model.parameters()]
    before = [a.copy() for a in arrays]
    loss = step(x, y)
    assert made == []
    # In place, as eager: the parameters' and gradients' arrays are the same objects.
    assert all(p._data is a for p, a in zip(model.parameters(), arrays))
    assert all(p.grad._data is g for p, g in zip(model.parameters(), grads))
    assert not any(np.array_equal(a, b) for a, b in zip(arrays, before))
    assert np.isfinite(loss.item())


def test_new_inputs_flow_through_views_creation_and_numpy_functions():
    w = tg.randn(2, 3)

    def step(x):
        t = x.t()  # a view
        acc = tg.zeros(4, 2)  # made inside: zeroed again on every replay
        acc += t[:, :2] * 2
        y = tg.cat([acc, t @ w], dim=1).reshape(-1)
        return y, y.max(), x.sum(1)

    captured = tg.capture(step)
    x0 = tg.randn(2, 4)
    for _ in range(3):
        captured(x0)
    for _ in range(3):
        x = tg.randn(2, 4)
        got = captured(x)
        want = step(x)
        for g, e in zip(got, want):
            np.testing.assert_array_equal(g.numpy(), e.numpy())


def test_random_draws_inside_the_step_are_new_on_every_replay():
    captured = tg.capture(lambda x: x + tg.rand(1000))
    x = tg.zeros(1000)
    calls = [captured(x).numpy().copy() for _ in range(5)]  # 2 eager, 1 recording, 2 replays
    assert not np.array_equal(calls[3], calls[4])
    assert 0.0 <= calls[4].min() and calls[4].max() < 1.0


def test_the_same_seed_gives_the_same_draws_eager_and_replayed():
    def run(captured: bool) -> list[np.ndarray]:
        tg.manual_seed(7)
        drop = nn.Dropout(0.5)
        step = (tg.capture if captured else (lambda f: f))(lambda x: drop(x) * 3)
        return [step(tg.ones(64)).numpy().copy() for _ in range(6)]

    for eager, replayed in zip(run(False), run(True)):
        np.testing.assert_array_equal(eager, replayed)


def test_float_of_a_tensor_inside_the_step_names_the_read():
    def step(x):
        scale = float(x.sum())
        return x * scale

    captured = tg.capture(step, warmup=1)
    x = tg.ones(3)
    captured(x)
    with pytest.raises(tg.CaptureError, match="on the host"):
        captured(x)


def test_a_failed_recording_leaves_tensors_and_the_backend_as_they_were():
    slot = tg.Tensor.__dict__["_data"]
    xp, kernels = CPU.xp, CPU.kernels

    def step(x):
        y = x * 2
        y.sum().item()
        return y

    captured = tg.capture(step, warmup=1)
    x = tg.ones(2)
    captured(x)
    with pytest.raises(tg.CaptureError):
        captured(x)
    assert tg.Tensor.__dict__["_data"] is slot
    assert CPU.xp is np and CPU.kernels is kernels and xp is np and not CPU.capturing
    assert type((x + 1)._data) is np.ndarray and (x + 1).tolist() == [2.0, 2.0]


def test_a_step_without_tensor_arguments_records_on_the_default_device():
    p = tg.zeros(3, requires_grad=True)
    opt = tg.optim.SGD([p], lr=1.0)

    @tg.capture
    def step():
        opt.zero_grad()
        (p * tg.tensor(1.0)).sum().backward()
        opt.step()

    for k in range(1, 6):
        step()
        assert p.tolist() == [-float(k)] * 3


def test_train_digits_with_capture_ends_with_the_eager_weights(tmp_path: Path):
    pytest.importorskip("matplotlib", reason="the example plots with matplotlib")
    pytest.importorskip("sklearn", reason="the digits come from scikit-learn's bundled copy")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    states = []
    for extra in ([], ["--capture"]):
        out = tmp_path / ("captured" if extra else "eager")
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "train_digits.py"), "--device", "cpu",
             "--out", str(out), "--epochs", "4", "--hidden", "32", *extra],
            env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        states.append(tg.load(next(out.glob("*.safetensors"))))
    eager, captured = states
    assert captured["history"]["train_loss"] == eager["history"]["train_loss"]
    for name, value in eager["model"].items():
        np.testing.assert_array_equal(captured["model"][name].numpy(), value.numpy(),
                                      err_msg=name)


def test_an_array_made_by_numpy_work_the_recording_missed_is_refused():
    """The backend graph directly: ndarray.compress is none of the hooks, so its result would
    be a frozen copy; using it inside the recording raises instead of replaying stale values."""
    graph = CPU.new_graph()
    x = np.arange(6.0)
    with pytest.raises(tg.CaptureError, match="does not record"):
        with graph.capture():
            unseen = graph.trace(x).compress([True, False, True, True, False, True])
            unseen + 1
    other = CPU.new_graph()
    with other.capture():
        y = other.trace(x) * 2 + 1
    x[:] = 1.0
    other.replay()
    np.testing.assert_array_equal(y, np.full(6, 3.0))


def test_other_threads_are_not_recorded():
    """Tensors are read through the recording in every thread while it runs; only the
    recording thread's work may land in the list (a loader thread's must not replay)."""
    graph = CPU.new_graph()
    x = np.ones(4)
    seen = {}
    with graph.capture():
        worker = threading.Thread(target=lambda: seen.setdefault("y", graph.trace(x) + 1))
        worker.start()
        worker.join()
        z = graph.trace(x) * 2
    assert len(graph) == 1 and type(seen["y"]) is np.ndarray
    x[:] = 5.0
    graph.replay()
    np.testing.assert_array_equal(z, np.full(4, 10.0))


def test_a_kernel_with_several_results_replays_into_its_buffers():
    """A fused kernel that returns several arrays and takes out= is one entry that writes
    them into the recording's buffers: no copies on replay, and new targets flow through."""
    graph = CPU.new_graph()
    logp = np.log(np.full((3, 4), 0.25, np.float32))
    target = np.array([0, 1, 2])
    with graph.capture():
        nll, tc, kept = CPU.kernels.softmax_xent_fwd(graph.trace(logp), graph.trace(target), 1)
    assert len(graph) == 1
    out = graph._entries[0][2]["out"]
    assert all(np.shares_memory(r, o) for r, o in zip((nll, tc, kept), out))
    target[:] = [1, 5, 3]  # ignored, out of range, in range
    graph.replay()
    np.testing.assert_array_equal(nll, np.array([0, np.nan, np.log(4)], np.float32))
    np.testing.assert_array_equal(tc, [1, 0, 3])
    np.testing.assert_array_equal(kept, [0, 1, 1])


def test_a_call_made_inside_np_errstate_replays_under_it():
    """An op that silences NumPy for one call (1 / 0 of a batch with every row ignored) is
    as silent on replay; the calls around it replay under the caller's settings."""
    graph = CPU.new_graph()
    x = np.ones(3)
    with graph.capture():
        t = graph.trace(x)
        with np.errstate(divide="ignore"):
            quiet = 1.0 / t
        loud = 2.0 / t
    x[:] = 0.0
    with pytest.warns(RuntimeWarning, match="divide by zero") as caught:
        graph.replay()
    assert len(caught) == 1  # from loud only
    assert np.all(np.isinf(quiet)) and np.all(np.isinf(loud))


def test_embedding_gradients_follow_new_indices_on_replay():
    """The CPU's scatter-add groups rows by the index values it sees: under a recording it
    must be the np.add.at a replay repeats, not a grouping baked for the first indices."""
    emb = nn.Embedding(10, 16)

    def step(idx):
        emb.weight.grad = None
        emb(idx).sum().backward()
        return emb.weight.grad

    captured = tg.capture(step)
    rng = np.random.default_rng(3)
    for _ in range(5):
        idx = tg.tensor(rng.integers(0, 10, 64))
        got = captured(idx).numpy().copy()
        np.testing.assert_array_equal(got, step(idx).numpy())


# op_db entries whose function builds a tensor from host data inside the step (Python lists
# as indices, class weights) or indexes by a boolean mask: refused on every device.
REFUSED = {"masked_fill_bcast", "getitem_list_repeat", "getitem_tensor", "getitem_two_lists",
           "getitem_mixed", "getitem_mask", "cross_entropy_unbatched_weighted"}


@pytest.mark.parametrize("spec", OPS, ids=[spec.name for spec in OPS])
def test_every_op_replays_bitwise_equal_to_eager_with_new_inputs(spec):
    """Forward and tg.grad of each op_db entry (its first sample): warm-up, recording and two
    replays, each with new values, equal to the eager call bit for bit."""
    sample = spec.samples[0]
    rng = np.random.default_rng(11)

    def run(*leaves):
        out = spec.call(tg, list(leaves), sample)
        outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,))
                if isinstance(o, tg.Tensor)]
        total = sum(o.float().sum() for o in outs)
        grads = tg.grad(total, list(leaves), allow_unused=True) if total.requires_grad else ()
        return tuple(outs) + tuple(g for g in grads if g is not None)

    captured = tg.capture(run, warmup=1)
    for call in range(4):
        leaves = [tg.tensor(a, requires_grad=True) for a in sample_arrays(spec, sample, rng)]
        if spec.name in REFUSED and call == 1:
            with pytest.raises(tg.CaptureError):
                captured(*leaves)
            return
        got = [o.numpy().copy() for o in captured(*leaves)]
        want = [o.numpy() for o in run(*leaves)]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    assert spec.name not in REFUSED


def test_transformer_with_clipping_adamw_and_a_scheduler_replays_like_eager():
    """A causal two-layer encoder with dropout, gradient clipping, AdamW and StepLR: the
    losses and final weights of replayed steps equal eager ones bit for bit."""
    rng = np.random.default_rng(0)
    data = [(tg.tensor(rng.standard_normal((4, 6, 16)), dtype=tg.float32),
             tg.tensor(rng.integers(0, 5, 4))) for _ in range(6)]
    mask = tg.tensor(np.triu(np.full((6, 6), -np.inf), 1), dtype=tg.float32)

    def run(captured: bool) -> tuple[list[float], list[np.ndarray]]:
        tg.manual_seed(1)
        layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.1,
                                           batch_first=True)
        enc, head = nn.TransformerEncoder(layer, 2), nn.Linear(16, 5)
        params = list(enc.parameters()) + list(head.parameters())
        opt = tg.optim.AdamW(params, lr=1e-3)
        sched = tg.optim.lr_scheduler.StepLR(opt, 2, 0.5)

        def step(x, y):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(head(enc(x, mask=mask).mean(1)), y)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            return loss

        run_step = tg.capture(step) if captured else step
        losses = []
        for x, y in data:
            losses.append(run_step(x, y).item())
            sched.step()
        return losses, [p.numpy().copy() for p in params]

    (eager_losses, eager), (replay_losses, replayed) = run(False), run(True)
    assert replay_losses == eager_losses
    for a, b in zip(eager, replayed):
        np.testing.assert_array_equal(a, b)
