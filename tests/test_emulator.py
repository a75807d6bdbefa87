"""The emulated CUDA of tests/cuda_emulator, tested on its own: kernels against NumPy, CuPy's
float16 conversions and flush-to-zero, cuBLAS semantics and bounds checks, capture that records
instead of running, and the launch counters. Runs only when the emulator is the cupy that
imports (PYTHONPATH=tests/cuda_emulator, as the second run of scripts/test.sh)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

cupy = pytest.importorskip("cupy", reason="the CUDA emulator is not on PYTHONPATH")
if not cupy.__version__.endswith("+emulator"):
    pytest.skip("cupy is a real CuPy, not the emulator", allow_module_level=True)

emulator = cupy._emulator
ROOT = Path(__file__).resolve().parents[1]


def test_elementwise_kernel_broadcasts_strides_and_writes_out_arguments(rng):
    kernel = cupy.ElementwiseKernel("T x, T b, float64 s", "T y", "y = x * s + b", "axpb")
    x = rng.normal(size=(6, 8)).astype(np.float32)
    b = rng.normal(size=8).astype(np.float32)
    dx = cupy.asarray(x.T.copy()).T[::-1, ::2]  # transposed storage, reversed rows, a stride
    want = x[::-1, ::2] * np.float32(2.5) + b[::2]
    # (the kernel contracts x * s + b into one FMA, as NVRTC does: an ulp from NumPy)
    np.testing.assert_allclose(kernel(dx, cupy.asarray(b)[::2], 2.5).get(), want, rtol=1e-5)
    out = cupy.zeros((6, 4), np.float32)
    assert kernel(dx, cupy.asarray(b[::2].copy()), 2.5, out) is out
    np.testing.assert_allclose(out.get(), want, rtol=1e-5)
    with pytest.raises(ValueError, match=r"broadcast together with shapes \(6, 4\), \(4,\), "
                       r"\(6, 5\)"):
        kernel(dx, cupy.asarray(b[::2].copy()), 2.5, cupy.zeros((6, 5), np.float32))
    with pytest.raises(ValueError, match="Out shape is mismatched"):
        kernel(dx, cupy.asarray(b[::2].copy()), 2.5, cupy.zeros((1, 4), np.float32))
    with pytest.raises(TypeError, match="Type is mismatched"):
        kernel(dx, cupy.zeros(4, np.float64), 2.5)
    with pytest.raises(TypeError, match="Unsupported type"):
        kernel(x, b, 2.5)


def test_raw_parameters_index_flat_and_i_is_the_loop_index():
    kernel = cupy.ElementwiseKernel("raw T table, int64 n", "T y", "y = table[(i * 7) % n]",
                                    "gather")
    table = cupy.arange(10, dtype=np.float64)[::-1]  # negative stride: flat index is logical
    got = kernel(table, 10, cupy.empty(5, np.float64)).get()
    np.testing.assert_array_equal(got, [9.0 - (i * 7) % 10 for i in range(5)])


def test_float16_converts_as_cupy_through_float():
    # CuPy's float16(double) rounds to float first, then to half: 1 + 2^-11 + 2^-30 becomes
    # the float 1 + 2^-11, a tie that rounds to even (1.0); NumPy's direct rounding gives
    # 1 + 2^-10. Arithmetic on halves happens in float and rounds once on store.
    value = 1 + 2.0**-11 + 2.0**-30
    to_half = cupy.ElementwiseKernel("float64 x", "float16 y", "y = x", "to_half")
    assert to_half(cupy.full(1, value)).get()[0] == np.float16(1.0)
    assert np.float16(value) == np.float16(1 + 2.0**-10)
    mul = cupy.ElementwiseKernel("T a, T b", "T y", "y = a * b", "half_mul")
    a = np.array([0.1, 3.0, 65504.0, 1e-7], np.float16)
    b = np.array([0.3, 1 / 3, 2.0, 0.5], np.float16)
    with np.errstate(over="ignore"):  # 65504 * 2 is inf in half, on both sides
        want = (a.astype(np.float32) * b.astype(np.float32)).astype(np.float16)
    np.testing.assert_array_equal(mul(cupy.asarray(a), cupy.asarray(b)).get(), want)


def test_float32_flushes_subnormals_and_float64_does_not():
    scale = cupy.ElementwiseKernel("T x, T s", "T y", "y = x * s", "scale_ftz")
    tiny32 = scale(cupy.full(1, 1e-30, np.float32), cupy.full(1, 1e-10, np.float32)).get()
    assert tiny32[0] == 0.0 and np.float32(1e-30) * np.float32(1e-10) != 0
    sub_in = scale(cupy.full(1, 1e-40, np.float32), cupy.full(1, 1e30, np.float32)).get()
    assert sub_in[0] == 0.0  # a subnormal input reads as zero
    tiny64 = scale(cupy.full(1, 1e-300), cupy.full(1, 1e-10)).get()
    assert tiny64[0] == pytest.approx(1e-310)


_BLOCK_SUM = r"""
template <typename T>
__global__ void block_sum(const T* x, T* out, long long n) {
    __shared__ T partial[32];
    T v = 0;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) v += x[blockIdx.x * n + j];
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        T s = 0;
        for (unsigned w = 0; w < blockDim.x / 32; ++w) s += partial[w];
        out[blockIdx.x] = s;
    }
}
"""


@pytest.mark.parametrize("threads", [32, 96, 1024])
def test_raw_module_blocks_share_memory_and_shuffle_as_on_a_gpu(threads, rng):
    module = cupy.RawModule(code=_BLOCK_SUM, name_expressions=["block_sum<double>"])
    kernel = module.get_function("block_sum<double>")
    x = rng.normal(size=(5, 333))
    out = cupy.zeros(5)
    kernel((5,), (threads,), (cupy.asarray(x), out, np.int64(333)))
    np.testing.assert_allclose(out.get(), x.sum(axis=1), rtol=1e-12)


def _gemm(lib, handle, m, n, k, a, lda, b, ldb, c, ldc, transa=0, transb=0, batch=1,
          strides=(0, 0, 0)):
    one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)
    return lib.cublasSgemmStridedBatched(
        ctypes.c_void_p(handle), transa, transb, m, n, k, ctypes.byref(one),
        ctypes.c_void_p(a.data.ptr), lda, ctypes.c_longlong(strides[0]),
        ctypes.c_void_p(b.data.ptr), ldb, ctypes.c_longlong(strides[1]), ctypes.byref(zero),
        ctypes.c_void_p(c.data.ptr), ldc, ctypes.c_longlong(strides[2]), batch)


def _cublas():
    """The handle and the library, found as tensorgrad's _cublas.py finds it."""
    handle = cupy.cuda.Device().cublas_handle
    with open("/proc/self/maps") as maps:
        path = next(line.split()[-1] for line in maps
                    if os.path.basename(line.split()[-1]).startswith("libcublas.so"))
    return handle, ctypes.CDLL(path)


