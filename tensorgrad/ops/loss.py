"""Losses that are ops of their own: the fused softmax cross-entropy with its fused backward
(SoftmaxCrossEntropyGrad, whose own backward is written in Tensor ops, so second derivatives
are recorded), and binary cross-entropy for PyTorch's backward formula (see its docstring).
The other losses are composites in tg.nn.functional."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tensor import Tensor
from ..autograd._op import Op
from .activation import softmax
from .arithmetic import maximum
from .reduction import sum as _sum


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
        # One comparison for 0 <= t < C: a negative target read as unsigned is above any C.
        in_range = t.view(f"u{t.dtype.itemsize}") < x.shape[1]
        tc = t * in_range  # class 0 for the rows out of range (a ufunc: no copy on replay)
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
                loss = nll.sum() * ctx.inv_count  # not dot: cuBLAS refuses CUDA graph capture
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
