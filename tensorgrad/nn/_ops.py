"""The ops behind tg.nn's layers that the core op families do not have: sliding windows
(Unfold / Fold, im2col and col2im, which convolution and average pooling are built on), max
pooling over window offsets, and the fused softmax cross-entropy with its fused backward.

Binary cross-entropy is an op of its own for PyTorch's backward formula (see its docstring).

Each pair is each other's derivative (Unfold and Fold are adjoint linear maps; the fused
cross-entropy backward is an op whose own backward is written in Tensor ops), so
create_graph works through every layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tensor import Tensor
from ..autograd._op import Op
from ..ops.activation import softmax
from ..ops.arithmetic import maximum
from ..ops.reduction import sum as _sum

Pair = tuple[int, int]


def window_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """The number of window positions along one axis, as PyTorch (floor mode)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class Unfold(Op):
    """cols[n, i, j, c, a, b] = xpad[n, c, i*sh + a*dh, j*sw + b*dw]: every window of x
    (N, C, H, W) as a contiguous (N, Ho, Wo, C, kh, kw) array; gx = Fold(gcols)."""

    @staticmethod
    def forward(ctx: Op, x: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair,
                pad_value: float = 0.0) -> Any:
        xp = ctx.xp
        n, c, h, w = x.shape
        ctx.geometry = (x.shape, kernel, stride, padding, dilation)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        if ph or pw:
            x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
        ho = window_out_size(h, kh, sh, ph, dh)
        wo = window_out_size(w, kw, sw, pw, dw)
        if c == 1:
            # One channel (pooling, whose caller folds channels into the batch, and grayscale
            # convolutions): one strided copy per kernel offset runs along whole output rows,
            # 3x to 5x faster on the CPU than copying the (kh, kw) windows three at a time.
            cols = xp.empty((n, ho, wo, 1, kh, kw), dtype=x.dtype)
            for a in range(kh):
                for b in range(kw):
                    cols[:, :, :, 0, a, b] = x[:, 0, a * dh:a * dh + sh * (ho - 1) + 1:sh,
                                               b * dw:b * dw + sw * (wo - 1) + 1:sw]
            return cols
        s = x.strides
        # A strided view reads every window without copying; one copy makes it contiguous.
        windows = xp.lib.stride_tricks.as_strided(
            x, (n, ho, wo, c, kh, kw), (s[0], s[2] * sh, s[3] * sw, s[1], s[2] * dh, s[3] * dw))
        return xp.ascontiguousarray(windows)

    @staticmethod
    def backward(ctx: Op, gcols: Tensor) -> Tensor:
        return Fold.apply(gcols, geometry=ctx.geometry)