def test_cublas_is_column_major_and_checks_bounds(rng, capfd):
    handle, lib = _cublas()
    a = rng.normal(size=(3, 4)).astype(np.float32)  # row-major (3, 4) = column-major (4, 3)
    b = rng.normal(size=(5, 3)).astype(np.float32)
    da, db, dc = cupy.asarray(a), cupy.asarray(b), cupy.zeros((5, 4), np.float32)
    # Column-major: A^T is 4x3 with ld 4, B^T is 3x5 with ld 3, C^T = A^T B^T is 4x5.
    assert _gemm(lib, handle, 4, 5, 3, da, 4, db, 3, dc, 4) == 0
    np.testing.assert_allclose(dc.get(), b @ a, rtol=1e-5)
    assert _gemm(lib, handle, 4, 5, 3, da, 3, db, 3, dc, 4) == 7  # lda < rows: invalid value
    assert _gemm(lib, handle, 4, 5, 3, da, 5, db, 3, dc, 4) == 13  # past the end of A
    assert "A (4x3, ld=5" in cupy._cublas.last_error
    assert "past its end" in capfd.readouterr().err
    # A batch count the strides do not fit in the allocation fails the same way.
    assert _gemm(lib, handle, 4, 5, 3, da, 4, db, 3, dc, 4, batch=2, strides=(12, 15, 20)) == 13


