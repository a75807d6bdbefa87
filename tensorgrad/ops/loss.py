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
    device: no host round trip). The rows' losses, clamped targets and weights come from one
    fused kernel; gx = (p - onehot(t)) * gy * weight, one fused kernel in
    SoftmaxCrossEntropyGrad."""

    @staticmethod
    def forward(ctx: Op, x: Any, t: Any, ignore_index: int, reduction: str) -> Any:
        logp = ctx.kernels.log_softmax_fwd(x)  # one pass per row (a fused kernel on CUDA)
        nll, tc, weight = ctx.kernels.softmax_xent_fwd(logp, t, ignore_index)
        e = ctx.xp.exp(logp)  # the probabilities backward needs, kept instead of logp
        if reduction == "none":
            loss = nll
        elif reduction == "sum":
            loss = nll.sum()
        else:
            count, total = weight.sum(), nll.sum()  # not dot: cuBLAS refuses graph capture
            with np.errstate(divide="ignore", invalid="ignore"):  # every row ignored: 0 / 0
                loss = total / count
            # Every row ignored gives a NaN loss but gradients of 0, as in PyTorch: a batch of
            # padding leaves the weights as they were.
            weight /= ctx.xp.maximum(count, 1)
        ctx.save_for_backward(x, e, tc, weight)
        ctx.reduction = reduction
        return loss

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> tuple[Tensor, None]:
        x, p, tc, weight = ctx.saved_tensors
        return SoftmaxCrossEntropyGrad.apply(x, gy, p, tc, weight, reduction=ctx.reduction), None


class SoftmaxCrossEntropyGrad(Op):
    """gx = (p - onehot(t)) * gy * w per row (w = 1/count or 1, 0 on ignored rows), p =
    softmax(x); one kernel call after the per-row scale gy * w. Inputs x and gy carry
    gradients: its backward is in Tensor ops, so second derivatives are recorded."""

    @staticmethod
    def forward(ctx: Op, x: Any, gy: Any, p: Any, tc: Any, weight: Any, reduction: str) -> Any:
        ctx.save_for_backward(x, gy, tc, weight)
        ctx.reduction = reduction
        # The scale stays a device array: gy / count never makes a host round trip.
        return ctx.kernels.softmax_xent_bwd(p, tc, gy * weight)

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
