"""CpuKernels against float64 references written here, and against PyTorch where it computes
the same function; plus the name-set check between CpuKernels and the CUDA kernel table."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from tensorgrad.backend import _cuda_kernels
from tensorgrad.backend._cpu_kernels import CpuKernels

K = CpuKernels()
DTYPES = [np.float16, np.float32, np.float64]
SIZES = [1, 255, 256, 257, 10**5]
# (rtol, atol) against a float64 reference evaluated at the rounded input: float16 allows a
# rounding of the float32 result; atol covers cancellation near zeros of the function.
TOL = {np.float16: (1e-3, 1e-4), np.float32: (1e-5, 1e-6), np.float64: (1e-11, 1e-13)}
EXTREMES = [1e4, -1e4, 1000.0, -1000.0, 88.0, -88.0, 20.0, -20.0, 0.0]

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _sig(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _ncdf(x):
    return 0.5 * _erfc(-x / math.sqrt(2.0))


def _npdf(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _gelu_tanh_grad(x):
    k, c = math.sqrt(2.0 / math.pi), 0.044715
    t = np.tanh(k * (x + c * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1.0 + 3.0 * c * x * x)


def _softplus(x, beta, threshold):
    with np.errstate(over="ignore"):
        return np.where(beta * x > threshold, x, np.log1p(np.exp(beta * x)) / beta)


@dataclass(frozen=True)
class Act:
    """One activation: float64 forward reference, and the derivative as a function of what
    the backward kernel reads ('x' or 'y')."""

    name: str
    fwd: Callable
    dfun: Callable
    reads: str
    params: dict = field(default_factory=dict)
    torch: Callable | None = None


def _torch_f(name, **kw):
    def run(t):
        import torch.nn.functional as F

        return getattr(F, name)(t, **kw)

    return run


ACTS = [
    Act("relu", lambda x: np.maximum(x, 0.0), lambda y: (y > 0).astype(float), "y",
        torch=_torch_f("relu")),
    Act("leaky_relu", lambda x, slope: np.where(x > 0, x, slope * x),
        lambda x, slope: np.where(x > 0, 1.0, slope), "x", {"slope": 0.1},
        _torch_f("leaky_relu", negative_slope=0.1)),
    Act("elu", lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))),
        lambda y, alpha: np.where(y > 0, 1.0, y + alpha), "y", {"alpha": 1.3},
        _torch_f("elu", alpha=1.3)),
    Act("gelu", lambda x: x * _ncdf(x), lambda x: _ncdf(x) + x * _npdf(x), "x",
        torch=_torch_f("gelu")),
    Act("gelu_tanh", _gelu_tanh, _gelu_tanh_grad, "x",
        torch=_torch_f("gelu", approximate="tanh")),
    Act("silu", lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * (1 - _sig(x))), "x",
        torch=_torch_f("silu")),
    Act("sigmoid", _sig, lambda y: y * (1 - y), "y", torch=_torch_f("sigmoid")),
    Act("tanh", np.tanh, lambda y: 1 - y * y, "y", torch=_torch_f("tanh")),
    Act("softplus", _softplus,
        lambda x, beta, threshold: np.where(beta * x > threshold, 1.0, _sig(beta * x)), "x",
        {"beta": 2.0, "threshold": 15.0}, _torch_f("softplus", beta=2.0, threshold=15.0)),
]
ACT_IDS = [a.name for a in ACTS]


def _close(got, want, dtype, scale=1.0):
    rtol, atol = TOL[np.dtype(dtype).type]
    got64 = np.asarray(got, dtype=np.float64)
    np.testing.assert_allclose(got64, want, rtol=rtol, atol=atol * scale)


def _fwd_bwd(act, x, gy, out=None):
    y = getattr(K, f"{act.name}_fwd")(x, *act.params.values())
    arg = y if act.reads == "y" else x
    gx = getattr(K, f"{act.name}_bwd")(arg, gy, *act.params.values())
    return y, arg, gx


def _check_act(act, x, rng):
    gy = rng.normal(size=x.shape).astype(x.dtype)
    y, arg, gx = _fwd_bwd(act, x, gy)
    assert y.dtype == x.dtype and gx.dtype == x.dtype and y.shape == x.shape
    x64 = x.astype(np.float64)
    _close(y, act.fwd(x64, **act.params), x.dtype, scale=1 + np.max(np.abs(x64)))
    want = gy.astype(np.float64) * act.dfun(arg.astype(np.float64), **act.params)
    _close(gx, want, x.dtype, scale=1 + np.max(np.abs(x64)))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_activation_matches_float64_reference(act, dtype, size, rng):
    x = (rng.normal(size=size) * 3).astype(dtype)
    _check_act(act, x, rng)


def _layouts(rng, dtype):
    base = (rng.normal(size=(40, 30)) * 3).astype(dtype)
    return {"transposed": base.T, "sliced": base[1:-1:3, ::2], "negative": base[::-1, ::-2]}


@pytest.mark.parametrize("layout", ["transposed", "sliced", "negative"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_activation_non_contiguous(act, dtype, layout, rng):
    x = _layouts(rng, dtype)[layout]
    assert not x.flags.c_contiguous
    _check_act(act, x, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_activation_writes_out(act, dtype, rng):
    x = (rng.normal(size=(7, 9)) * 3).astype(dtype)
    gy = rng.normal(size=x.shape).astype(dtype)
    y_new, arg, gx_new = _fwd_bwd(act, x, gy)
    y_out = np.empty_like(x).T.copy().T  # a non-contiguous destination
    gx_out = np.empty_like(x)
    params = list(act.params.values())
    assert getattr(K, f"{act.name}_fwd")(x, *params, y_out) is y_out  # out positionally
    assert getattr(K, f"{act.name}_bwd")(arg, gy, *params, out=gx_out) is gx_out
    np.testing.assert_array_equal(y_out, y_new)
    np.testing.assert_array_equal(gx_out, gx_new)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_gelu_tanh_blocks_may_write_over_their_inputs(dtype, rng):
    # The twins run block by block (65536 elements); each block is read before it is
    # written, so out may be x or gy, over several blocks and a partial last one.
    x = (rng.normal(size=(3, 50001)) * 3).astype(dtype)
    gy = rng.normal(size=x.shape).astype(dtype)
    y, gx = K.gelu_tanh_fwd(x), K.gelu_tanh_bwd(x, gy)
    _close(y, _gelu_tanh(x.astype(np.float64)), dtype, scale=1 + np.max(np.abs(x)))
    x_copy, gy_copy = x.copy(), gy.copy()
    assert K.gelu_tanh_fwd(x_copy, x_copy) is x_copy
    assert K.gelu_tanh_bwd(x, gy_copy, gy_copy) is gy_copy
    np.testing.assert_array_equal(x_copy, y)
    np.testing.assert_array_equal(gy_copy, gx)


def test_gelu_tanh_of_a_0d_array():
    # The whole-array twin handed np.tanh a NumPy scalar as out and raised TypeError.
    x = np.array(1.5, np.float32)
    np.testing.assert_allclose(K.gelu_tanh_fwd(x), _gelu_tanh(1.5), rtol=1e-6)
    np.testing.assert_allclose(K.gelu_tanh_bwd(x, np.array(2.0, np.float32)),
                               2.0 * _gelu_tanh_grad(1.5), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_activation_extreme_inputs_are_finite(act, dtype):
    x = np.array(EXTREMES, dtype=dtype)
    gy = np.linspace(-2, 2, x.size).astype(dtype)
    # Overflow, invalid (NaN) and divide raise; underflow to zero is the right answer for,
    # e.g., sigmoid(-1000), and NumPy flags every float16 rounding below 6e-5 as underflow.
    with np.errstate(all="raise", under="ignore"):
        y, arg, gx = _fwd_bwd(act, x, gy)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(gx))
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        want_y = act.fwd(x64, **act.params)
        want_gx = gy.astype(np.float64) * act.dfun(arg.astype(np.float64), **act.params)
    _close(y, want_y, dtype, scale=1e4)
    _close(gx, want_gx, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_relu_and_leaky_relu_gradient_at_the_kink(dtype):
    x = np.zeros(3, dtype=dtype)
    gy = np.array([1.5, -2.0, 3.0], dtype=dtype)
    np.testing.assert_array_equal(K.relu_bwd(K.relu_fwd(x), gy), 0)
    np.testing.assert_array_equal(K.leaky_relu_bwd(x, gy, 0.25), gy * dtype(0.25))
    np.testing.assert_array_equal(K.elu_bwd(K.elu_fwd(x, 1.5), gy, 1.5), gy * dtype(1.5))



def _where_ref(cond, a, b, dtype):
    """The branch the CUDA kernels take, in NumPy's np.where, rounded once."""
    return np.where(cond, a, b).astype(dtype)


