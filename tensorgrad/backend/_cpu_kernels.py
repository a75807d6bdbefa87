"""NumPy twins of the CUDA kernels in kernels/*.cuh: same method names, same math.

`CpuKernels` is what `ctx.kernels` is on the CPU; `_cuda_kernels.CudaKernels` is the CUDA
side, and tests run one against the other. Arrays come in one float dtype; float16 is computed
in float32 and rounded once on the way out, as the CUDA kernels compute half in float. Each
method returns a new array, or writes to and returns `out` when given (the last argument, so
it may be passed positionally as on CUDA). Scalars are taken in the compute dtype, so a NumPy
float64 scalar never promotes a float32 array (NEP 50). Optimizer steps update their arrays in
place and return None.

Underflow to zero is the correct result of, for example, sigmoid(-1000); NumPy flags it, and
these functions leave it to the caller's `np.errstate` rather than pay for one per call.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

_F16 = np.dtype(np.float16)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)
_GELU_TANH_K = math.sqrt(2.0 / math.pi)
_GELU_TANH_C = 0.044715
# Beyond |x| = 10, tanh(k (x + c x^3)) is exactly +-1 in float32 and float64; clamping there
# keeps x**3 finite and the backward free of 0 * inf (as in activations.cuh).
_GELU_TANH_CLAMP = 10.0


def _up(x: np.ndarray) -> np.ndarray:
    """x in its compute dtype: a float32 copy of float16, otherwise x itself (do not modify)."""
    return x.astype(np.float32) if x.dtype == _F16 else x


def _scalar(value: Any, dtype: np.dtype) -> np.floating:
    """A host scalar (Python, NumPy or 0-d/1-element array) in the compute dtype of dtype."""
    kind = np.float32 if dtype == _F16 else dtype.type
    # item() first: converting a Python float costs half as much as a 0-d array, and every
    # optimizer step pays this once per parameter.
    return kind(value.item()) if isinstance(value, np.ndarray) else kind(value)


def _host(value: Any) -> float:
    """A learning rate or step count given as a number or a 1-element array (the optimizers
    keep both in arrays, so that on CUDA they live on the device)."""
    return float(np.reshape(value, ())) if isinstance(value, np.ndarray) else float(value)


def _count_step(step: Any) -> None:
    """Increment an optimizer's step count, a 1-element float64 array (state["step"]), in
    place, as the CUDA kernels do on the device."""
    if not (isinstance(step, np.ndarray) and step.size == 1 and step.dtype == np.float64):
        raise TypeError("an optimizer's step count must be a 1-element float64 array "
                        f"(state['step']), which the step increments; got {step!r}")
    step += 1


def _dest(out: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    """Where the last operation may write directly: out, unless float16 must round first."""
    return None if dtype == _F16 else out


def _finish(r: np.ndarray, dtype: np.dtype, out: np.ndarray | None) -> np.ndarray:
    """The result r (compute dtype, owned) as dtype, rounded once, in out when given."""
    if out is None:
        return r.astype(dtype, copy=False)
    if r is not out:
        np.copyto(out, r, casting="same_kind")
    return out


@functools.lru_cache(maxsize=64)
def _ones_column(n: int, dtype: np.dtype) -> np.ndarray:
    ones = np.ones((n, 1), dtype)
    ones.flags.writeable = False
    return ones


def _row_sum(x: np.ndarray) -> np.ndarray:
    """x summed over its last axis, keepdims. NumPy sums a contiguous last axis one row at a
    time; a product with a column of ones is one GEMV (one thread, float32: (64, 10) 2.3 ->
    1.1 us, (512, 256) 29 -> 8 us, (4096, 10) 81 -> 10 us). It is as accurate as NumPy's sum
    up to 256 columns; beyond, NumPy's pairwise sum has half the error, and is kept."""
    n = x.shape[-1]
    if n > 256 or x.size == 0 or not x.flags.c_contiguous:
        return x.sum(axis=-1, keepdims=True)
    total = np.matmul(x.reshape(-1, n), _ones_column(n, x.dtype))
    return total.reshape(*x.shape[:-1], 1)


