"""Workloads 4 to 7, training: an MLP step at three sizes, a small CNN step, an Adam step over
many parameters, and the peak GPU memory of one MLP step.

Every implementation trains the same model from the same weights on the same batch. A step is
zero_grad, forward, cross-entropy, backward and the optimizer update, with no read of the loss
(that would synchronize the GPU inside the timed region). The hand-written references derive
the backward by hand and update in place: the floor of what an autodiff engine can cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from . import config
from ._harness import labels, measure, normal
from .config import MLP_SHAPES
from .impls import ALL, Impl, impl_param

F32 = 4
LR = 0.01
CLASSES = 10
CNN_CHANNELS = 8


def _param_cases(values: Callable[[Impl], tuple[Any, ...]]) -> list[Any]:
    return [pytest.param(impl, v, id=f"{v}-{impl.name}", marks=impl_param(impl).marks)
            for impl in ALL for v in values(impl)]


def _host_linear(fan_in: int, fan_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's default Linear initialization, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(fan_in)
    w = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
    b = rng.uniform(-bound, bound, fan_out).astype(np.float32)
    return w, b


def _nn(impl: Impl) -> Any:
    if impl.family == "tensorgrad":
        import tensorgrad as tg

        return tg
    import torch

    return torch


def _load(layer: Any, impl: Impl, w: np.ndarray, b: np.ndarray) -> None:
    """Copy host weights into a tensorgrad or PyTorch layer (still on the CPU)."""
    if impl.family == "tensorgrad":
        layer.weight.data = w
        layer.bias.data = b
    else:
        import torch

        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))


def _autodiff_step(impl: Impl, model: Any, x: Any, y: Any) -> Callable[[], None]:
    lib = _nn(impl)
    model = model.to(impl.device)
    loss_fn = lib.nn.CrossEntropyLoss()
    opt = lib.optim.SGD(model.parameters(), lr=LR)

    def step() -> None:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    return step


# ---- MLP ------------------------------------------------------------------------------------

def _mlp_host(widths: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [_host_linear(i, o, seed=10 + k) for k, (i, o) in enumerate(zip(widths, widths[1:]))]


def _autodiff_mlp(impl: Impl, widths: tuple[int, ...]) -> Any:
    lib = _nn(impl)
    layers: list[Any] = []
    for k, (w, b) in enumerate(_mlp_host(widths)):
        linear = lib.nn.Linear(w.shape[1], w.shape[0])
        _load(linear, impl, w, b)
        layers += [linear] if k == len(widths) - 2 else [linear, lib.nn.ReLU()]
    return lib.nn.Sequential(*layers)


def _softmax_xent_grad(xp: Any, z: Any, y: Any, rows: Any) -> tuple[Any, Any]:
    """(mean cross-entropy, its gradient w.r.t. the logits z) by hand, overwriting z."""
    z -= z.max(axis=1, keepdims=True)
    xp.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    loss = -xp.log(z[rows, y]).mean()
    z[rows, y] -= 1
    z /= z.shape[0]
    return loss, z


def _hand_mlp_step(impl: Impl, widths: tuple[int, ...], x: Any, y: Any) -> Callable[[], None]:
    """Linear/ReLU forward, softmax cross-entropy, the backward by hand, SGD in place.
    Weights are kept transposed (in, out) so that both matmuls read them contiguously."""
    xp = impl.xp
    params = [(xp.asarray(np.ascontiguousarray(w.T)), xp.asarray(b))
              for w, b in _mlp_host(widths)]
    rows = xp.arange(x.shape[0])

    def step() -> None:
        acts = [x]
        h = x
        for k, (wt, b) in enumerate(params):
            h = h @ wt
            h += b
            if k < len(params) - 1:
                xp.maximum(h, 0, out=h)
                acts.append(h)
        _, g = _softmax_xent_grad(xp, h, y, rows)
        for k in range(len(params) - 1, -1, -1):
            wt, b = params[k]
            gw = acts[k].T @ g
            gb = g.sum(axis=0)
            if k > 0:
                g = g @ wt.T
                g *= acts[k] > 0
            wt -= LR * gw
            b -= LR * gb

    return step


def _mlp_cases(impl: Impl) -> tuple[str, ...]:
    return config.sizes(impl.device).mlp_sizes


def _mlp_setup(impl: Impl, size: str) -> tuple[Callable[[], None], tuple[int, ...], int]:
    widths, batch = MLP_SHAPES[size]
    x, y = normal(impl, (batch, widths[0]), seed=2), labels(impl, batch, widths[-1])
    if impl.family == "hand":
        return _hand_mlp_step(impl, widths, x, y), widths, batch
    return _autodiff_step(impl, _autodiff_mlp(impl, widths), x, y), widths, batch


def _mlp_flops(widths: tuple[int, ...], batch: int) -> float:
    """Forward plus backward matmul flops of one step (3 matmuls per layer, 2 flops per MAC)."""
    return 6.0 * batch * sum(i * o for i, o in zip(widths, widths[1:]))


@pytest.mark.parametrize(("impl", "size"), _param_cases(_mlp_cases))
def test_mlp_step(benchmark: Any, impl: Impl, size: str) -> None:
    step, widths, batch = _mlp_setup(impl, size)
    measure(benchmark, impl, step, workload="mlp", case="mlp step", size=size,
            flops=_mlp_flops(widths, batch), shape="-".join(map(str, widths)), batch=batch)
    if impl.device == "cuda":
        benchmark.extra_info["peak_bytes"] = _peak_memory(impl, step)


def _captured_cases(impl: Impl) -> tuple[str, ...]:
    """tg.capture on every device; PyTorch's CUDA graphs on CUDA (it has none on the CPU)."""
    if impl.family == "tensorgrad" or (impl.family == "torch" and impl.device == "cuda"):
        return _mlp_cases(impl)
    return ()