def _bits(a):
    return np.asarray(a).view(f"u{np.asarray(a).dtype.itemsize}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("param", [0.01, 0.0, -0.5, 1.0, 2.0, math.inf])
def test_branch_kernels_match_the_branch_bit_for_bit(dtype, param, rng):
    # The kernels select without np.where (integer-view arithmetic, max/min where the sign
    # allows); every bit must equal the branch, at signed zeros, infinities and NaN included.
    special = [0.0, -0.0, math.inf, -math.inf, math.nan, 1e-30, -1e-30, 5e-324, 65504.0]
    x = np.concatenate([special, rng.normal(size=3000) * 3]).astype(dtype)
    gy = np.concatenate([[math.inf, -math.nan, math.nan, -math.inf, -0.0, 0.0, 2.0, 1.0, 3.0],
                         rng.normal(size=3000)]).astype(dtype)
    gy = gy[rng.permutation(gy.size)]
    ct = np.float32 if dtype == np.float16 else dtype
    xc, gc, p = x.astype(ct), gy.astype(ct), ct(param)
    with np.errstate(all="ignore"):
        y = K.relu_fwd(x)
        want = {
            "relu_bwd": (K.relu_bwd(y, gy), _where_ref(~(y <= 0), gy, dtype(0), dtype)),
            "leaky_fwd": (K.leaky_relu_fwd(x, param), _where_ref(xc > 0, xc, xc * p, dtype)),
            "leaky_bwd": (K.leaky_relu_bwd(x, gy, param),
                          _where_ref(xc > 0, gc, gc * p, dtype)),
            "elu_fwd": (K.elu_fwd(x, param),
                        _where_ref(xc > 0, xc, np.expm1(np.minimum(xc, 0)) * p, dtype)),
            "elu_bwd": (K.elu_bwd(xc.astype(dtype), gy, param),
                        _where_ref(xc > 0, gc, gc * (xc + p), dtype)),
        }
    for name, (got, ref) in want.items():
        assert got.dtype == dtype, name
        same = (_bits(got) == _bits(ref)) | (np.isnan(got) & np.isnan(ref))
        assert same.all(), (name, x[~same][:5], got[~same][:5], ref[~same][:5])
    gx = want["relu_bwd"][0]
    assert np.all(gx[y <= 0] == 0)  # 0, not NaN, where y <= 0, whatever gy is
    assert np.array_equal(gx[np.isnan(y)], gy[np.isnan(y)], equal_nan=True)  # as PyTorch

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_scalars_never_promote(dtype):
    x = np.linspace(-3, 3, 11).astype(dtype)
    assert K.leaky_relu_fwd(x, np.float64(0.1)).dtype == dtype
    assert K.elu_bwd(x, x, np.float64(1.0)).dtype == dtype
    assert K.softplus_fwd(x, np.float64(1.0), np.float64(20.0)).dtype == dtype
    # float16 computes with the float32 scalar: 0.1 is not rounded to float16 first.
    ct = np.float32 if dtype == np.float16 else dtype
    want = (x.astype(ct) * ct(0.1)).astype(dtype)
    np.testing.assert_array_equal(K.leaky_relu_fwd(-np.abs(x), 0.1), -np.abs(want))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_activation_matches_torch(act, dtype, rng):
    torch = pytest.importorskip("torch")
    x = (rng.normal(size=1000) * 4).astype(dtype)
    x[:3] = 0.0  # kinks, evaluated exactly
    gy = rng.normal(size=x.shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = act.torch(tx)
    (tg,) = torch.autograd.grad(ty, tx, torch.tensor(gy))
    y, _, gx = _fwd_bwd(act, x, gy)
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-14)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(gx, tg.numpy(), rtol=rtol, atol=atol * 10)


# fused bias + activation

BIAS_ACTS = {"relu": lambda s: np.maximum(s, 0.0), "sigmoid": _sig, "tanh": np.tanh}


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(BIAS_ACTS))
def test_bias_activation(name, dtype, layout, rng):
    shapes = {"contiguous": (257, 33), "transposed": (33, 257)}
    z = (rng.normal(size=shapes[layout]) * 3).astype(dtype)
    z = z if layout == "contiguous" else z.T
    b = (rng.normal(size=z.shape[1]) * 3).astype(dtype)[::-1]
    y = getattr(K, f"bias_{name}_fwd")(z, b)
    assert y.dtype == dtype and y.shape == z.shape
    want = BIAS_ACTS[name](z.astype(np.float64) + b.astype(np.float64))
    _close(y, want, dtype)
    out = np.empty_like(z)
    assert getattr(K, f"bias_{name}_fwd")(z, b, out) is out
    np.testing.assert_array_equal(out, y)