def _row_max(x: np.ndarray) -> np.ndarray:
    """x's maximum over its last axis, keepdims. NumPy reduces a contiguous last axis one row
    at a time; under 32 columns an F-ordered copy, reduced across rows, is faster (one
    thread, float32: (64, 10) 4.0 -> 2.0 us, (512, 10) 24 -> 4 us)."""
    n = x.shape[-1]
    if n >= 32 or x.size == 0:
        return x.max(axis=-1, keepdims=True)
    rows = np.asfortranarray(x.reshape(-1, n))
    return rows.max(axis=-1, keepdims=True).reshape(*x.shape[:-1], 1)


_INT = {2: np.dtype(np.int16), 4: np.dtype(np.int32), 8: np.dtype(np.int64)}


def _int_view(a: Any) -> np.ndarray:
    """The bits of a float array (or NumPy scalar) as a signed integer array of its width."""
    a = np.asarray(a)
    return a.view(_INT[a.dtype.itemsize])  # a table: building the dtype costs more than the view


def _select(cond: Any, a: np.ndarray, b: np.ndarray, dtype: np.dtype,
            out: np.ndarray | None) -> np.ndarray:
    """np.where(cond, a, b) for a, b of one float dtype, bit for bit (NaN payloads and signed
    zeros included), rounded once to dtype and written to out when given.

    b + cond * (a - b) on the integer views: wrapping integer arithmetic makes it exact, and
    three branch-free passes cost a fifth of np.where's per-element branch on a random mask.
    """
    a = np.asarray(a)
    bi = _int_view(b)
    d = np.subtract(_int_view(a), bi)
    np.multiply(d, np.asarray(cond).view(np.int8), out=d)
    dest = _dest(out, dtype)
    if dest is None:
        return _finish(np.add(d, bi, out=d).view(a.dtype), dtype, out)
    np.add(d, bi, out=_int_view(dest))
    return dest


def _logistic(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) as a new array; exp only sees -|x|, so nothing overflows."""
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)
    s = e + 1
    np.reciprocal(s, out=s)
    # s * e for negative x, s * 1 otherwise (a masked multiply is 10x slower than two passes).
    np.maximum(e, x >= 0, out=e)
    s *= e
    return s


def _log1pexp(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)) as a new array, without overflow."""
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.log1p(e, out=e)
    e += np.maximum(x, 0)
    return e


@functools.cache
def _erfcx_pieces() -> tuple[np.polynomial.Chebyshev, np.polynomial.Chebyshev]:
    """Chebyshev interpolants of erfcx(t) = exp(t^2) erfc(t) on [0, 2] and [2, 5].

    NumPy has no erf; degree 20 on each piece is within 5e-15 relative of erfcx, built once
    from math.erfc (exp(t^2) adds at most 25 ulp of rounding at t = 5).
    """
    def erfcx(t: np.ndarray) -> np.ndarray:
        return np.array([math.erfc(v) * math.exp(v * v) for v in t])

    return (np.polynomial.Chebyshev.interpolate(erfcx, 20, domain=[0.0, 2.0]),
            np.polynomial.Chebyshev.interpolate(erfcx, 20, domain=[2.0, 5.0]))


def _erfcx(t: np.ndarray) -> np.ndarray:
    """exp(t^2) erfc(t) for float64 t >= 0 (or NaN)."""
    low, mid = _erfcx_pieces()
    r = np.empty_like(t)
    m = t < 2.0
    r[m] = low(t[m])
    m = (t >= 2.0) & (t < 5.0)
    r[m] = mid(t[m])
    m = ~(t < 5.0)  # includes NaN, which the continued fraction carries through
    tail = t[m]
    # Laplace's continued fraction erfcx(t) = 1/sqrt(pi) / (t + 1/2 / (t + 1 / (t + 3/2 / ...))),
    # 24 levels: within 1e-13 relative for t >= 5.
    acc = np.zeros_like(tail)
    for k in range(24, 0, -1):
        acc = (0.5 * k) / (tail + acc)
    r[m] = 1.0 / (math.sqrt(math.pi) * (tail + acc))
    return r