def _captured(impl: Impl, step: Callable[[], None]) -> Callable[[], None]:
    """tg.capture(step), past its warm-up calls and the recording (made for the default
    device, as step takes no tensor arguments)."""
    import tensorgrad as tg

    captured = tg.capture(step)
    before = tg.get_default_device()
    tg.set_default_device(impl.device)
    try:
        for _ in range(5):
            captured()
    finally:
        tg.set_default_device(before)
    return captured


@pytest.mark.parametrize(("impl", "size"), _param_cases(_captured_cases))
def test_mlp_step_captured(benchmark: Any, impl: Impl, size: str) -> None:
    """The same step recorded once and replayed: tg.capture (a CUDA graph on CUDA, the list of
    NumPy calls on the CPU), PyTorch's torch.cuda.graph with its documented static-buffer
    recipe."""
    widths, batch = MLP_SHAPES[size]
    x, y = normal(impl, (batch, widths[0]), seed=2), labels(impl, batch, widths[-1])
    model = _autodiff_mlp(impl, widths)
    if impl.family == "tensorgrad":
        step = _captured(impl, _autodiff_step(impl, model, x, y))
    else:
        step = _torch_graph_step(model.to("cuda"), x, y)
    measure(benchmark, impl, step, workload="mlp", case="mlp step captured", size=size,
            flops=_mlp_flops(widths, batch), shape="-".join(map(str, widths)), batch=batch)


def _torch_graph_step(model: Any, x: Any, y: Any) -> Callable[[], None]:
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        loss_fn(model(x), y).backward()
        opt.step()
    return graph.replay


# ---- peak GPU memory of one MLP step --------------------------------------------------------

def _peak_memory(impl: Impl, step: Callable[[], None]) -> int:
    """Peak device memory over one (warm) step, weights and gradients included. CuPy's pool
    has no peak counter, so its high-water mark is the pool's size after emptying it and running
    one step (the pool only grows while the step runs); PyTorch reports max_memory_allocated."""
    impl.sync()
    if impl.family == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    import cupy

    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    step()
    impl.sync()
    return int(pool.total_bytes())