# softmax cross-entropy backward

def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _xent_targets(n: int, c: int, ignore_index: int, rng) -> np.ndarray:
    """Targets in range, then the ignore_index and two out of range (negative, >= C)."""
    target = rng.integers(0, c, size=n).astype(np.int64)
    target[1::7] = ignore_index
    target[2::11] = -3
    target[3::13] = c + 2
    return target


@pytest.mark.parametrize("ignore_index", [-100, 4])
@pytest.mark.parametrize("n", [0, 1, 40, 257])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_softmax_xent_fwd(dtype, n, ignore_index, rng):
    c = 10
    logp = np.log(_softmax(rng.normal(size=(n, c)) * 3)).astype(dtype)
    target = _xent_targets(n, c, ignore_index, rng)
    nll, tc, kept = K.softmax_xent_fwd(logp, target, ignore_index)
    assert nll.dtype == kept.dtype == dtype and tc.dtype == np.int64
    assert nll.shape == tc.shape == kept.shape == (n,)
    for i, t in enumerate(target):
        in_range = 0 <= t < c
        assert tc[i] == (t if in_range else 0)
        assert kept[i] == (t != ignore_index)
        want = 0.0 if t == ignore_index else (-logp[i, t] if in_range else np.nan)
        np.testing.assert_array_equal(nll[i], np.asarray(want, dtype=dtype))
    out = (np.full(n, 7, dtype), np.full(n, 7, np.int64), np.full(n, 7, dtype))
    got = K.softmax_xent_fwd(logp, target, ignore_index, out=out)
    for g, o, w in zip(got, out, (nll, tc, kept)):
        assert g is o
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("scale_kind", ["float", "np.float64", "0-d", "1-element", "per-row"])
@pytest.mark.parametrize("n", [1, 255, 256, 257])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_softmax_xent_bwd(dtype, n, scale_kind, rng):
    c = 10
    p = _softmax(rng.normal(size=(n, c)) * 3).astype(dtype)
    target = rng.integers(0, c, size=n).astype(np.int64)
    value = 0.7 / n
    rows = (value * rng.uniform(0, 2, size=n)).astype(dtype)
    scale = {"float": value, "np.float64": np.float64(value), "0-d": np.array(value),
             "1-element": np.array([value], dtype=dtype), "per-row": rows}[scale_kind]
    gx = K.softmax_xent_bwd(p, target, scale)
    assert gx.dtype == dtype and gx.shape == p.shape
    onehot = np.eye(c)[target]
    want = (p.astype(np.float64) - onehot) * np.reshape(scale, (-1, 1)).astype(np.float64)
    _close(gx, want, dtype, scale=value)
    out = np.empty_like(p.T).T
    assert K.softmax_xent_bwd(p[:, ::-1].copy()[:, ::-1], target, scale, out) is out
    np.testing.assert_array_equal(out, gx)
    p_again = p.copy()  # in place: each row's target is read before the row is written
    assert K.softmax_xent_bwd(p_again, target, scale, p_again) is p_again
    np.testing.assert_array_equal(p_again, gx)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_softmax_xent_bwd_extreme_logits(dtype):
    logits = np.array([[-431, 279, 427], [-1047, -981, 1891], [5, 5, 5], [-1e4, 0, 1e4]],
                      dtype=np.float64)
    p = _softmax(logits).astype(dtype)
    target = np.array([0, 1, 2, 0], dtype=np.int64)  # probability of the target -> 0
    with np.errstate(all="raise", under="ignore"):
        gx = K.softmax_xent_bwd(p, target, 0.25)
    assert np.all(np.isfinite(gx))
    np.testing.assert_allclose(gx.astype(np.float64).sum(axis=1), 0, atol=1e-3)


