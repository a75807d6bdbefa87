"""The row softmax kernels (kernels/softmax.cuh and their NumPy twins in CpuKernels): the twins
against float64 references, and the CUDA kernels against the twins where CUDA is usable (on a
GPU, or under the emulated CuPy of tests/cuda_emulator). test_kernels_compile.py compiles the
RawModule with NVRTC from the source CuPy generates.

Row lengths 1, 31, 32, 33, 1024 and 4097 straddle a warp, a block of 1024 threads and a row
that each thread visits more than four times; values at +-1e4 check the max shift.
"""

from __future__ import annotations

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad.backend._cpu_kernels import CpuKernels

K = CpuKernels()
LENGTHS = [1, 31, 32, 33, 1024, 4097]
DTYPES = [np.float16, np.float32, np.float64]
TOL = {np.float16: (2e-3, 1e-4), np.float32: (2e-6, 1e-7), np.float64: (1e-13, 1e-15)}


def _rows(rng, n, dtype, extreme=False):
    x = rng.standard_normal((3, n)) * 4
    if extreme:
        x[:, ::2] = 1e4
        x[:, 1::3] = -1e4
    return x.astype(dtype)


def _softmax64(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _check(got, want, dtype):
    rtol, atol = TOL[dtype]
    assert got.dtype == dtype
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("extreme", [False, True])
def test_twins_against_float64(n, dtype, extreme, rng):
    x = _rows(rng, n, dtype, extreme)
    gy = rng.standard_normal(x.shape).astype(dtype)
    y = K.softmax_fwd(x)
    _check(y, _softmax64(x), dtype)
    assert np.isfinite(y).all()
    logy = K.log_softmax_fwd(x)
    x64 = x.astype(np.float64)
    m = x64.max(axis=-1, keepdims=True)
    _check(logy, x64 - m - np.log(np.exp(x64 - m).sum(axis=-1, keepdims=True)), dtype)
    y64, g64 = y.astype(np.float64), gy.astype(np.float64)
    _check(K.softmax_bwd(y, gy), y64 * (g64 - (g64 * y64).sum(-1, keepdims=True)), dtype)
    ly64 = logy.astype(np.float64)
    _check(K.log_softmax_bwd(logy, gy), g64 - np.exp(ly64) * g64.sum(-1, keepdims=True), dtype)


def test_causal_rows_leave_out_later_columns(rng):
    x = rng.standard_normal((2, 3, 5))
    y = K.softmax_fwd(x, causal_rows=3)
    keep = np.tri(3, 5, dtype=bool)
    want = _softmax64(np.where(keep, x, -np.inf))
    np.testing.assert_allclose(y, want, rtol=1e-14)
    assert (y[:, ~keep] == 0).all()


def test_masked_zero_gives_zeros_for_a_row_with_nothing_left():
    x = np.array([[-np.inf, -np.inf], [0.0, -np.inf]], dtype=np.float32)
    np.testing.assert_array_equal(K.softmax_fwd(x, masked_zero=True), [[0, 0], [1, 0]])
    assert np.isnan(K.softmax_fwd(x)[0]).all()  # plain softmax: NaN, as torch.softmax


def test_out_is_written_and_returned(rng):
    for dtype in DTYPES:
        x = _rows(rng, 33, dtype)
        out = np.empty_like(x)
        assert K.softmax_fwd(x, out=out) is out
        np.testing.assert_array_equal(out, K.softmax_fwd(x))


def _cuda_kernels():
    from conftest import cuda_unusable_reason

    if reason := cuda_unusable_reason():
        pytest.skip(f"CUDA not usable here: {reason}")
    return tg.backend.get_backend(tg.Device("cuda"))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("extreme", [False, True])
def test_cuda_kernels_match_their_twins(n, dtype, extreme, rng):
    backend = _cuda_kernels()
    cp, ck = backend.xp, backend.kernels
    x = _rows(rng, n, dtype, extreme)
    gy = rng.standard_normal(x.shape).astype(dtype)
    y, logy = K.softmax_fwd(x), K.log_softmax_fwd(x)
    pairs = [
        (ck.softmax_fwd(cp.asarray(x)), y),
        (ck.log_softmax_fwd(cp.asarray(x)), logy),
        (ck.softmax_bwd(cp.asarray(y), cp.asarray(gy)), K.softmax_bwd(y, gy)),
        (ck.log_softmax_bwd(cp.asarray(logy), cp.asarray(gy)), K.log_softmax_bwd(logy, gy)),
    ]
    if n > 2:
        causal = x.reshape(-1, 3, n)
        pairs.append((ck.softmax_fwd(cp.asarray(causal), causal_rows=3),
                      K.softmax_fwd(causal, causal_rows=3)))
    rtol, atol = TOL[dtype]
    for got, want in pairs:
        assert got.dtype == dtype
        np.testing.assert_allclose(cp.asnumpy(got).astype(np.float64), want, rtol=rtol,
                                   atol=atol)


@pytest.mark.cuda
def test_cuda_float16_is_one_launch_over_half_storage(rng):
    # Half is loaded, computed in float and stored by the kernel itself: no float32 copies
    # of the input or the output around it (the emulator counts launches and bytes moved).
    backend = _cuda_kernels()
    emulator = getattr(backend.xp, "_emulator", None)
    if emulator is None:
        pytest.skip("launch counts come from the emulated CuPy")
    x = backend.xp.asarray(_rows(rng, 33, np.float16))
    with emulator.counting() as counts:
        y = backend.kernels.softmax_fwd(x)
    assert y.dtype == np.float16
    assert counts.by_name == {"tg_softmax_fwd": 1}
    assert counts.bytes == 2 * x.nbytes


@pytest.mark.parametrize("name", ["softmax_fwd", "log_softmax_fwd", "softmax_bwd",
                                  "log_softmax_bwd"])
def test_out_may_be_an_input(name, rng):
    # Attention writes its softmax over its own scores; the CUDA kernels allow any input as
    # out, and so do the twins.
    kernel = getattr(K, name)
    inputs = [rng.standard_normal((3, 33)) for _ in range(1 if name.endswith("fwd") else 2)]
    want = kernel(*inputs)
    for i in range(len(inputs)):
        copies = [a.copy() for a in inputs]
        assert kernel(*copies, out=copies[i]) is copies[i]
        np.testing.assert_array_equal(copies[i], want)