# ---- CNN ------------------------------------------------------------------------------------

def _cnn_host(image: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Conv 1->8 3x3 and Linear(8 * (image/2)^2 -> 10) weights, PyTorch's default bounds."""
    rng = np.random.default_rng(20)
    bound = 1 / 3.0  # fan_in of the conv = 1 * 3 * 3
    wc = rng.uniform(-bound, bound, (CNN_CHANNELS, 1, 3, 3)).astype(np.float32)
    bc = rng.uniform(-bound, bound, CNN_CHANNELS).astype(np.float32)
    w1, b1 = _host_linear(CNN_CHANNELS * (image // 2) ** 2, CLASSES, seed=21)
    return wc, bc, w1, b1


def _autodiff_cnn(impl: Impl, image: int) -> Any:
    lib = _nn(impl)
    wc, bc, w1, b1 = _cnn_host(image)
    conv = lib.nn.Conv2d(1, CNN_CHANNELS, 3, padding=1)
    linear = lib.nn.Linear(w1.shape[1], CLASSES)
    _load(conv, impl, wc, bc)
    _load(linear, impl, w1, b1)
    return lib.nn.Sequential(conv, lib.nn.ReLU(), lib.nn.MaxPool2d(2), lib.nn.Flatten(), linear)


def _hand_cnn_step(impl: Impl, image: int, x: Any, y: Any) -> Callable[[], None]:
    """Conv(3x3, pad 1) by im2col and one matmul, ReLU, 2x2 max-pool by a reshape, Linear,
    cross-entropy; backward by hand (the input needs no gradient, so no col2im); SGD."""
    xp = impl.xp
    wc, bc, w1, b1 = _cnn_host(image)
    batch, side, half, ch = x.shape[0], image, image // 2, CNN_CHANNELS
    # The NHWC layout keeps the conv output a plain matrix; the Linear weight is permuted to
    # match, so the model computes what the NCHW PyTorch model does.
    wct = xp.asarray(np.ascontiguousarray(wc.reshape(ch, 9).T))
    bc = xp.asarray(bc)
    w1t = xp.asarray(np.ascontiguousarray(
        w1.reshape(CLASSES, ch, half, half).transpose(2, 3, 1, 0).reshape(-1, CLASSES)))
    b1 = xp.asarray(b1)
    params = (wct, bc, w1t, b1)
    rows = xp.arange(batch)
    padded = xp.zeros((batch, side + 2, side + 2), np.float32)
    padded[:, 1:-1, 1:-1] = x[:, 0]
    s0, s1, s2 = padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        padded, (batch, side, side, 3, 3), (s0, s1, s2, s1, s2))
    cols = xp.ascontiguousarray(windows).reshape(batch * side * side, 9)

    def step() -> None:
        z = cols @ wct
        z += bc
        xp.maximum(z, 0, out=z)
        blocks = z.reshape(batch, half, 2, half, 2, ch)
        pooled = blocks.max(axis=(2, 4))
        flat = pooled.reshape(batch, -1)
        logits = flat @ w1t
        logits += b1
        _, g = _softmax_xent_grad(xp, logits, y, rows)
        gw1 = flat.T @ g
        gb1 = g.sum(axis=0)
        gpooled = (g @ w1t.T).reshape(batch, half, 1, half, 1, ch)
        # The max's gradient goes to the positions equal to it; where ReLU made a window all
        # zero, the ReLU mask below removes the ties again.
        gz = (blocks == pooled.reshape(batch, half, 1, half, 1, ch)) * gpooled
        gz = gz.reshape(-1, ch)
        gz *= z > 0
        gwc = cols.T @ gz
        gbc = gz.sum(axis=0)
        for p, gp in zip(params, (gwc, gbc, gw1, gb1)):
            p -= LR * gp

    return step


def _cnn_cases(impl: Impl) -> tuple[int, ...]:
    return (config.sizes(impl.device).cnn_image,)


@pytest.mark.parametrize(("impl", "image"), _param_cases(_cnn_cases))
def test_cnn_step(benchmark: Any, impl: Impl, image: int) -> None:
    batch = config.sizes(impl.device).cnn_batch
    x, y = normal(impl, (batch, 1, image, image), seed=3), labels(impl, batch, CLASSES)
    if impl.family == "hand":
        step = _hand_cnn_step(impl, image, x, y)
    else:
        step = _autodiff_step(impl, _autodiff_cnn(impl, image), x, y)
    measure(benchmark, impl, step, workload="cnn", case="cnn step", size=f"{batch}x{image}x{image}",
            batch=batch)


def _cnn_captured_cases(impl: Impl) -> tuple[int, ...]:
    return _cnn_cases(impl) if impl.family == "tensorgrad" else ()


@pytest.mark.parametrize(("impl", "image"), _param_cases(_cnn_captured_cases))
def test_cnn_step_captured(benchmark: Any, impl: Impl, image: int) -> None:
    """The CNN step through tg.capture."""
    batch = config.sizes(impl.device).cnn_batch
    x, y = normal(impl, (batch, 1, image, image), seed=3), labels(impl, batch, CLASSES)
    step = _captured(impl, _autodiff_step(impl, _autodiff_cnn(impl, image), x, y))
    measure(benchmark, impl, step, workload="cnn", case="cnn step captured",
            size=f"{batch}x{image}x{image}", batch=batch)


# ---- Adam -----------------------------------------------------------------------------------

ADAM_TENSORS = 10
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


def _hand_adam_step(impl: Impl, params: list[Any], grads: list[Any]) -> Callable[[], None]:
    xp = impl.xp
    moments = [(xp.zeros_like(p), xp.zeros_like(p)) for p in params]
    count = [0]

    def step() -> None:
        count[0] += 1
        t = count[0]
        lr_t = LR * np.sqrt(1 - BETA2**t) / (1 - BETA1**t)
        eps_t = EPS * np.sqrt(1 - BETA2**t)
        for p, g, (m, v) in zip(params, grads, moments):
            m *= BETA1
            m += (1 - BETA1) * g
            v *= BETA2
            v += (1 - BETA2) * (g * g)
            p -= lr_t * (m / (xp.sqrt(v) + eps_t))

    return step


def _adam_cases(impl: Impl) -> tuple[int, ...]:
    return (config.sizes(impl.device).adam_params,)


@pytest.mark.parametrize(("impl", "n"), _param_cases(_adam_cases))
def test_adam_step(benchmark: Any, impl: Impl, n: int) -> None:
    """One optimizer step over n float32 parameters in ADAM_TENSORS tensors; on PyTorch the
    fastest path of the device (fused on CUDA, foreach on the CPU)."""
    chunk = n // ADAM_TENSORS
    params = [normal(impl, chunk, seed=30 + k, requires_grad=impl.family != "hand")
              for k in range(ADAM_TENSORS)]
    grads = [normal(impl, chunk, seed=50 + k) for k in range(ADAM_TENSORS)]
    if impl.family == "hand":
        step = _hand_adam_step(impl, params, grads)
    else:
        for p, g in zip(params, grads):
            p.grad = g
        lib = _nn(impl)
        if impl.family == "torch":
            fast = {"fused": True} if impl.device == "cuda" else {"foreach": True}
            step = lib.optim.Adam(params, lr=LR, **fast).step
        else:
            step = lib.optim.Adam(params, lr=LR).step
    # Reads p, g, m, v and writes p, m, v: 7 float32 per parameter.
    measure(benchmark, impl, step, workload="adam", case="adam step", size=n,
            nbytes=7.0 * F32 * chunk * ADAM_TENSORS)