def test_softmax_xent_bwd_matches_torch(rng):
    torch = pytest.importorskip("torch")
    logits = rng.normal(size=(64, 7)) * 5
    target = rng.integers(0, 7, size=64)
    t = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(t, torch.tensor(target)) * 1.7
    (want,) = torch.autograd.grad(loss, t)
    gx = K.softmax_xent_bwd(_softmax(logits), target.astype(np.int64), np.array(1.7 / 64))
    np.testing.assert_allclose(gx, want.numpy(), rtol=1e-12, atol=1e-15)


# optimizers against torch.optim over several steps

@dataclass(frozen=True)
class Opt:
    name: str
    torch_cls: str
    kw: dict
    states: tuple[str, ...]


OPTS = [
    Opt("sgd", "SGD", {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
                       "nesterov": False}, ()),
    Opt("sgd", "SGD", {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.05,
                       "nesterov": False}, ()),
    Opt("sgd", "SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01,
                       "nesterov": False}, ("buf",)),
    Opt("sgd", "SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.01,
                       "nesterov": True}, ("buf",)),
    Opt("adam", "Adam", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                         "weight_decay": 0.0}, ("m", "v")),
    Opt("adam", "Adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6,
                         "weight_decay": 0.1}, ("m", "v")),
    Opt("adamw", "AdamW", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                           "weight_decay": 0.1}, ("m", "v")),
    Opt("rmsprop", "RMSprop", {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0,
                               "momentum": 0.0}, ("sq",)),
    Opt("rmsprop", "RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.05,
                               "momentum": 0.8}, ("sq", "buf")),
]


