"""The Modules with parameters or buffers against PyTorch's with copied weights (forward, every
gradient and the buffers, float64 and float32), and what only a Module has: running
statistics, modes, initialization, fusion inside Sequential, bad input. The ops under them
(F.linear, F.conv2d, the pools, the norms, embedding, the activation Modules) are rows of
tests/op_db.py, which gradchecks them to second order and compares them with PyTorch."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import nn

TOL = {"float64": dict(rtol=1e-9, atol=1e-10), "float32": dict(rtol=2e-4, atol=2e-5)}


@dataclass(frozen=True)
class LayerCase:
    name: str
    make: Callable[[], nn.Module]
    make_torch: Callable[[Any], Any]   # torch.nn given, returns the reference module
    shape: tuple[int, ...]
    int_input: int = 0                 # > 0: integer input in [0, int_input)
    train: bool = True
    # the inputs of DEGENERATE this case is compared on; leaving one out needs a reason
    degenerate: tuple[str, ...] = ("empty", "unbatched")


def _maxout_ref(torch: Any) -> Any:
    class MaxoutRef(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.empty(2 * 3, 4))
            self.bias = torch.nn.Parameter(torch.empty(2 * 3))

        def forward(self, x: Any) -> Any:
            z = torch.nn.functional.linear(x, self.weight, self.bias)
            return z.reshape(*x.shape[:-1], 2, 3).amax(-1)

    return MaxoutRef()


MODULES_WITH_STATE = [
    LayerCase("linear", lambda: nn.Linear(4, 3), lambda t: t.nn.Linear(4, 3), (5, 4)),
    LayerCase("linear_nobias_3d", lambda: nn.Linear(4, 3, bias=False),
              lambda t: t.nn.Linear(4, 3, bias=False), (2, 5, 4)),
    LayerCase("conv", lambda: nn.Conv2d(3, 4, 3), lambda t: t.nn.Conv2d(3, 4, 3), (2, 3, 6, 6)),
    LayerCase("conv_strided", lambda: nn.Conv2d(2, 3, (2, 3), stride=2, padding=1, dilation=2),
              lambda t: t.nn.Conv2d(2, 3, (2, 3), stride=2, padding=1, dilation=2),
              (2, 2, 7, 8)),
    LayerCase("conv_nobias_unbatched", lambda: nn.Conv2d(2, 3, 3, padding=1, bias=False),
              lambda t: t.nn.Conv2d(2, 3, 3, padding=1, bias=False), (2, 5, 5)),
    # Training on an empty batch is refused: it has no statistics (PyTorch returns an empty
    # output and leaves the running statistics as they were).
    LayerCase("batchnorm1d", lambda: nn.BatchNorm1d(4), lambda t: t.nn.BatchNorm1d(4), (8, 4),
              degenerate=("unbatched",)),
    LayerCase("batchnorm1d_3d", lambda: nn.BatchNorm1d(3), lambda t: t.nn.BatchNorm1d(3),
              (4, 3, 5), degenerate=("unbatched",)),
    LayerCase("batchnorm2d", lambda: nn.BatchNorm2d(3), lambda t: t.nn.BatchNorm2d(3),
              (4, 3, 3, 3), degenerate=("unbatched",)),
    LayerCase("batchnorm2d_eval", lambda: nn.BatchNorm2d(3), lambda t: t.nn.BatchNorm2d(3),
              (4, 3, 3, 3), train=False),
    LayerCase("batchnorm_noaffine", lambda: nn.BatchNorm1d(4, affine=False, momentum=None),
              lambda t: t.nn.BatchNorm1d(4, affine=False, momentum=None), (6, 4),
              degenerate=("unbatched",)),
    LayerCase("layernorm", lambda: nn.LayerNorm(5), lambda t: t.nn.LayerNorm(5), (3, 5)),
    LayerCase("layernorm_2d", lambda: nn.LayerNorm((4, 5)), lambda t: t.nn.LayerNorm((4, 5)),
              (2, 4, 5)),
    LayerCase("embedding", lambda: nn.Embedding(10, 4), lambda t: t.nn.Embedding(10, 4), (3, 5),
              int_input=10),
    LayerCase("embedding_padding", lambda: nn.Embedding(6, 3, padding_idx=2),
              lambda t: t.nn.Embedding(6, 3, padding_idx=2), (4, 6), int_input=6),
    LayerCase("maxout", lambda: nn.Maxout(4, 2, 3), _maxout_ref, (5, 4)),
    LayerCase("sequential_mlp",
              lambda: nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)),
              lambda t: t.nn.Sequential(t.nn.Linear(4, 6), t.nn.Tanh(), t.nn.Linear(6, 2)),
              (3, 4)),
    LayerCase("sequential_cnn",  # conv on the strided output of conv and pooling
              lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                    nn.Conv2d(3, 2, 2), nn.AvgPool2d(2), nn.Flatten(),
                                    nn.Linear(2, 3)),
              lambda t: t.nn.Sequential(t.nn.Conv2d(2, 3, 3, padding=1), t.nn.ReLU(),
                                        t.nn.MaxPool2d(2), t.nn.Conv2d(3, 2, 2),
                                        t.nn.AvgPool2d(2), t.nn.Flatten(), t.nn.Linear(2, 3)),
              (2, 2, 6, 6)),
]


def _input(case: LayerCase, rng: np.random.Generator, dtype: str,
           shape: tuple[int, ...] | None = None) -> np.ndarray:
    shape = case.shape if shape is None else shape
    if case.int_input:
        return rng.integers(0, case.int_input, size=shape)
    return rng.standard_normal(shape).astype(dtype)


def _pair(case: LayerCase, torch: Any, dtype: str, device: str) -> tuple[nn.Module, Any]:
    """A tensorgrad layer and the PyTorch reference holding the same weights and buffers."""
    tg.manual_seed(0)
    layer = case.make().to(device=device, dtype=dtype)
    ref = case.make_torch(torch).to(getattr(torch, dtype))
    ref.load_state_dict({k: torch.from_numpy(np.array(v.numpy()))
                         for k, v in layer.state_dict().items()})
    if not case.train:
        # Running statistics that differ from the defaults, then evaluation mode.
        with tg.no_grad():
            for name, buf in layer.named_buffers():
                if buf.dtype.is_floating_point:
                    buf.copy_(tg.rand(*buf.shape, dtype=dtype) + 0.5)
                    ref.get_buffer(name).copy_(torch.from_numpy(buf.numpy().copy()))
        layer.eval()
        ref.eval()
    return layer, ref


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", MODULES_WITH_STATE, ids=lambda c: c.name)
def test_layer_matches_torch(case: LayerCase, dtype: str, device: str,
                             rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    layer, ref = _pair(case, torch, dtype, device)
    data = _input(case, rng, dtype)
    x = tg.tensor(data, device=device, requires_grad=not case.int_input)
    xt = torch.tensor(data, requires_grad=not case.int_input)
    out, out_t = layer(x), ref(xt)
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), **TOL[dtype])
    w = rng.standard_normal(out.shape).astype(dtype)
    (out * tg.tensor(w, device=device)).sum().backward()
    (out_t * torch.from_numpy(w)).sum().backward()
    if not case.int_input:
        np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), **TOL[dtype])
    ref_params = dict(ref.named_parameters())
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), ref_params[name].grad.numpy(),
                                   **TOL[dtype], err_msg=name)
    ref_buffers = dict(ref.named_buffers())
    for name, buf in layer.named_buffers():
        np.testing.assert_allclose(buf.numpy(), ref_buffers[name].numpy(), **TOL[dtype],
                                   err_msg=name)


# Degenerate inputs derived from each case's shape: an empty batch, and no batch dim at all.
DEGENERATE = {"empty": lambda shape: (0,) + shape[1:], "unbatched": lambda shape: shape[1:]}


@pytest.mark.parametrize("case, kind", [pytest.param(c, k, id=f"{c.name}-{k}")
                                        for c in MODULES_WITH_STATE for k in c.degenerate])
def test_layer_on_degenerate_input_behaves_as_torch(case: LayerCase, kind: str, device: str,
                                                    rng: np.random.Generator) -> None:
    """Where PyTorch refuses the input, so does tensorgrad; otherwise the same output,
    gradients and buffers."""
    torch = pytest.importorskip("torch")
    layer, ref = _pair(case, torch, "float64", device)
    data = _input(case, rng, "float64", DEGENERATE[kind](case.shape))
    xt = torch.tensor(data, requires_grad=not case.int_input)
    try:
        with warnings.catch_warnings():  # PyTorch's own
            warnings.simplefilter("ignore")
            out_t = ref(xt)
    except (RuntimeError, ValueError, IndexError, TypeError, AssertionError):
        with pytest.raises(Exception):  # noqa: B017  (PyTorch's and our error types differ)
            layer(tg.tensor(data, device=device))
        return
    x = tg.tensor(data, device=device, requires_grad=not case.int_input)
    out = layer(x)
    assert out.shape == tuple(out_t.shape)
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), **TOL["float64"])
    w = rng.standard_normal(out.shape)
    (out * tg.tensor(w, device=device)).sum().backward()
    (out_t * torch.from_numpy(w)).sum().backward()
    if not case.int_input:
        np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), **TOL["float64"])
    ref_params = dict(ref.named_parameters())
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), ref_params[name].grad.numpy(),
                                   **TOL["float64"], err_msg=name)
    ref_buffers = dict(ref.named_buffers())
    for name, buf in layer.named_buffers():
        np.testing.assert_allclose(buf.numpy(), ref_buffers[name].numpy(), **TOL["float64"],
                                   err_msg=name)


def test_dropout_gradcheck_with_fixed_seed(device: str, rng: np.random.Generator) -> None:
    layer = nn.Dropout(0.3)
    x = tg.tensor(rng.standard_normal((4, 5)), device=device, requires_grad=True)

    def fn(x: tg.Tensor) -> tg.Tensor:
        tg.manual_seed(1)
        return layer(x)

    tg.autograd.gradcheck(fn, [x])


def test_maxpool_routes_gradient_to_first_maximum(device: str) -> None:
    x = tg.tensor([[[[1.0, 3.0], [3.0, 2.0]]]], device=device, requires_grad=True)
    nn.MaxPool2d(2)(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[[[0.0, 1.0], [0.0, 0.0]]]])


def test_overlapping_windows_accumulate_into_a_shared_maximum(device: str) -> None:
    x = tg.zeros(1, 1, 3, 3, device=device, requires_grad=True)
    with tg.no_grad():
        x[0, 0, 1, 1] = 5.0  # the maximum of all four overlapping 2x2 windows
    nn.functional.max_pool2d(x, 2, stride=1).sum().backward()
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 4.0
    np.testing.assert_array_equal(x.grad.numpy(), expected)


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Sigmoid, nn.Tanh])
def test_sequential_fuses_linear_and_activation(activation: Any, device: str,
                                                rng: np.random.Generator) -> None:
    """Linear followed by ReLU/Sigmoid/Tanh inside Sequential runs as one fused op (its math
    is op_db's linear_relu/_sigmoid/_tanh): the same values and gradients as the modules
    applied one after the other."""
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), activation(), nn.Linear(5, 3)).to(device=device,
                                                                              dtype="float64")
    x = tg.tensor(rng.standard_normal((4, 6)), dtype=tg.float64, device=device)
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
    assert model(x).grad_fn.parents[0].name() == "LinearActivationBackward"
    assert model[0](x).grad_fn.name() == "LinearBackward"
    assert "LinearActivation" not in repr(model)


def test_batchnorm_running_stats_match_torch_over_steps(device: str,
                                                        rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    for momentum in (0.1, None):
        bn = nn.BatchNorm2d(3, momentum=momentum).to(device)
        ref = torch.nn.BatchNorm2d(3, momentum=momentum)
        for _ in range(4):
            data = rng.standard_normal((5, 3, 2, 2)).astype("float32") * 3 + 1
            bn(tg.tensor(data, device=device))
            ref(torch.from_numpy(data))
        np.testing.assert_allclose(bn.running_mean.numpy(), ref.running_mean.numpy(), rtol=1e-5)
        np.testing.assert_allclose(bn.running_var.numpy(), ref.running_var.numpy(), rtol=1e-5)
        assert bn.num_batches_tracked.item() == 4
        assert bn.num_batches_tracked.dtype == tg.int64
        bn.eval()
        ref.eval()
        data = rng.standard_normal((2, 3, 2, 2)).astype("float32")
        np.testing.assert_allclose(bn(tg.tensor(data, device=device)).numpy(),
                                   ref(torch.from_numpy(data)).detach().numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_batchnorm_eval_leaves_running_stats(device: str) -> None:
    bn = nn.BatchNorm1d(2).to(device).eval()
    bn(tg.randn(4, 2, device=device))
    np.testing.assert_array_equal(bn.running_mean.numpy(), [0.0, 0.0])
    assert bn.num_batches_tracked.item() == 0


def test_batchnorm_one_value_per_channel_in_training_raises(device: str) -> None:
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3\)"):
        nn.BatchNorm1d(3).to(device)(tg.randn(1, 3, device=device))


def test_dropout_statistics_and_modes(device: str) -> None:
    p, n = 0.3, 20000
    layer = nn.Dropout(p)
    x = tg.ones(n, device=device, requires_grad=True)
    tg.manual_seed(123)
    y = layer(x)
    zero_fraction = float((y.numpy() == 0).mean())
    assert abs(zero_fraction - p) < 3 * np.sqrt(p * (1 - p) / n)
    kept = y.numpy()[y.numpy() != 0]
    np.testing.assert_allclose(kept, 1 / (1 - p), rtol=1e-6)   # inverted scaling
    assert abs(float(y.numpy().mean()) - 1.0) < 0.05          # E[out] ~ E[in]
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy() != 0, y.numpy() != 0)  # same mask
    tg.manual_seed(123)
    np.testing.assert_array_equal(layer(x).numpy(), y.numpy())  # same seed, same mask
    assert not np.array_equal(layer(x).numpy(), y.numpy())      # next draw differs
    layer.eval()
    assert layer(x) is x
    layer.train()
    assert float(nn.Dropout(1.0)(x).numpy().max()) == 0.0
    with pytest.raises(ValueError, match="between 0 and 1.*1.5"):
        nn.Dropout(1.5)


def test_initialization_bounds_follow_pytorch(device: str) -> None:
    tg.manual_seed(0)
    lin = nn.Linear(400, 300).to(device)
    bound = 1 / np.sqrt(400)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert np.abs(b).max() <= bound and w.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)
    conv = nn.Conv2d(8, 4, 3)
    assert np.abs(conv.weight.numpy()).max() <= 1 / np.sqrt(8 * 9)
    emb = nn.Embedding(1000, 20, padding_idx=0)
    assert emb.weight.numpy().std() == pytest.approx(1.0, rel=0.05)
    np.testing.assert_array_equal(emb.weight.numpy()[0], 0.0)


def test_embedding_padding_row_gets_no_gradient(device: str) -> None:
    emb = nn.Embedding(5, 2, padding_idx=1).to(device)
    emb(tg.tensor([[1, 2, 1, 3]], device=device)).sum().backward()
    np.testing.assert_array_equal(emb.weight.grad.numpy()[[0, 1, 4]], 0.0)
    np.testing.assert_array_equal(emb.weight.grad.numpy()[2], [1.0, 1.0])


@pytest.mark.parametrize("rows, width", [(10, 64), (7, 3), (5, 1), (3000, 8)])
def test_embedding_gradient_sums_repeated_rows_as_torch(rows: int, width: int, rng) -> None:
    # The CPU sums each row's gradients in order of occurrence (sorted segments where that
    # is faster than np.add.at): the bits of PyTorch's embedding backward, not only close.
    torch = pytest.importorskip("torch")
    index = rng.integers(0, rows, (64, 33))
    gy = rng.standard_normal((*index.shape, width)).astype(np.float32)
    emb = nn.Embedding(rows, width)
    emb(tg.tensor(index)).backward(tg.tensor(gy))
    weight = torch.zeros(rows, width, requires_grad=True)
    torch.nn.functional.embedding(torch.tensor(index), weight).backward(torch.tensor(gy))
    np.testing.assert_array_equal(emb.weight.grad.numpy(), weight.grad.numpy())


def test_layer_norm_float16_rounds_once_as_torch(rng) -> None:
    # One op computes in float32 (weight and bias included) and rounds the result once, as
    # PyTorch's CPU kernel; the gradients come back in float16.
    torch = pytest.importorskip("torch")
    x, w, b, gy = (rng.standard_normal(s).astype(np.float16) * 3
                   for s in ((4, 7, 16), (16,), (16,), (4, 7, 16)))
    ours = [tg.tensor(a, requires_grad=True) for a in (x, w, b)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = tg.nn.functional.layer_norm(ours[0], (16,), ours[1], ours[2])
    ty = torch.nn.functional.layer_norm(theirs[0], (16,), theirs[1], theirs[2])
    assert y.dtype == tg.float16
    np.testing.assert_allclose(y.numpy().astype(np.float64), ty.detach().numpy(), atol=4e-3,
                               rtol=2e-3)
    y.backward(tg.tensor(gy))
    ty.backward(torch.tensor(gy))
    for a, t in zip(ours, theirs):
        assert a.grad.dtype == tg.float16
        np.testing.assert_allclose(a.grad.numpy().astype(np.float64), t.grad.numpy(),
                                   atol=2e-2, rtol=1e-2)


def test_layer_norm_input_gradient_op_has_exact_derivatives(rng) -> None:
    # layer_norm's backward is LayerNormGrad(gy w, xhat, rstd); its own backward (the second
    # derivatives of layer_norm) against central differences, in every input.
    from tensorgrad.ops.fused import LayerNormGrad

    g, xhat = (tg.tensor(rng.standard_normal((3, 4, 5)), requires_grad=True) for _ in "ab")
    rstd = tg.tensor(rng.uniform(0.5, 2.0, (3, 4, 1)), requires_grad=True)
    tg.autograd.gradcheck(lambda g, xhat, rstd: LayerNormGrad.apply(g, xhat, rstd, dims=(2,)),
                          [g, xhat, rstd])


@pytest.mark.parametrize("make, x_shape, pattern", [
    (lambda: nn.Linear(4, 3), (2, 5), r"Linear: expected input with 4 features.*\(2, 5\)"),
    (lambda: nn.Conv2d(3, 8, 3), (2, 4, 6, 6),
     r"Conv2d: expected input \(N, 3, H, W\).*3 channels.*\(2, 4, 6, 6\)"),
    (lambda: nn.Conv2d(3, 8, 3), (2, 3, 6), r"Conv2d: expected input.*\(2, 3, 6\)"),
    (lambda: nn.BatchNorm2d(3), (2, 4, 5, 5), r"BatchNorm2d: expected input with 3 features"),
    (lambda: nn.BatchNorm1d(3), (2, 3, 4, 4), r"BatchNorm1d: expected 2D or 3D input, got 4D"),
    (lambda: nn.LayerNorm(4), (2, 5), r"layer_norm: expected .*\(4,\), got shape \(2, 5\)"),
    (lambda: nn.Maxout(4, 2, 3), (2, 3), r"Maxout: expected input with 4 features"),
    (lambda: nn.MaxPool2d(5), (1, 1, 3, 3), r"max_pool2d: input of shape \(1, 1, 3, 3\) is too "
                                            r"small"),
])
def test_bad_input_raises_naming_expected_and_got(make: Any, x_shape: tuple[int, ...],
                                                  pattern: str, device: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        make().to(device)(tg.randn(*x_shape, device=device))


def test_embedding_rejects_float_indices(device: str) -> None:
    with pytest.raises(TypeError, match="integer tensor, got float32"):
        nn.Embedding(4, 2).to(device)(tg.randn(3, device=device))


def test_embedding_refuses_indices_out_of_range_on_the_cpu() -> None:
    # As PyTorch: -1 does not wrap to the last row. (CUDA skips the check: see Backend.check.)
    table = nn.Embedding(5, 2)
    for index, bad in (([0, -1], -1), ([[0, 7]], 7)):
        with pytest.raises(IndexError, match=rf"embedding: index {bad} is out of range for 5"):
            table(tg.tensor(index))
    assert table(tg.tensor([0, 4])).shape == (2, 2)


@pytest.mark.parametrize("make, shape, name", [
    (lambda: nn.Linear(4, 3), (2, 4), "Linear"),
    (lambda: nn.Maxout(4, 2, 3), (2, 4), "Maxout"),
    (lambda: nn.Conv2d(1, 2, 3), (1, 1, 5, 5), "Conv2d"),
    (lambda: nn.BatchNorm1d(4), (3, 4), "BatchNorm1d"),
    (lambda: nn.BatchNorm2d(1, affine=False), (2, 1, 3, 3), "BatchNorm2d"),
    (lambda: nn.LayerNorm(4), (2, 4), "LayerNorm"),
])
def test_layers_refuse_an_input_of_another_dtype(make: Any, shape: tuple[int, ...], name: str,
                                                 device: str) -> None:
    # PyTorch raises ("mat1 and mat2 must have the same dtype"); returning float64 from a
    # float32 layer would hide the mix-up.
    layer = make().to(device)
    x = tg.randn(*shape, dtype=tg.float64, device=device)
    with pytest.raises(TypeError, match=rf"{name}: input is float64 but the layer's parameters "
                                        r"are float32.*input.to\(tg.float32\).*"
                                        r"\.to\(tg.float64\)"):
        layer(x)
    assert layer.to(tg.float64)(x).dtype is tg.float64


def test_linear_refuses_integer_input_without_suggesting_an_integer_layer() -> None:
    with pytest.raises(TypeError, match=r"input is int64 .* pass input.to\(tg.float32\)$"):
        nn.Linear(2, 1)(tg.tensor([[1, 2]]))


@pytest.mark.parametrize("make", [lambda: nn.LayerNorm(4), lambda: nn.BatchNorm1d(4)])
def test_norms_take_float16_input_with_float32_parameters_as_pytorch(make: Any) -> None:
    torch = pytest.importorskip("torch")
    tg.manual_seed(0)
    layer = make()
    ref = (torch.nn.LayerNorm(4) if isinstance(layer, nn.LayerNorm) else torch.nn.BatchNorm1d(4))
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float16)
    out, expected = layer(tg.tensor(x)), ref(torch.from_numpy(x))
    assert out.dtype is tg.float16 and expected.dtype == torch.float16
    np.testing.assert_array_equal(out.numpy(), expected.detach().numpy())