def _normal_cdf_pdf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phi(x) and phi(x) in float64. The lower tail Phi(-|x|) = exp(-x^2/2) erfcx(|x|/sqrt2)/2
    keeps relative accuracy where 0.5 * (1 + erf(x / sqrt 2)) would cancel to 0."""
    e = np.exp(-0.5 * x * x)
    tail = 0.5 * e * _erfcx(np.abs(x) * _SQRT_HALF)
    return np.where(x < 0, tail, 1.0 - tail), e * _INV_SQRT_2PI


# Elements per block of the float32/float16 gelu: the float64 temporaries of one block stay in
# the L2 cache through the ~40 passes of the polynomial.
_GELU_BLOCK = 16384


@functools.cache
def _erfcx_over_t() -> np.ndarray:
    """Power-basis coefficients (highest first) of p with erfcx(a) ~ t p(t), t = 2 / (2 + a).

    t maps a in [0, inf) onto (0, 1], where erfcx(a) / t is smooth (it tends to 1/(2 sqrt pi));
    degree 14, interpolated at Chebyshev points from math.erfc (and Laplace's continued fraction
    beyond a = 5), is within 2.1e-10 relative of erfcx on the whole half-line: 300x below half
    a float32 ulp. Horner in float64 adds ~1e-16.
    """
    def g(t: np.ndarray) -> np.ndarray:
        a = 2.0 / t - 2.0
        return np.array([_erfcx_host(v) for v in a]) / t

    cheb = np.polynomial.Chebyshev.interpolate(g, 14, domain=[0.0, 1.0])
    power = cheb.convert(kind=np.polynomial.Polynomial, domain=[0.0, 1.0], window=[0.0, 1.0])
    return power.coef[::-1].copy()


def _erfcx_host(a: float) -> float:
    """exp(a^2) erfc(a) for one float a >= 0, to ~1e-15 relative."""
    if a < 5.0:
        return math.erfc(a) * math.exp(a * a)
    acc = 0.0
    for k in range(40, 0, -1):
        acc = (0.5 * k) / (a + acc)
    return 1.0 / (math.sqrt(math.pi) * (a + acc))


def _gelu_single(x: np.ndarray, gy: np.ndarray | None) -> np.ndarray:
    """gelu(x) (gy None) or gy * gelu'(x) for float32/float16 x, as a new array of x's dtype.

    Phi(-|x|) = exp(-x^2/2) erfcx(|x|/sqrt 2) / 2 with erfcx from one polynomial (no branches,
    no gathers), in float64 block by block; Phi(x) = [x >= 0] - copysign(Phi(-|x|), x). Max
    relative error of Phi measured against mpmath.ncdf at 2e5 float32 points in [-40, 40]:
    2.0e-10 wherever Phi is a normal float64 (x >= -37; below, x Phi(x) is 0 in float32
    anyway); each result is then rounded once to x's dtype.
    """
    coef = _erfcx_over_t()
    xf = np.ascontiguousarray(x).reshape(-1)
    gf = None if gy is None else np.ascontiguousarray(gy).reshape(-1)
    res = np.empty(xf.shape, x.dtype)
    for start in range(0, xf.size, _GELU_BLOCK):
        block = slice(start, start + _GELU_BLOCK)
        x64 = xf[block].astype(np.float64)
        t = np.abs(x64)
        t *= _SQRT_HALF
        t += 2.0
        np.divide(2.0, t, out=t)
        tail = t * coef[0]
        for c in coef[1:]:
            tail += c
            tail *= t
        e = x64 * x64  # exact: a float32 squared fits in float64
        e *= -0.5
        np.exp(e, out=e)
        tail *= e
        tail *= 0.5  # Phi(-|x|), relative-accurate down to the smallest subnormal
        np.copysign(tail, x64, out=tail)
        cdf = np.subtract(~np.signbit(x64), tail, out=tail)
        if gf is None:
            cdf *= x64
        else:
            e *= _INV_SQRT_2PI
            e *= x64
            cdf += e
            cdf *= gf[block]
        res[block] = cdf
    return res.reshape(x.shape)


# Elements per block of the gelu_tanh twins: their three or four compute-dtype scratch blocks
# stay in a 1 MiB L2 cache through the ~12 passes, where whole-array passes over a (4096, 1024)
# activation stream from memory every time (16.5 -> 7 ms forward, 30 -> 10 ms backward).
_GELU_TANH_BLOCK = 65536


def _by_blocks(fn: Any, nscratch: int, out: np.ndarray | None, x: np.ndarray,
               *others: np.ndarray) -> np.ndarray:
    """fn(dest, scratch, x_block, *other_blocks) over matching blocks of the flattened arrays:
    dest is the block of the result (x's dtype and shape, out when given) and scratch holds
    nscratch compute-dtype buffers of the block's length. Each block is read before its dest
    is written, so out may be one of the inputs."""
    flat = [np.ascontiguousarray(a).reshape(-1) for a in (x, *others)]
    direct = out is not None and out.dtype == x.dtype and out.flags.c_contiguous
    res = out if direct else np.empty(x.shape, x.dtype)
    dest = res.reshape(-1)
    block = max(1, min(_GELU_TANH_BLOCK, dest.size))
    compute = np.float32 if x.dtype == _F16 else x.dtype
    buffers = [np.empty(block, compute) for _ in range(nscratch)]
    for start in range(0, dest.size, block):
        part = slice(start, start + block)
        n = dest[part].size
        fn(dest[part], [b[:n] for b in buffers], *(a[part] for a in flat))
    if out is None or direct:
        return res
    np.copyto(out, res, casting="same_kind")
    return out


def _gelu_tanh_parts(x: np.ndarray, xc: np.ndarray, t: np.ndarray) -> None:
    """xc = x clamped to +-10, t = tanh(k (xc + c xc^3)), in the given buffers."""
    np.clip(x, -_GELU_TANH_CLAMP, _GELU_TANH_CLAMP, out=xc)
    np.multiply(xc, xc, out=t)
    t *= _GELU_TANH_C
    t *= xc
    t += xc
    t *= _GELU_TANH_K
    np.tanh(t, out=t)


def _gelu_tanh_fwd_block(dest: np.ndarray, scratch: list[np.ndarray], x: np.ndarray) -> None:
    xc, t = scratch
    _gelu_tanh_parts(x, xc, t)
    t += 1
    t *= x
    np.multiply(t, 0.5, out=dest)  # float16: computed in float32, rounded once here


def _gelu_tanh_bwd_block(dest: np.ndarray, scratch: list[np.ndarray], x: np.ndarray,
                         gy: np.ndarray) -> None:
    xc, t, dinner, sech2 = scratch
    _gelu_tanh_parts(x, xc, t)
    np.multiply(xc, xc, out=dinner)
    dinner *= 3 * _GELU_TANH_C
    dinner += 1
    dinner *= _GELU_TANH_K
    np.multiply(t, t, out=sech2)
    np.subtract(1, sech2, out=sech2)
    dinner *= sech2
    dinner *= xc
    t += 1
    t += dinner
    t *= 0.5
    np.multiply(t, gy, out=dest)


@functools.cache
def _causal_keep(rows: int, cols: int) -> np.ndarray:
    """The (rows, cols) mask j <= i of a causal softmax, built once per size (read-only)."""
    keep = np.tri(rows, cols, dtype=bool)
    keep.flags.writeable = False
    return keep


class CpuKernels:
    """NumPy twins of `CudaKernels`; see the module docstring for the calling convention."""

    # activations

    def relu_fwd(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """max(x, 0); exact in every dtype, NaN propagates."""
        return np.maximum(x, x.dtype.type(0), out=out)

    def relu_bwd(self, y: np.ndarray, gy: np.ndarray, out: np.ndarray | None = None):
        """gy where not y <= 0, else 0 (also where gy is inf or NaN): the gradient at the kink
        x = 0 is 0 and a NaN input passes gy through, as in PyTorch. gy's bits times 0 or 1,
        exact in every dtype."""
        mask = np.asarray(~(y <= 0)).view(np.int8)
        if out is None:
            return np.multiply(_int_view(gy), mask).view(gy.dtype)
        np.multiply(_int_view(gy), mask, out=_int_view(out))
        return out

    def leaky_relu_fwd(self, x: np.ndarray, slope: float, out: np.ndarray | None = None):
        """x where x > 0, else slope * x."""
        xc = _up(x)
        s = _scalar(slope, x.dtype)
        r = xc * s
        if s > 0:
            # x * s has x's sign, so the branch is max(x, x s) for s <= 1 and min(x, x s) for
            # s > 1: the same bits, NaN included, in one branch-free pass.
            return _finish((np.maximum if s <= 1 else np.minimum)(xc, r, out=r), x.dtype, out)
        return _select(xc > 0, xc, r, x.dtype, out)  # +-0 and inf * 0 need the branch

    def leaky_relu_bwd(self, x: np.ndarray, gy: np.ndarray, slope: float,
                       out: np.ndarray | None = None) -> np.ndarray:
        """gy where x > 0, else slope * gy (slope at x = 0, as in PyTorch)."""
        gyc = _up(gy)
        return _select(x > 0, gyc, gyc * _scalar(slope, x.dtype), x.dtype, out)

    def elu_fwd(self, x: np.ndarray, alpha: float, out: np.ndarray | None = None) -> np.ndarray:
        """x where x > 0, else alpha * expm1(x); expm1 only sees min(x, 0)."""
        xc = _up(x)
        a = _scalar(alpha, x.dtype)
        e = np.minimum(xc, 0)
        np.expm1(e, out=e)
        e *= a
        if 0 < a <= 1:
            # e = +0 for x > 0, and x <= expm1(x) <= a expm1(x) <= 0 otherwise (both products
            # rounded monotonically): max(x, e) is the branch, bit for bit, in one pass.
            return _finish(np.maximum(xc, e, out=e), x.dtype, out)
        return _select(xc > 0, xc, e, x.dtype, out)

    def elu_bwd(self, y: np.ndarray, gy: np.ndarray, alpha: float,
                out: np.ndarray | None = None) -> np.ndarray:
        """From the output: gy where y > 0, else gy * (y + alpha)."""
        yc, gyc = _up(y), _up(gy)
        return _select(yc > 0, gyc, gyc * (yc + _scalar(alpha, y.dtype)), y.dtype, out)

    def gelu_fwd(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """x * Phi(x) (erf form). Phi is evaluated in float64 and the product rounded once."""
        if x.dtype != np.float64:
            return _finish(_gelu_single(x, None), x.dtype, out)
        cdf, _ = _normal_cdf_pdf(x)
        cdf *= x
        return _finish(cdf, x.dtype, out)

    def gelu_bwd(self, x: np.ndarray, gy: np.ndarray, out: np.ndarray | None = None):
        """gy * (Phi(x) + x phi(x)), in float64 and rounded once."""
        if x.dtype != np.float64:
            return _finish(_gelu_single(x, gy), x.dtype, out)
        cdf, pdf = _normal_cdf_pdf(x)
        pdf *= x
        pdf += cdf
        pdf *= gy
        return _finish(pdf, x.dtype, out)

    def gelu_tanh_fwd(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), PyTorch's approximate='tanh'."""
        return _by_blocks(_gelu_tanh_fwd_block, 2, out, x)

    def gelu_tanh_bwd(self, x: np.ndarray, gy: np.ndarray, out: np.ndarray | None = None):
        """gy (0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2)) with x clamped to +-10."""
        return _by_blocks(_gelu_tanh_bwd_block, 4, out, x, gy)

    def silu_fwd(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """x * sigmoid(x)."""
        xc = _up(x)
        s = _logistic(xc)
        return _finish(np.multiply(s, xc, out=_dest(out, x.dtype)), x.dtype, out)

    def silu_bwd(self, x: np.ndarray, gy: np.ndarray, out: np.ndarray | None = None):
        """gy * s (1 + x (1 - s)), s = sigmoid(x); finite at x = +-1000."""
        xc = _up(x)
        s = _logistic(xc)
        r = 1 - s
        r *= xc
        r += 1
        r *= s
        return _finish(np.multiply(r, _up(gy), out=_dest(out, x.dtype)), x.dtype, out)

    def sigmoid_fwd(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """1 / (1 + exp(-x)) without overflow."""
        return _finish(_logistic(_up(x)), x.dtype, out)

    def sigmoid_bwd(self, y: np.ndarray, gy: np.ndarray, out: np.ndarray | None = None):
        """From the output: gy * y (1 - y)."""
        yc = _up(y)
        r = 1 - yc
        r *= yc
        return _finish(np.multiply(r, _up(gy), out=_dest(out, y.dtype)), y.dtype, out)

    def tanh_fwd(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """tanh(x)."""
        return _finish(np.tanh(_up(x), out=_dest(out, x.dtype)), x.dtype, out)

    def tanh_bwd(self, y: np.ndarray, gy: np.ndarray, out: np.ndarray | None = None):
        """From the output: gy (1 - y^2)."""
        yc = _up(y)
        r = yc * yc
        np.subtract(1, r, out=r)
        return _finish(np.multiply(r, _up(gy), out=_dest(out, y.dtype)), y.dtype, out)

    def softplus_fwd(self, x: np.ndarray, beta: float, threshold: float,
                     out: np.ndarray | None = None) -> np.ndarray:
        """PyTorch's softplus: x where beta x > threshold, else log(1 + exp(beta x)) / beta."""
        xc = _up(x)
        b = _scalar(beta, x.dtype)
        bx = xc * b
        r = _log1pexp(bx)
        r /= b
        return _select(bx > _scalar(threshold, x.dtype), xc, r, x.dtype, out)

    def softplus_bwd(self, x: np.ndarray, gy: np.ndarray, beta: float, threshold: float,
                     out: np.ndarray | None = None) -> np.ndarray:
        """gy where beta x > threshold, else gy * sigmoid(beta x)."""
        bx = _up(x) * _scalar(beta, x.dtype)
        gyc = _up(gy)
        r = _logistic(bx)
        r *= gyc
        return _select(bx > _scalar(threshold, x.dtype), gyc, r, x.dtype, out)

    def bias_relu_fwd(self, z: np.ndarray, b: np.ndarray, out: np.ndarray | None = None):
        """relu(z + b) for z (N, F), b (F,); the sum is rounded only in the output."""
        s = np.add(_up(z), _up(b), out=_dest(out, z.dtype))  # in place when out is z
        return _finish(np.maximum(s, 0, out=s), z.dtype, out)

    def bias_sigmoid_fwd(self, z: np.ndarray, b: np.ndarray, out: np.ndarray | None = None):
        """sigmoid(z + b) for z (N, F), b (F,)."""
        return _finish(_logistic(_up(z) + _up(b)), z.dtype, out)

    def bias_tanh_fwd(self, z: np.ndarray, b: np.ndarray, out: np.ndarray | None = None):
        """tanh(z + b) for z (N, F), b (F,)."""
        s = np.add(_up(z), _up(b), out=_dest(out, z.dtype))
        return _finish(np.tanh(s, out=s), z.dtype, out)

    # losses

    def softmax_xent_fwd(self, logp: np.ndarray, target: np.ndarray, ignore_index: int,
                         out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(nll, tc, kept) per row of log-probabilities logp (N, C) and integer targets (N,):
        nll = -logp[i, t_i], 0 where t_i is ignore_index and NaN where it is otherwise outside
        [0, C); tc = t_i clamped to 0 outside [0, C) (safe to gather with); kept = 1 unless t_i
        is ignore_index, in logp's dtype. out: the three arrays to write them into."""
        n, c = logp.shape
        nll, tc, kept = out if out is not None else (
            np.empty(n, logp.dtype), np.empty(n, target.dtype), np.empty(n, logp.dtype))
        # One comparison for 0 <= t < C: a negative target read as unsigned is above any C.
        in_range = target.view(f"u{target.dtype.itemsize}") < c
        np.multiply(target, in_range, out=tc)
        np.negative(logp[np.arange(n), tc], out=nll)
        np.copyto(nll, np.nan, where=~in_range)
        ignored = np.equal(target, ignore_index)
        np.copyto(nll, 0, where=ignored)
        np.logical_not(ignored, out=kept)
        return nll, tc, kept

    def softmax_xent_bwd(self, p: np.ndarray, target: np.ndarray, scale: Any,
                         out: np.ndarray | None = None) -> np.ndarray:
        """(p - onehot(target)) * scale per row, for probabilities p (N, C), int64 target
        (N,) and scale a number or an array of 1 or N elements (gy times the row's weight)."""
        pc = _up(p)
        s = np.asarray(scale, dtype=pc.dtype).reshape(-1, 1)
        rows = np.arange(p.shape[0])
        hit = pc[rows, target]  # read before r is written: out may be p
        hit -= 1
        hit *= s[:, 0]  # (p - 1) * scale at the target: the same rounding as the CUDA kernel
        r = np.multiply(pc, s, out=_dest(out, p.dtype))
        r[rows, target] = hit
        return _finish(r, p.dtype, out)

    # row softmax (kernels/softmax.cuh): over the last axis, rows of any leading shape

    def softmax_fwd(self, x: np.ndarray, causal_rows: int = 0, masked_zero: bool = False,
                    out: np.ndarray | None = None) -> np.ndarray:
        """exp(x - max) / sum over the last axis. causal_rows = L > 0 reads the rows as
        (L, S) matrices and leaves out column j of row i where j > i (PyTorch's is_causal,
        top-left aligned); masked_zero makes a row with nothing left (all -inf) zeros instead
        of NaN, as PyTorch's attention does."""
        xc = _up(x)
        if x.size == 0:
            return _finish(xc.copy(), x.dtype, out)
        if causal_rows:
            n = x.shape[-1]
            xc = np.where(_causal_keep(causal_rows, n), xc.reshape(-1, causal_rows, n),
                          -np.inf).reshape(x.shape)
        m = _row_max(xc)
        if masked_zero:
            m[m == -np.inf] = 0.0  # exp(-inf - 0) = 0: the row sums to 0, fixed below
        with np.errstate(invalid="ignore"):  # a row of -inf is NaN, silently, as PyTorch's
            e = np.subtract(xc, m, out=xc if xc is not x else _dest(out, x.dtype))
        np.exp(e, out=e)
        s = _row_sum(e)
        if masked_zero:
            s[s == 0] = np.inf
        e /= s
        return _finish(e, x.dtype, out)

    def softmax_bwd(self, y: np.ndarray, gy: np.ndarray,
                    out: np.ndarray | None = None) -> np.ndarray:
        """y (gy - sum(gy y)) over the last axis, from the softmax output y."""
        yc, gc = _up(y), _up(gy)
        dest = None if out is y else _dest(out, y.dtype)  # y is read again after the write
        r = np.subtract(gc, _row_sum(gc * yc), out=dest)
        r *= yc
        return _finish(r, y.dtype, out)

    def log_softmax_fwd(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """x - max - log(sum(exp(x - max))) over the last axis."""
        xc = _up(x)
        if x.size == 0:
            return _finish(xc.copy(), x.dtype, out)
        with np.errstate(invalid="ignore"):
            z = np.subtract(xc, _row_max(xc), out=_dest(out, x.dtype))
        s = _row_sum(np.exp(z))
        z -= np.log(s, out=s)
        return _finish(z, x.dtype, out)

    def log_softmax_bwd(self, y: np.ndarray, gy: np.ndarray,
                        out: np.ndarray | None = None) -> np.ndarray:
        """gy - exp(y) sum(gy) over the last axis, from the log-softmax output y."""
        yc, gc = _up(y), _up(gy)
        total = _row_sum(gc)
        dest = None if out is gy else _dest(out, y.dtype)  # gy is read again after the write
        r = np.exp(yc, out=dest)
        r *= total
        np.subtract(gc, r, out=r)
        return _finish(r, y.dtype, out)

    # optimizers: one tensor, in place, PyTorch's order of operations

    def sgd_step(self, p: np.ndarray, g: np.ndarray, buf: np.ndarray | None, lr: Any,
                 momentum: float, dampening: float, weight_decay: float, nesterov: bool,
                 first_step: bool = False) -> None:
        """torch.optim.SGD on one tensor; buf is None when momentum == 0, and first_step=True
        sets buf = g as PyTorch does on its first step."""
        dt = p.dtype
        pc, d = _up(p), _up(g)
        if weight_decay != 0:
            d = d + _scalar(weight_decay, dt) * pc  # a new array: g is never modified
        if momentum != 0:
            bc = _up(buf)
            if first_step:
                np.copyto(bc, d)
            else:
                bc *= _scalar(momentum, dt)
                bc += _scalar(1.0 - dampening, dt) * d
            d = d + _scalar(momentum, dt) * bc if nesterov else bc
            if bc is not buf:
                np.copyto(buf, bc, casting="same_kind")
        pc -= _scalar(lr, dt) * d
        if pc is not p:
            np.copyto(p, pc, casting="same_kind")

    def adam_step(self, p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr: Any,
                  beta1: float, beta2: float, eps: float, weight_decay: float,
                  step: Any) -> None:
        """torch.optim.Adam on one tensor; weight decay is L2 added to the gradient. step is
        the step count, a 1-element float64 array that this call increments before using it
        (state["step"])."""
        self._adam(p, g, m, v, lr, beta1, beta2, eps, step, l2=weight_decay, decay=1.0)

    def adamw_step(self, p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray,
                   lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                   step: Any) -> None:
        """torch.optim.AdamW on one tensor; decoupled decay p *= 1 - lr * weight_decay."""
        self._adam(p, g, m, v, lr, beta1, beta2, eps, step, l2=0.0,
                   decay=1.0 - _host(lr) * weight_decay)

    def _adam(self, p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr: Any,
              beta1: float, beta2: float, eps: float, step: Any, l2: float,
              decay: float) -> None:
        _count_step(step)
        dt = p.dtype
        lr, step = _host(lr), _host(step)
        step_size = _scalar(lr / (1.0 - beta1 ** step), dt)
        bc2_sqrt = _scalar(math.sqrt(1.0 - beta2 ** step), dt)
        pc, gc, mc, vc = _up(p), _up(g), _up(m), _up(v)
        if l2 != 0:
            gc = gc + _scalar(l2, dt) * pc
        if decay != 1:
            pc *= _scalar(decay, dt)
        mc += _scalar(1.0 - beta1, dt) * (gc - mc)  # PyTorch's lerp for weights below 0.5
        vc *= _scalar(beta2, dt)
        vc += _scalar(1.0 - beta2, dt) * gc * gc
        denom = np.sqrt(vc)
        denom /= bc2_sqrt
        denom += _scalar(eps, dt)
        np.divide(mc, denom, out=denom)
        denom *= step_size
        pc -= denom
        for state, compute in ((p, pc), (m, mc), (v, vc)):
            if compute is not state:
                np.copyto(state, compute, casting="same_kind")

    def rmsprop_step(self, p: np.ndarray, g: np.ndarray, sq: np.ndarray, lr: Any,
                     alpha: float, eps: float, weight_decay: float, momentum: float,
                     buf: np.ndarray | None, step: np.ndarray) -> None:
        """torch.optim.RMSprop (centered=False) on one tensor; buf is None when momentum == 0;
        step is the step count (as adam_step's), incremented here."""
        _count_step(step)
        dt = p.dtype
        pc, gc, sc = _up(p), _up(g), _up(sq)
        if weight_decay != 0:
            gc = gc + _scalar(weight_decay, dt) * pc
        sc *= _scalar(alpha, dt)
        sc += _scalar(1.0 - alpha, dt) * gc * gc
        d = np.sqrt(sc)
        d += _scalar(eps, dt)
        np.divide(gc, d, out=d)
        pairs = [(p, pc), (sq, sc)]
        if momentum != 0:
            bc = _up(buf)
            bc *= _scalar(momentum, dt)
            bc += d
            d = bc
            pairs.append((buf, bc))
        pc -= _scalar(lr, dt) * d
        for state, compute in pairs:
            if compute is not state:
                np.copyto(state, compute, casting="same_kind")