def _opt_id(o):
    return f"{o.name}-" + "-".join(f"{k}{v}" for k, v in o.kw.items() if k != "lr")


def _torch_optimizer(torch, opt, param):
    kw = dict(opt.kw)
    if "beta1" in kw:
        kw["betas"] = (kw.pop("beta1"), kw.pop("beta2"))
    return getattr(torch.optim, opt.torch_cls)([param], foreach=False, **kw)


def _our_step(opt, p, g, state, step):
    kw = opt.kw
    if opt.name == "sgd":
        K.sgd_step(p, g, state.get("buf"), kw["lr"], kw["momentum"], kw["dampening"],
                   kw["weight_decay"], kw["nesterov"], first_step=step == 1)
    elif opt.name in ("adam", "adamw"):
        count = np.full((), step - 1.0)  # the step count before this step; the kernel counts
        getattr(K, f"{opt.name}_step")(p, g, state["m"], state["v"], kw["lr"], kw["beta1"],
                                       kw["beta2"], kw["eps"], kw["weight_decay"], count)
        assert count == step
    else:
        count = np.full((), step - 1.0)
        K.rmsprop_step(p, g, state["sq"], kw["lr"], kw["alpha"], kw["eps"],
                       kw["weight_decay"], kw["momentum"], state.get("buf"), count)
        assert count == step


def _new_state(opt, like):
    # The SGD buffer starts as NaN: first_step must overwrite it, never read it.
    fill = {"buf": np.nan if opt.name == "sgd" else 0.0}
    return {s: np.full_like(like, fill.get(s, 0.0)) for s in opt.states}


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("opt", OPTS, ids=_opt_id)
def test_optimizer_matches_torch(opt, dtype, layout, rng):
    torch = pytest.importorskip("torch")
    shape = (33, 17)
    p0 = rng.normal(size=shape).astype(dtype)
    p = p0.copy() if layout == "contiguous" else p0.T.copy().T
    state = _new_state(opt, p)
    # float16 against torch in float32 from the same rounded start: each of our steps rounds
    # once to float16, so the two drift apart by about an ulp per step.
    tdtype = torch.float32 if dtype == np.float16 else getattr(torch, np.dtype(dtype).name)
    tp = torch.tensor(p0.astype(np.float32 if dtype == np.float16 else dtype)).requires_grad_()
    topt = _torch_optimizer(torch, opt, tp)
    for step in range(1, 6):
        g = rng.normal(size=shape).astype(dtype)
        tp.grad = torch.tensor(g.astype(np.float64), dtype=tdtype)
        topt.step()
        assert _our_step(opt, p, g, state, step) is None
    rtol, atol = {np.float16: (1e-2, 5e-3), np.float32: (1e-5, 1e-6),
                  np.float64: (1e-12, 1e-13)}[dtype]
    assert p.dtype == dtype
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=rtol, atol=atol)
    names = {"buf": "momentum_buffer", "m": "exp_avg", "v": "exp_avg_sq", "sq": "square_avg"}
    for name, ours in state.items():
        theirs = topt.state[tp][names[name]].numpy()
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("step", [1, np.float64(1), np.zeros(1, np.float32)],
                         ids=["int", "numpy scalar", "float32 array"])