class Fold(Op):
    """The adjoint of Unfold (col2im): each window's values added back where it was read;
    overlapping windows sum. gcols = Unfold(gx)."""

    @staticmethod
    def forward(ctx: Op, cols: Any, geometry: tuple[Any, ...]) -> Any:
        ctx.geometry = geometry
        (n, c, h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = geometry
        _, ho, wo = cols.shape[:3]
        out = ctx.xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
        # One strided add per kernel offset: kh * kw vectorized passes, not one per window.
        for a in range(kh):
            for b in range(kw):
                rows = slice(a * dh, a * dh + sh * (ho - 1) + 1, sh)
                columns = slice(b * dw, b * dw + sw * (wo - 1) + 1, sw)
                out[:, :, rows, columns] += cols[:, :, :, :, a, b].transpose(0, 3, 1, 2)
        if ph or pw:
            out = ctx.xp.ascontiguousarray(out[:, :, ph:ph + h, pw:pw + w])
        return out

    @staticmethod
    def backward(ctx: Op, gx: Tensor) -> Tensor:
        _, kernel, stride, padding, dilation = ctx.geometry
        return Unfold.apply(gx, kernel=kernel, stride=stride, padding=padding,
                            dilation=dilation)


def _offset_views(a: Any, kernel: Pair, stride: Pair, dilation: Pair, out: Pair) -> list[Any]:
    """For each window offset (i, j), in row-major order, the strided view of the padded
    (N, C, H, W) array a holding that offset of every window: shape (N, C, Ho, Wo). Basic
    slicing only, so the views write through and work the same on CuPy."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out
    return [a[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]


def _pad(xp: Any, a: Any, padding: Pair, value: float) -> Any:
    ph, pw = padding
    if not (ph or pw):
        return a
    return xp.pad(a, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


class MaxPool(Op):
    """y = max over each window of x (N, C, H, W), padded with -inf: a running maximum over
    the kh * kw window offsets (strided views, no copies of the windows). The gradient of a
    window goes to its first maximum (offsets in row-major order), as PyTorch: forward keeps
    one mask per offset of where each window's maximum was taken, and nothing else of x."""

    @staticmethod
    def forward(ctx: Op, x: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair,
                out: Pair) -> Any:
        xp = ctx.xp
        views = _offset_views(_pad(xp, x, padding, -np.inf), kernel, stride, dilation, out)
        y = views[0].copy()
        for view in views[1:]:
            xp.maximum(y, view, out=y)
        taken = xp.zeros(y.shape, dtype=bool)
        hits = xp.empty((len(views),) + y.shape, dtype=bool)
        for k, view in enumerate(views):
            xp.logical_and(view == y, ~taken, out=hits[k])
            taken |= hits[k]
        ctx.save_for_backward(hits)
        ctx.geometry = (x.shape, kernel, stride, padding, dilation, out)
        return y

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> tuple[Tensor]:
        (hits,) = ctx.saved_tensors
        return MaxPoolScatter.apply(gy, hits, geometry=ctx.geometry)


class MaxPoolScatter(Op):
    """gx = each window's gy placed where its maximum was (x's shape, zeros elsewhere). Linear
    in gy; its adjoint, MaxPoolGather, is its gradient."""

    @staticmethod
    def forward(ctx: Op, g: Any, hits: Any, geometry: tuple[Any, ...]) -> Any:
        xp = ctx.xp
        (n, c, h, w), kernel, stride, (ph, pw), dilation, out = geometry
        gx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=g.dtype)
        for hit, view in zip(hits, _offset_views(gx, kernel, stride, dilation, out)):
            view += xp.where(hit, g, 0)  # one view never repeats a position: += is safe
        ctx.save_for_backward(hits)
        ctx.geometry = geometry
        return gx[:, :, ph:ph + h, pw:pw + w] if ph or pw else gx

    @staticmethod
    def backward(ctx: Op, ggx: Tensor) -> tuple[Tensor, None]:
        (hits,) = ctx.saved_tensors
        return MaxPoolGather.apply(ggx, hits, geometry=ctx.geometry), None


class MaxPoolGather(Op):
    """g_window = gx at the position of each window's maximum: the adjoint of MaxPoolScatter,
    which is in turn its gradient."""

    @staticmethod
    def forward(ctx: Op, gx: Any, hits: Any, geometry: tuple[Any, ...]) -> Any:
        xp = ctx.xp
        _, kernel, stride, padding, dilation, out = geometry
        views = _offset_views(_pad(xp, gx, padding, 0.0), kernel, stride, dilation, out)
        g = xp.zeros(hits.shape[1:], dtype=gx.dtype)
        for hit, view in zip(hits, views):
            g += xp.where(hit, view, 0)
        ctx.save_for_backward(hits)
        ctx.geometry = geometry
        return g

    @staticmethod
    def backward(ctx: Op, gg: Tensor) -> tuple[Tensor, None]:
        (hits,) = ctx.saved_tensors
        return MaxPoolScatter.apply(gg, hits, geometry=ctx.geometry), None


class SoftmaxCrossEntropy(Op):
    """loss_i = logsumexp(x_i) - x_i[t_i] for logits x (N, C) and class targets t (N,),
    through log-softmax so large logits stay finite. Rows whose target is ignore_index count
    neither in the loss nor in the mean; a target outside [0, C) gives NaN (checked on the
    device: no host round trip). gx = (softmax(x) - onehot(t)) * gy / count, one fused
    kernel in SoftmaxCrossEntropyGrad."""

    @staticmethod
    def forward(ctx: Op, x: Any, t: Any, ignore_index: int, reduction: str) -> Any:
        xp = ctx.xp
        logp = ctx.kernels.log_softmax_fwd(x)  # one pass per row (a fused kernel on CUDA)
        valid = t != ignore_index
        in_range = (t >= 0) & (t < x.shape[1])
        tc = xp.where(in_range, t, 0)
        nll = -xp.take_along_axis(logp, tc[:, None], axis=1)[:, 0]
        nll = xp.where(valid, xp.where(in_range, nll, xp.nan), 0).astype(x.dtype, copy=False)
        e = xp.exp(logp)  # the probabilities backward needs, kept instead of logp
        weight = valid.astype(x.dtype)
        ctx.inv_count = None
        if reduction == "none":
            loss = nll
        elif reduction == "sum":
            loss = nll.sum()
        else:
            with np.errstate(divide="ignore", invalid="ignore"):  # every row ignored: NaN
                ctx.inv_count = 1.0 / weight.sum()
                weight *= ctx.inv_count
                loss = nll.sum() * ctx.inv_count
        ctx.save_for_backward(x, e, tc, weight)
        ctx.reduction = reduction
        return loss

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> tuple[Tensor, None]:
        x, p, tc, weight = ctx.saved_tensors
        return SoftmaxCrossEntropyGrad.apply(x, gy, p, tc, weight, reduction=ctx.reduction,
                                             inv_count=ctx.inv_count), None


