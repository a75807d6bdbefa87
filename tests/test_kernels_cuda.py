"""CudaKernels against their NumPy twins (GPU only): every method, float16/32/64, sizes that
are and are not multiples of the block size, non-contiguous inputs, output dtypes, and each
kind of scalar. Skips with the reason where CuPy or a usable device is missing."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

cupy = pytest.importorskip("cupy", reason="CuPy is not installed: CUDA kernels not testable")

from tensorgrad.backend import cuda_unusable_reason  # noqa: E402  (after the skip)
from tensorgrad.backend._cpu_kernels import CpuKernels  # noqa: E402

if (_reason := cuda_unusable_reason()) is not None:
    pytest.skip(f"CUDA not usable here: {_reason}", allow_module_level=True)

# Compiled kernels go to a scratch cache, never to a possibly read-only HOME.
os.environ.setdefault("CUPY_CACHE_DIR", tempfile.mkdtemp(prefix="tg-cupy-cache-"))

from tensorgrad.backend._cuda_kernels import CudaKernels  # noqa: E402

pytestmark = pytest.mark.cuda
CPU, GPU = CpuKernels(), CudaKernels()
DTYPES = [np.float16, np.float32, np.float64]
SIZES = [1, 255, 256, 257, 1_000_003]
# CUDA's float math (normcdff, tanhf, expf) is a few ulp from NumPy's; float16 may round the
# other way once. Keyed by dtype objects, which is what arrays carry (np.float16 the type and
# np.dtype("float16") compare equal but hash apart, so a type key is a KeyError).
TOL = {np.dtype(np.float16): (2e-3, 1e-3), np.dtype(np.float32): (2e-5, 1e-5),
       np.dtype(np.float64): (1e-12, 1e-12)}
ACTS = {  # name: (scalar parameters, backward reads 'x' or 'y')
    "relu": ((), "y"), "leaky_relu": ((0.1,), "x"), "elu": ((1.3,), "y"), "gelu": ((), "x"),
    "gelu_tanh": ((), "x"), "silu": ((), "x"), "sigmoid": ((), "y"), "tanh": ((), "y"),
    "softplus": ((2.0, 15.0), "x"),
}


def _close(got, want, dtype):
    assert got.dtype == np.dtype(dtype), (got.dtype, dtype)
    rtol, atol = TOL[np.dtype(dtype)]
    np.testing.assert_allclose(cupy.asnumpy(got).astype(np.float64), want.astype(np.float64),
                               rtol=rtol, atol=atol)


def _views(host, layout):
    dev = cupy.asarray(host)
    if layout == "transposed":
        return host.T, dev.T
    if layout == "sliced":
        return host[::3, 1::2], dev[::3, 1::2]
    return host[::-1, ::-2], dev[::-1, ::-2]


def _check_act(name, x, dx, rng):
    params, reads = ACTS[name]
    gy = rng.normal(size=x.shape).astype(x.dtype)
    dgy = cupy.asarray(gy)
    y = getattr(CPU, f"{name}_fwd")(x, *params)
    dy = getattr(GPU, f"{name}_fwd")(dx, *params)
    _close(dy, y, x.dtype)
    # Backward from the same saved value on both sides, so only the kernel is compared.
    arg, darg = (y, cupy.asarray(y)) if reads == "y" else (x, dx)
    _close(getattr(GPU, f"{name}_bwd")(darg, dgy, *params),
           getattr(CPU, f"{name}_bwd")(arg, gy, *params), x.dtype)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(ACTS))
def test_activation_parity(name, dtype, size, rng):
    x = (rng.normal(size=size) * 3).astype(dtype)
    x[: min(size, 3)] = 0.0
    _check_act(name, x, cupy.asarray(x), rng)


@pytest.mark.parametrize("layout", ["transposed", "sliced", "negative"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(ACTS))
def test_activation_parity_non_contiguous(name, dtype, layout, rng):
    x, dx = _views((rng.normal(size=(64, 48)) * 3).astype(dtype), layout)
    _check_act(name, np.ascontiguousarray(x), dx, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(ACTS))
def test_activation_extremes_and_out(name, dtype):
    params, _ = ACTS[name]
    x = np.array([1e4, -1e4, 1000, -1000, 88, -88, 20, -20, 0], dtype=dtype)
    out = cupy.empty(x.shape, dtype=dtype)
    got = getattr(GPU, f"{name}_fwd")(cupy.asarray(x), *params, out)
    assert got is out
    assert bool(cupy.isfinite(out).all())
    with np.errstate(all="ignore"):
        _close(out, getattr(CPU, f"{name}_fwd")(x, *params), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_scalar_kinds_give_the_array_dtype(dtype):
    dx = cupy.linspace(-3, 3, 11).astype(dtype)
    for slope in (0.1, np.float64(0.1), np.float32(0.1), 1):
        assert GPU.leaky_relu_fwd(dx, slope).dtype == dtype
    assert GPU.softplus_fwd(dx, np.float64(1.0), 20).dtype == dtype


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_bias_activation_parity(name, dtype, layout, rng):
    z = (rng.normal(size=(257, 33)) * 3).astype(dtype)
    b = (rng.normal(size=33) * 3).astype(dtype)
    dz = cupy.asarray(z) if layout == "contiguous" else cupy.asarray(z.T.copy()).T
    _close(getattr(GPU, f"bias_{name}_fwd")(dz, cupy.asarray(b)),
           getattr(CPU, f"bias_{name}_fwd")(z, b), dtype)


@pytest.mark.parametrize("ignore_index", [-100, 4])
@pytest.mark.parametrize("n", [0, 1, 255, 257, 100_003])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_softmax_xent_fwd_parity(dtype, n, ignore_index, rng):
    # Each row's loss is the picked log-probability negated (or NaN, or 0): equal bit for bit.
    logp = (rng.normal(size=(n, 10)) * 3).astype(dtype)
    target = rng.integers(0, 10, size=n).astype(np.int64)
    target[1::7], target[2::11], target[3::13] = ignore_index, -3, 12
    want = CPU.softmax_xent_fwd(logp, target, ignore_index)
    got = GPU.softmax_xent_fwd(cupy.asarray(logp.T.copy()).T, cupy.asarray(target),
                               ignore_index)
    out = tuple(cupy.full(w.shape, 7, w.dtype) for w in want)
    into = GPU.softmax_xent_fwd(cupy.asarray(logp), cupy.asarray(target), ignore_index, out)
    assert all(i is o for i, o in zip(into, out))
    for g, i, w in zip(got, into, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(cupy.asnumpy(g), w)
        np.testing.assert_array_equal(cupy.asnumpy(i), w)


@pytest.mark.parametrize("scale_kind", ["float", "np.float64", "0-d", "1-element", "per-row"])
@pytest.mark.parametrize("n", [1, 255, 256, 257, 100_003])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_softmax_xent_bwd_parity(dtype, n, scale_kind, rng):
    logits = rng.normal(size=(n, 10)) * 3
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
    target = rng.integers(0, 10, size=n).astype(np.int64)
    value = 0.7 / n
    host = {"float": value, "np.float64": np.float64(value), "0-d": np.array(value),
            "1-element": np.array([value]),
            "per-row": (value * rng.uniform(0, 2, size=n)).astype(dtype)}[scale_kind]
    dev = cupy.asarray(host) if isinstance(host, np.ndarray) else host
    want = CPU.softmax_xent_bwd(p, target, host)
    rtol, atol = TOL[np.dtype(dtype)]
    got = GPU.softmax_xent_bwd(cupy.asarray(p)[:, ::-1][:, ::-1], cupy.asarray(target), dev)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(cupy.asnumpy(got).astype(np.float64), want.astype(np.float64),
                               rtol=rtol, atol=atol * value)


OPTS = [
    ("sgd", (0.1, 0.0, 0.0, 0.05, False)),
    ("sgd", (0.05, 0.9, 0.3, 0.01, False)),
    ("sgd", (0.05, 0.9, 0.0, 0.01, True)),
    ("adam", (0.01, 0.9, 0.999, 1e-8, 0.1)),
    ("adamw", (0.01, 0.9, 0.999, 1e-8, 0.1)),
    ("rmsprop", (0.01, 0.99, 1e-8, 0.0, 0.0)),
    ("rmsprop", (0.01, 0.9, 1e-6, 0.05, 0.8)),
]


def _step(kernels, name, args, p, g, st, step):
    if name == "sgd":
        kernels.sgd_step(p, g, st.get("buf"), *args, first_step=step == 1)
    elif name in ("adam", "adamw"):
        count = (np if kernels is CPU else cupy).full((), step - 1.0)  # the kernel counts
        getattr(kernels, f"{name}_step")(p, g, st["m"], st["v"], *args, count)
        assert float(count) == step
    else:
        lr, alpha, eps, wd, momentum = args
        count = (np if kernels is CPU else cupy).full((), step - 1.0)
        kernels.rmsprop_step(p, g, st["sq"], lr, alpha, eps, wd, momentum, st.get("buf"),
                             count)
        assert float(count) == step


def _max_ulp(name: str, dtype) -> int:
    # optimizers.cuh rounds every operation once, in the twins' order, with no FMA: equal bit
    # for bit. Adam's step size comes from pow in double, which CUDA's libdevice computes
    # within 2 ulp (the twin's from the C library); in float64 that can reach the parameter.
    return 2 if name.startswith("adam") and np.dtype(dtype) == np.float64 else 0


@pytest.mark.parametrize("size", [1, 257, 1_000_003])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,args", OPTS, ids=[f"{n}{i}" for i, (n, _) in enumerate(OPTS)])
def test_optimizer_steps_round_as_their_twins(name, args, dtype, size, rng):
    names = {"sgd": ["buf"] if args[1] else [], "adam": ["m", "v"], "adamw": ["m", "v"],
             "rmsprop": ["sq", "buf"] if args[4] else ["sq"]}[name]
    p = rng.normal(size=size).astype(dtype)
    host = {"p": p, **{s: np.zeros_like(p) for s in names}}
    dev = {k: cupy.asarray(v) for k, v in host.items()}
    for step in range(1, 4):
        g = rng.normal(size=size).astype(dtype)
        _step(CPU, name, args, host["p"], g, host, step)
        assert _step(GPU, name, args, dev["p"], cupy.asarray(g), dev, step) is None
    for key, value in host.items():
        got = cupy.asnumpy(dev[key])
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_max_ulp(got, value, maxulp=_max_ulp(name, dtype))


@pytest.mark.parametrize("momentum", [0.0, 0.8])
@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=["float16", "float32"])
def test_rmsprop_where_the_gradient_cancels_the_weight_decay(dtype, momentum, rng):
    # g + wd * p near 0: contracted into one FMA it rounds once, the twin (and PyTorch's CPU)
    # twice, and the step along g / (sqrt(sq) + eps) disagreed in every digit.
    wd, size = 0.05, 1_000_003
    p = rng.normal(size=size).astype(dtype)
    g = (-(np.float32(wd) * p.astype(np.float32))).astype(dtype)
    host = {"p": p, "sq": np.zeros_like(p), "buf": np.zeros_like(p)}
    dev = {k: cupy.asarray(v) for k, v in host.items()}
    args = (0.01, 0.99, 1e-8, wd, momentum)
    _step(CPU, "rmsprop", args, host["p"], g, host, 1)
    _step(GPU, "rmsprop", args, dev["p"], cupy.asarray(g), dev, 1)
    for key, value in host.items():
        np.testing.assert_array_equal(cupy.asnumpy(dev[key]), value, err_msg=key)


def test_adam_rounds_one_minus_beta_once(rng):
    # PyTorch passes the Python float 1 - beta2 = 0.0010000000000000009 to its float kernels,
    # rounded once to 0.001; 1 - float32(0.999) is 0.00099998713, 1.3e-5 away in every v.
    p = rng.normal(size=4096).astype(np.float32)
    g = rng.normal(size=4096).astype(np.float32)
    m, v = cupy.zeros(4096, np.float32), cupy.zeros(4096, np.float32)
    GPU.adam_step(cupy.asarray(p), cupy.asarray(g), m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0,
                  cupy.zeros(()))
    np.testing.assert_array_equal(cupy.asnumpy(v), np.float32(0.001) * g * g)


def test_optimizers_refuse_a_step_count_they_cannot_increment():
    p = cupy.zeros(3, np.float32)
    for step in (1, np.zeros(1), cupy.zeros(1, np.float32)):  # host memory is not the device's
        with pytest.raises(TypeError, match="step count must be a 1-element float64"):
            GPU.adamw_step(p, p.copy(), p.copy(), p.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.1, step)
        with pytest.raises(TypeError, match="step count must be a 1-element float64"):
            GPU.rmsprop_step(p, p.copy(), p.copy(), 1e-3, 0.99, 1e-8, 0.0, 0.9, p.copy(), step)
    assert not p.any()


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_rmsprop_counts_the_step_of_an_empty_parameter(momentum):
    # No element, no launch: the count is bumped apart, as PyTorch counts every step.
    p, step = cupy.zeros(0, np.float32), cupy.zeros(())
    GPU.rmsprop_step(p, p.copy(), p.copy(), 1e-3, 0.99, 1e-8, 0.0, momentum, p.copy(), step)
    assert float(step) == 1.0


def test_optimizer_updates_a_non_contiguous_parameter_in_place(rng):
    p = rng.normal(size=(40, 30)).astype(np.float32)
    g = rng.normal(size=(40, 30)).astype(np.float32)
    dp = cupy.asarray(p.T.copy()).T  # a transposed view onto its own buffer
    m, v = cupy.zeros_like(dp), cupy.zeros_like(dp)
    GPU.adam_step(dp, cupy.asarray(g), m, v, 1e-2, 0.9, 0.999, 1e-8, 0.0, cupy.zeros(()))
    CPU.adam_step(p, g, np.zeros_like(p), np.zeros_like(p), 1e-2, 0.9, 0.999, 1e-8, 0.0,
                  np.zeros(()))
    _close(dp, p, np.float32)