def test_optimizers_refuse_a_step_count_they_cannot_increment(step):
    p = np.zeros(3, np.float32)
    with pytest.raises(TypeError, match="step count must be a 1-element float64"):
        K.adam_step(p, p.copy(), p.copy(), p.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.0, step)
    with pytest.raises(TypeError, match="step count must be a 1-element float64"):
        K.rmsprop_step(p, p.copy(), p.copy(), 1e-3, 0.99, 1e-8, 0.0, 0.0, None, step)
    assert not p.any()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_optimizer_large_tensor_and_scalar_kinds(dtype, rng):
    n = 10**5
    p = rng.normal(size=n).astype(dtype)
    g = rng.normal(size=n).astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    p_ref, g_ref = p.astype(np.float64), g.astype(np.float64)
    K.adam_step(p, g, m, v, np.float64(1e-3), np.float64(0.9), 0.999, 1e-8, 0.0, np.zeros(1))
    # The first Adam step moves every element by lr * g / (|g| + eps'): about lr * sign(g).
    assert p.dtype == m.dtype == v.dtype == dtype
    moved = p.astype(np.float64) - p_ref
    np.testing.assert_allclose(moved, -1e-3 * np.sign(g_ref), rtol=0.05, atol=2e-3 * (
        dtype == np.float16))


# the CUDA table names the same kernels

def _public(cls):
    return {n for n, v in vars(cls).items() if not n.startswith("_") and callable(v)}


def test_cuda_table_and_cpu_twins_name_the_same_set():
    cuda_src = inspect.getsource(_cuda_kernels.CudaKernels)
    wrapped = {k for k in _cuda_kernels._KERNELS if f"self._{k}(" in cuda_src}
    raw_public = set(_cuda_kernels._KERNELS) - wrapped
    cuda_public = _public(_cuda_kernels.CudaKernels) | raw_public
    assert cuda_public == _public(CpuKernels)
    for name in _public(CpuKernels):  # same parameters where a method exists on both sides
        if name in vars(_cuda_kernels.CudaKernels):
            cpu = inspect.signature(getattr(CpuKernels, name))
            cuda = inspect.signature(getattr(_cuda_kernels.CudaKernels, name))
            assert list(cpu.parameters) == list(cuda.parameters), name


def test_raw_kernel_parameters_match_cpu_argument_order():
    for key, (_, ins, outs, _) in _cuda_kernels._KERNELS.items():
        if key in vars(_cuda_kernels.CudaKernels) or not hasattr(CpuKernels, key):
            continue
        kernel_args = [p.split()[-1] for p in ins.split(",")] + ["out"]
        cpu_args = list(inspect.signature(getattr(CpuKernels, key)).parameters)[1:]
        assert kernel_args == cpu_args and len(outs.split(",")) == 1, key


def test_importing_cuda_kernels_does_not_import_cupy():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'cupy':\n"
        "            raise ImportError('cupy imported at module import')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tensorgrad.backend._cuda_kernels as m\n"
        "assert 'cupy' not in sys.modules\n"
        "print(len(m._KERNELS))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def test_kernel_sources_are_found_and_missing_ones_are_named():
    for source in {entry[0] for entry in _cuda_kernels._KERNELS.values()} | {"common.cuh"}:
        assert _cuda_kernels._find_source(source).is_file()
    assert "tg_relu" in _cuda_kernels._preamble("activations.cuh")
    with pytest.raises(FileNotFoundError, match=r"'nope\.cuh'.*_kernels.*kernels"):
        _cuda_kernels._find_source("nope.cuh")


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=lambda d: np.dtype(d).name)
def test_gelu_single_precision_path_is_within_an_ulp_of_the_float64_one(dtype, rng):
    # float32/float16 gelu uses a one-polynomial erfcx (2e-10 relative); the float64 path,
    # rounded, is the reference, down the lower tail where x Phi(x) is subnormal.
    x = np.concatenate([rng.uniform(-14, 6, 40000), [0.0, -0.0, 1e-30, -1e-30, 3e4],
                        -np.exp(rng.uniform(-20, 2.6, 5000))]).astype(dtype)
    x = x.reshape(-1, 5)[:, ::2]  # non-contiguous input, and more than one block
    gy = rng.normal(size=x.shape).astype(dtype)
    x64 = x.astype(np.float64)
    for got, want in [(K.gelu_fwd(x), K.gelu_fwd(x64)),
                      (K.gelu_bwd(x, gy), K.gelu_bwd(x64, gy.astype(np.float64)))]:
        assert got.dtype == dtype
        finite = np.isfinite(want)
        ulp = np.spacing(np.abs(want[finite]).astype(dtype)).astype(np.float64)
        assert np.all(np.abs(got[finite] - want[finite]) <= ulp)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