class SoftmaxCrossEntropyGrad(Op):
    """gx = (p - onehot(t)) * gy * w per row (w = 1/count or 1, 0 on ignored rows), p =
    softmax(x); one kernel call for a scalar gy. Inputs x and gy carry gradients: its
    backward is in Tensor ops, so second derivatives are recorded."""

    @staticmethod
    def forward(ctx: Op, x: Any, gy: Any, p: Any, tc: Any, weight: Any, reduction: str,
                inv_count: Any) -> Any:
        ctx.save_for_backward(x, gy, tc, weight)
        ctx.reduction = reduction
        if reduction == "none":
            w = gy * weight
            gx = p * w[:, None]
            gx[ctx.xp.arange(p.shape[0]), tc] -= w
            return gx
        # scale stays a device array: gy / count never makes a host round trip.
        scale = (gy if inv_count is None else gy * inv_count).reshape(1)
        gx = ctx.kernels.softmax_xent_bwd(p, tc, scale)
        gx *= (weight != 0)[:, None]  # ignored rows get no gradient
        return gx

    @staticmethod
    def backward(ctx: Op, ggx: Tensor) -> tuple[Any, Any, None, None, None]:
        x, gy, tc, weight = ctx.saved_tensors
        need_x, need_gy = ctx.needs_input_grad[:2]
        p = softmax(x, dim=1)
        onehot = Tensor._make(
            (ctx.xp.arange(x.shape[1]) == tc._data[:, None]).astype(x._data.dtype), ctx.backend)
        w = gy * weight
        gx = ggy = None
        if need_x:
            gx = (p * (ggx - _sum(ggx * p, 1, keepdim=True))) * w.unsqueeze(1)
        if need_gy:
            per_row = _sum(ggx * (p - onehot), 1) * weight
            ggy = per_row if ctx.reduction == "none" else per_row.sum()
        return gx, ggy, None, None, None


class BinaryCrossEntropy(Op):
    """loss = -(t log x + (1 - t) log(1 - x)) per element, each log clamped at -100 as in
    PyTorch. gx = gy (x - t) / max(x (1 - x), 1e-12), PyTorch's form rather than the
    derivative of the clamped logs: with x = sigmoid(z) subnormal in float32 (z between about
    -88.7 and -104), 1/x overflows and the gradient through sigmoid came out -inf.
    gt = gy (log(1 - x) - log x), the logs clamped as in forward."""

    @staticmethod
    def forward(ctx: Op, x: Any, t: Any) -> Any:
        log_x, log_1mx = _clamped_logs(ctx.xp, x)
        ctx.save_for_backward(x, t)
        return -(t * log_x + (1 - t) * log_1mx)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> tuple[Any, Any]:
        x, t = ctx.saved_tensors
        need_x, need_t = ctx.needs_input_grad
        gx = gt = None
        if need_x:
            gx = gy * (x - t) / maximum(x * (1.0 - x), 1e-12)
        if need_t:
            gt = gy * (_clamped_log(1.0 - x) - _clamped_log(x))
        return gx, gt


def _clamped_logs(xp: Any, x: Any) -> tuple[Any, Any]:
    with np.errstate(divide="ignore"):  # log 0 = -inf, clamped to -100
        return xp.maximum(xp.log(x), -100.0), xp.maximum(xp.log1p(-x), -100.0)


def _clamped_log(z: Tensor) -> Tensor:
    """max(log z, -100) in Tensor ops (for the target's gradient, and its own derivative):
    log only sees z >= the smallest subnormal, so neither log nor 1/z divides by zero."""
    tiny = float(np.finfo(z.dtype.np).smallest_subnormal)
    return z.clamp(min=tiny).log().clamp(min=-100.0)
