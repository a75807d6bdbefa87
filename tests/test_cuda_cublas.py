"""The cuBLAS path of matmul on CUDA: how operands are described to cuBLAS (layout, leading
dimension, batch stride; checked everywhere on NumPy arrays of the same strides), and products
of padded, transposed and batched operands against NumPy on a CUDA device (the emulator's
cuBLAS stand-in checks every operand's bounds, so a wrong leading dimension fails there)."""

from __future__ import annotations

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad.backend import _cublas
from tensorgrad.backend._cublas import _OP_N, _OP_T, _layout

BIG = 2**31 + 7  # past C int: the plain cuBLAS entry points wrapped it to a negative size


def _of(x: np.ndarray, batch: tuple[int, ...] = ()) -> tuple[int, int, int] | None:
    return _layout(x.shape, x.strides, x.itemsize, batch)


@pytest.mark.parametrize("make, expected", [
    (lambda a: a, (_OP_N, 8, 0)),
    (lambda a: a.T, (_OP_T, 8, 0)),
    (lambda a: a[:, :5], (_OP_N, 8, 0)),  # row-padded: the rows stay 8 apart, no copy
    (lambda a: a[:, 2:7].T, (_OP_T, 8, 0)),
    (lambda a: a[::2], (_OP_N, 16, 0)),
    (lambda a: a[:1, :3], (_OP_N, 3, 0)),
    (lambda a: a[:, 3:4], (_OP_N, 8, 0)),
], ids=["contiguous", "transposed", "row-padded", "padded-transposed", "every-other-row",
        "one-row", "one-column"])
def test_layouts_cublas_reads_in_place(make, expected):
    assert _of(make(np.zeros((6, 8), np.float32))) == expected


@pytest.mark.parametrize("make", [
    lambda a: a[:, ::2], lambda a: a[::-1], lambda a: a[:, ::-1],
    lambda a: np.broadcast_to(a[:1], (6, 8)),
], ids=["every-other-column", "reversed-rows", "reversed-columns", "broadcast-rows"])
def test_layouts_that_need_a_copy(make):
    assert _of(make(np.zeros((6, 8), np.float32))) is None


def test_batch_strides():
    x = np.zeros((3, 4, 6, 8), np.float64)
    assert _of(x, (3, 4)) == (_OP_N, 8, 48)
    assert _of(x[:, ::2], (3, 2)) == (_OP_N, 8, 96)  # 96 apart, and 192 = 2 * 96 across
    assert _of(x[::2], (2, 4)) is None  # 48 apart inside a row of the batch, 384 across
    assert _of(x[0, ::2], (2,)) == (_OP_N, 8, 96)
    assert _of(x[:, :2], (3, 2)) is None  # 48 apart inside a row of the batch, 192 across
    assert _of(x[0, 0], (5,)) == (_OP_N, 8, 0)  # one matrix for the whole batch
    assert _of(x[:, :1], (3, 4)) is None  # broadcast in one batch dim, strided in the other
    assert _of(x[:, :, :, :5], (3, 4)) == (_OP_N, 8, 48)


def test_sizes_past_c_int_reach_cublas_exactly():
    # A view of two rows 2**31 + 16 elements apart, built without the memory behind it.
    x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(2, BIG),
                                        strides=((BIG + 9) * 4, 4))
    assert _of(x) == (_OP_N, BIG + 9, 0)
    # The _64 entry points take every size, leading dimension and batch count as int64.
    sizes = [3, 4, 5, 8, 11, 15, 17]  # m, n, k, lda, ldb, ldc, batchCount
    for index in sizes:
        assert _cublas._GEMM_ARGTYPES[index](BIG).value == BIG
    for index in (3, 4, 5, 9, 13, 18, 20):
        assert _cublas._GEMM_EX_ARGTYPES[index](BIG).value == BIG


def _cuda_or_skip(device: str) -> None:
    if device != "cuda":
        pytest.skip("the cuBLAS path is CUDA's; the CPU multiplies with NumPy")


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_padded_transposed_and_batched_products_without_copies(device, dtype, monkeypatch):
    _cuda_or_skip(device)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 7, 12)).astype(dtype)
    b = rng.standard_normal((12, 9)).astype(dtype)
    ta, tb = tg.tensor(a, device=device), tg.tensor(b, device=device)
    cases = [
        (ta[:, :, :5], tb[:5], a[:, :, :5], b[:5]),  # a row-padded, b a leading slice
        (ta[0, :, :6], tb[:6, 2:8], a[0, :, :6], b[:6, 2:8]),  # both row-padded
        (ta[1].T[:, :4], tb[:4, :3], a[1].T[:, :4], b[:4, :3]),  # column-major, padded
        (ta[::2, :, :9], tb[:9], a[::2, :, :9], b[:9]),  # batch stride of two matrices
    ]
    xp = tg.backend.get_backend(tg.Device(device)).xp

    def no_copy(*args, **kwargs):
        raise AssertionError("an operand cuBLAS can read in place was copied")

    monkeypatch.setattr(xp, "ascontiguousarray", no_copy)
    tol = {"float16": 2e-2, "float32": 1e-5, "float64": 1e-12}[dtype]
    for x, y, hx, hy in cases:
        want = hx.astype(np.float64) @ hy.astype(np.float64)
        got = (x @ y).numpy()
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)