def test_capture_records_instead_of_running_and_replays_in_order():
    x = cupy.arange(4, dtype=np.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        x += 1  # memory from before the capture: must not change now
        y = x * 2
        graph = stream.end_capture()
    np.testing.assert_array_equal(x.get(), [0, 1, 2, 3])
    assert np.isnan(y.get()).all()  # graph memory holds nothing valid before a launch
    graph.launch(stream)
    np.testing.assert_array_equal(x.get(), [1, 2, 3, 4])
    np.testing.assert_array_equal(y.get(), [2, 4, 6, 8])
    graph.launch(stream)  # reads the values of the moment: x was incremented again
    np.testing.assert_array_equal(y.get(), [4, 6, 8, 10])


def test_host_reads_and_host_copies_during_capture_raise_as_cuda():
    x = cupy.ones(3)
    for attempt in (lambda: x.get(), lambda: float(x.sum()), lambda: bool(x[0]),
                    lambda: cupy.asarray(np.ones(3)), lambda: x[x > 0]):
        stream = cupy.cuda.Stream(non_blocking=True)
        with stream:
            stream.begin_capture()
            with pytest.raises(cupy.cuda.runtime.CUDARuntimeError,
                               match="cudaErrorStreamCaptureUnsupported: operation not "
                                     "permitted when stream is capturing"):
                attempt()
            with pytest.raises(cupy.cuda.runtime.CUDARuntimeError,
                               match="cudaErrorStreamCaptureInvalidated"):
                stream.end_capture()
    with pytest.raises(RuntimeError, match="default"):
        cupy.cuda.Stream.null.begin_capture()


def test_random_draws_and_gemms_are_recorded_and_new_on_every_replay():
    rng = cupy.random.default_rng(0)
    w = cupy.asarray(np.eye(3, dtype=np.float32) * 2)
    pool = cupy.cuda.MemoryPool()
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream, cupy.cuda.using_allocator(pool.malloc):
        stream.begin_capture()
        r = rng.random((4, 3), dtype=np.float32)
        y = cupy.matmul(r, w)
        graph = stream.end_capture()
    graph.launch(stream)
    first_r, first_y = r.get(), y.get()
    np.testing.assert_allclose(first_y, first_r * 2)
    graph.launch(stream)
    assert not np.array_equal(r.get(), first_r)


def test_graph_pool_is_flat_over_1000_replays():
    x = cupy.ones((32, 32), np.float32)
    pool = cupy.cuda.MemoryPool()
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream, cupy.cuda.using_allocator(pool.malloc):
        stream.begin_capture()
        y = cupy.exp(x * 0.5).sum(axis=0)
        graph = stream.end_capture()
    before = pool.total_bytes()
    assert before > 0
    for _ in range(1000):
        graph.launch(stream)
    assert pool.total_bytes() == before
    np.testing.assert_allclose(y.get(), np.full(32, 32 * np.exp(0.5)), rtol=1e-5)


def test_counters_count_launches_gemms_and_bytes():
    x = cupy.ones(1000, np.float32)  # 4000 bytes
    kernel = cupy.ElementwiseKernel("T x", "T y", "y = x + 1", "plus_one")
    kernel(x)
    with emulator.counting() as counts:
        y = x + 1  # reads 4000, writes 4000
        kernel(y)  # reads 4000, writes 4000
        x.reshape(10, 100)  # a view: no launch
        cupy.empty(10)  # an allocation: no launch
    assert (counts.launches, counts.gemms, counts.bytes) == (2, 0, 16000)
    assert counts.by_name == {"add": 1, "plus_one": 1}
    handle, lib = _cublas()
    a, b = cupy.ones((4, 3), np.float32), cupy.ones((3, 5), np.float32)
    c = cupy.empty((4, 5), np.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    lib.cublasSetStream_v2(ctypes.c_void_p(handle), ctypes.c_void_p(stream.ptr))
    with stream:
        stream.begin_capture()
        assert _gemm(lib, handle, 4, 5, 3, a, 4, b, 3, c, 4) == 0  # recorded, not run
        kernel(c, c)
        graph = stream.end_capture()
        with emulator.counting() as counts:
            graph.launch(stream)
            graph.launch(stream)
    lib.cublasSetStream_v2(ctypes.c_void_p(handle), ctypes.c_void_p(0))
    assert (counts.launches, counts.gemms, counts.graph_launches) == (4, 2, 2)
    # a GEMM reads A and B and writes C; the kernel reads and writes c: per replay
    assert counts.bytes == 2 * (4 * (12 + 15 + 20) + 2 * 4 * 20)
    np.testing.assert_array_equal(c.get(), np.full((4, 5), 4.0))


def test_cupy_behaviour_the_emulator_keeps(rng):
    x = cupy.arange(6.0).reshape(2, 3)
    assert isinstance(x.sum(), cupy.ndarray) and x.sum().shape == ()  # no NumPy scalars
    assert x[1, 2].shape == ()
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(x)
    with pytest.raises(TypeError, match="Unsupported type"):
        x + np.ones(3)
    assert isinstance(np.exp(x), cupy.ndarray)  # NumPy ufuncs dispatch to CuPy
    with pytest.raises(AttributeError, match="insert"):
        cupy.insert  # noqa: B018  (CuPy 14 has no insert)
    # NEP 50: Python scalars are weak, NumPy scalars are not.
    assert (cupy.ones(2, np.float32) * 2.0).dtype == np.float32
    assert (cupy.ones(2, np.float32) * np.float64(2.0)).dtype == np.float64
    with pytest.warns(DeprecationWarning, match="cupy.add.at"):
        import cupyx

        cupyx.scatter_add(cupy.zeros(3), cupy.asarray([0, 0, 2]), 1.0)
    z = cupy.zeros(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cupy.add.at(z, cupy.asarray([0, 0, 2]), 1.0)
    np.testing.assert_array_equal(z.get(), [2.0, 0.0, 1.0])
    assert (x / 0).get()[1, 0] == np.inf  # no floating-point warnings, as on a GPU


def test_info_says_the_device_is_emulated():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "cuda_emulator")}
    result = subprocess.run([sys.executable, "-m", "tensorgrad", "info"], capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "cuda:0 tensorgrad CUDA emulator (host)" in result.stdout
    assert "14.2.0+emulator" in result.stdout
