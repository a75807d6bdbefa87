"""tg.nn.functional (import as F): the layers and losses as functions, as torch.nn.functional.

Layers here are composites of core ops (batch_norm, dropout, embedding, the losses other
than cross-entropy) or wrappers of the ops in ops/fused.py (linear, layer_norm), ops/conv.py
(conv2d, avg_pool2d), ops/pooling.py (max_pool2d) and ops/loss.py (cross_entropy without class
weights, binary_cross_entropy). No Op class lives in nn/. The activations are the core's,
re-exported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .._creation import arange, ones, rand
from .._tensor import Tensor
from ..autograd import no_grad
from ..ops import attention as _attention
from ..ops import fused as _fused
from ..ops.activation import (
    elu,
    gelu,
    leaky_relu,
    log_softmax,
    relu,
    sigmoid,
    silu,
    softmax,
    softplus,
    tanh,
)
from ..ops.arithmetic import where
from ..ops.conv import Unfold, window_out_size
from ..ops.loss import BinaryCrossEntropy, SoftmaxCrossEntropy
from ..ops.pooling import MaxPool
from ..ops.shape import pad

_REDUCTIONS = ("mean", "sum", "none")


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{what} must be an int or a pair of ints, got {value!r}")


def _check_tensor(x: Any, what: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} expects a Tensor, got {type(x).__name__}")


def _check_reduction(reduction: str, what: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{what}: reduction must be 'mean', 'sum' or 'none', got "
                         f"{reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


# ---- layers ---------------------------------------------------------------------------------
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input @ weight.T + bias, as torch.nn.functional.linear."""
    _check_tensor(input, "linear")
    if input.ndim == 0 or input.shape[-1] != weight.shape[-1]:
        raise ValueError(f"linear: expected input with {weight.shape[-1]} features in its last "
                         f"dim, got input of shape {input.shape}")
    return _fused.linear(input, weight, bias)


def _window_args(kernel_size: Any, stride: Any, padding: Any, dilation: Any, what: str
                 ) -> tuple[tuple[int, int], ...]:
    kernel = _pair(kernel_size, f"{what}: kernel_size")
    stride = kernel if stride is None else _pair(stride, f"{what}: stride")
    padding = _pair(padding, f"{what}: padding")
    dilation = _pair(dilation, f"{what}: dilation")
    if min(*kernel, *stride, *dilation) <= 0 or min(padding) < 0:
        raise ValueError(f"{what}: kernel_size, stride and dilation must be positive and "
                         f"padding non-negative, got kernel_size={kernel}, stride={stride}, "
                         f"padding={padding}, dilation={dilation}")
    return kernel, stride, padding, dilation


def _out_size(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int],
              padding: tuple[int, int], dilation: tuple[int, int], what: str) -> tuple[int, int]:
    ho = window_out_size(x.shape[2], kernel[0], stride[0], padding[0], dilation[0])
    wo = window_out_size(x.shape[3], kernel[1], stride[1], padding[1], dilation[1])
    if ho <= 0 or wo <= 0:
        raise ValueError(f"{what}: input of shape {x.shape} is too small for kernel {kernel} "
                         f"with padding {padding} and dilation {dilation}")
    return ho, wo


def _batched_4d(x: Tensor, what: str) -> tuple[Tensor, bool]:
    """(N, C, H, W) input; a 3-d (C, H, W) input gets a batch dim, dropped again on output."""
    _check_tensor(x, what)
    if x.ndim == 3:
        return x.unsqueeze(0), True
    if x.ndim != 4:
        raise ValueError(f"{what}: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got "
                         f"shape {x.shape}")
    return x, False


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
    """2-d cross-correlation, as torch.nn.functional.conv2d (groups=1): im2col with one
    matrix product."""
    x, unbatched = _batched_4d(input, "conv2d")
    if groups != 1:
        raise ValueError(f"conv2d: only groups=1 is supported, got groups={groups}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-d (out_channels, in_channels, kh, kw), got "
                         f"shape {weight.shape}")
    if padding == "valid":
        padding = 0
    out_channels, in_channels, kh, kw = weight.shape
    if x.shape[1] != in_channels:
        raise ValueError(f"conv2d: expected input with {in_channels} channels, got input of "
                         f"shape {input.shape} ({x.shape[1]} channels)")
    kernel, stride, padding, dilation = _window_args((kh, kw), stride, padding, dilation,
                                                     "conv2d")
    ho, wo = _out_size(x, kernel, stride, padding, dilation, "conv2d")
    n = x.shape[0]
    cols = Unfold.apply(x, kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"conv2d: bias must have shape ({out_channels},), one per output "
                         f"channel, got {bias.shape}")
    out = _fused.linear(cols.reshape(n * ho * wo, in_channels * kh * kw),
                        weight.reshape(out_channels, -1), bias)
    out = out.reshape(n, ho, wo, out_channels).permute(0, 3, 1, 2)
    return out.squeeze(0) if unbatched else out


def _pool_windows(x: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
                  pad_value: float, what: str) -> Tensor:
    """Every pooling window of x (N, C, H, W) as (N, C, Ho, Wo, kh * kw)."""
    kernel, stride, padding, dilation = _window_args(kernel_size, stride, padding, dilation,
                                                     what)
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ValueError(f"{what}: padding {padding} should be at most half of the kernel size "
                         f"{kernel}")
    ho, wo = _out_size(x, kernel, stride, padding, dilation, what)
    n, c, h, w = x.shape
    cols = Unfold.apply(x.reshape(n * c, 1, h, w), kernel=kernel, stride=stride,
                        padding=padding, dilation=dilation, pad_value=pad_value)
    return cols.reshape(n, c, ho, wo, kernel[0] * kernel[1])


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1) -> Tensor:
    """Maximum over each window, as torch.nn.functional.max_pool2d (floor mode). The gradient
    goes to the first maximum of each window."""
    x, unbatched = _batched_4d(input, "max_pool2d")
    if not x.dtype.is_floating_point:
        raise TypeError(f"max_pool2d needs a floating-point input, got {x.dtype.name}")
    kernel, stride, padding, dilation = _window_args(kernel_size, stride, padding, dilation,
                                                     "max_pool2d")
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ValueError(f"max_pool2d: padding {padding} should be at most half of the kernel "
                         f"size {kernel}")
    size = _out_size(x, kernel, stride, padding, dilation, "max_pool2d")
    out = MaxPool.apply(x, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                        out=size)
    return out.squeeze(0) if unbatched else out


def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               count_include_pad: bool = True) -> Tensor:
    """Mean over each window, as torch.nn.functional.avg_pool2d (floor mode); padding zeros
    count in the mean unless count_include_pad=False."""
    x, unbatched = _batched_4d(input, "avg_pool2d")
    windows = _pool_windows(x, kernel_size, stride, padding, 1, 0.0, "avg_pool2d")
    if count_include_pad:
        out = windows.mean(dim=-1)
    else:
        inside = _pool_windows(ones(1, 1, *x.shape[2:], dtype=x.dtype, device=x.device),
                               kernel_size, stride, padding, 1, 0.0, "avg_pool2d")
        out = windows.sum(dim=-1) / inside.sum(dim=-1)
    return out.squeeze(0) if unbatched else out


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (inverted dropout),
    as torch.nn.functional.dropout; the mask comes from the device's generator, seeded by
    tg.manual_seed. Identity when not training."""
    _check_tensor(input, "dropout")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not input.dtype.is_floating_point:
        raise TypeError(f"dropout: input must be floating point, got {input.dtype.name}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = rand(*input.shape, dtype=input.dtype, device=input.device) >= p
    return input * (keep.to(dtype=input.dtype) * (1.0 / (1.0 - p)))


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize over every dim but the channel dim 1, as torch.nn.functional.batch_norm.
    Training uses the batch statistics (biased variance) and updates the running ones in place
    (unbiased variance, as PyTorch); evaluation uses the running statistics."""
    _check_tensor(input, "batch_norm")
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected an input with at least 2 dims (N, C, ...), got "
                         f"shape {input.shape}")
    dims = (0,) + tuple(range(2, input.ndim))
    shape = _channel_shape(input)
    dtype = input.dtype
    input = _float32_if_half(input)
    if training:
        count = input.numel() // input.shape[1]
        if count <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when "
                             f"training, got input of shape {input.shape}")
        mean = input.mean(dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dims, keepdim=True)
        if running_mean is not None and running_var is not None:
            with no_grad():
                running_mean.mul_(1.0 - momentum).add_(mean.reshape(-1) * momentum)
                unbiased = var.reshape(-1) * (count / (count - 1))
                running_var.mul_(1.0 - momentum).add_(unbiased * momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when not "
                             "training")
        centered = input - running_mean.reshape(shape)
        var = running_var.reshape(shape)
    out = (centered / (var + eps).sqrt()).to(dtype=dtype)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def _float32_if_half(x: Tensor) -> Tensor:
    # Normalization squares its input, which overflows float16 from |x| = 256 on; PyTorch
    # computes these statistics in float32 as well.
    return x.to(dtype="float32") if x.dtype.name == "float16" else x


def layer_norm(input: Tensor, normalized_shape: Sequence[int], weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize over the last len(normalized_shape) dims, as torch.nn.functional.layer_norm."""
    _check_tensor(input, "layer_norm")
    normalized_shape = ((normalized_shape,) if isinstance(normalized_shape, int)
                        else tuple(normalized_shape))
    k = len(normalized_shape)
    if tuple(input.shape[input.ndim - k:]) != normalized_shape or input.ndim < k:
        raise ValueError(f"layer_norm: expected an input whose last dims are "
                         f"{normalized_shape}, got shape {input.shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != normalized_shape:
            raise ValueError(f"layer_norm: {name} must have the normalized shape "
                             f"{normalized_shape}, got {t.shape}")
    return _fused.layer_norm(input, k, weight, bias, eps)


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of weight picked by integer indices, as torch.nn.functional.embedding; the row
    padding_idx receives no gradient."""
    _check_tensor(input, "embedding")
    if input.dtype.is_floating_point or input.dtype.name == "bool":
        raise TypeError(f"embedding: indices must be an integer tensor, got {input.dtype.name}")
    rows, i = weight.shape[0], input._data
    input._backend.check(lambda: (i >= 0) & (i < rows), lambda: IndexError(
        f"embedding: index {i[(i < 0) | (i >= rows)].flat[0]} is out of range for {rows} rows"))
    out = weight[input]
    if padding_idx is not None:
        keep = (input != padding_idx).unsqueeze(-1)
        out = where(keep, out, out.detach())
    return out


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None) -> Tensor:
    """softmax(q k^T scale + mask) v, as torch.nn.functional.scaled_dot_product_attention:
    one op that keeps the softmax output for backward, not the scores or a mask copy."""
    return _attention.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p,
                                                    is_causal, scale)


# ---- losses ---------------------------------------------------------------------------------
def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error, as torch.nn.functional.mse_loss."""
    _check_reduction(reduction, "mse_loss")
    _check_tensor(input, "mse_loss")
    if isinstance(target, Tensor) and target.shape != input.shape:
        raise ValueError(f"mse_loss: input shape {input.shape} and target shape "
                         f"{target.shape} differ")
    diff = input - target
    return _reduce(diff * diff, reduction)


def _class_layout(input: Tensor, target: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """Logits as (N, C) and targets as (N,), from (C,)/(), (N, C)/(N,) or (N, C, d...)/(N, d...)."""
    _check_tensor(input, what)
    _check_tensor(target, what)
    if target.dtype.is_floating_point or target.dtype.name == "bool":
        raise TypeError(f"{what}: target must hold class indices (int64), got "
                        f"{target.dtype.name}")
    if not input.dtype.is_floating_point:
        raise TypeError(f"{what}: input must be floating point (scores per class), got "
                        f"{input.dtype.name}")
    if input.ndim == 0:
        raise ValueError(f"{what}: input must have a class dim, got a 0-d tensor")
    expected = input.shape[:1] + input.shape[2:] if input.ndim > 1 else ()
    if target.shape != expected:
        raise ValueError(f"{what}: for input of shape {input.shape} the target must have shape "
                         f"{expected}, got {target.shape}")
    c = input.shape[1] if input.ndim > 1 else input.shape[0]
    if input.ndim == 1:
        return input.reshape(1, c), target.reshape(1)
    if input.ndim > 2:
        input = input.permute(0, *range(2, input.ndim), 1)
    return input.reshape(-1, c), target.reshape(-1)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Cross-entropy of logits against class indices, as torch.nn.functional.cross_entropy.
    Through log-softmax (finite for any finite logits); without class weights the forward and
    the backward are one op each, the backward one fused kernel."""
    _check_reduction(reduction, "cross_entropy")
    if weight is not None:
        return nll_loss(log_softmax(input, 1 if input.ndim > 1 else 0), target, weight,
                        ignore_index, reduction)
    x, t = _class_layout(input, target, "cross_entropy")
    _check_classes(t, x.shape[1], ignore_index, "cross_entropy")
    if x.shape[1] == 0 and x.shape[0]:  # where the check above is skipped (CUDA, a capture)
        raise IndexError("cross_entropy: the input has no classes (C = 0), so no target is "
                         "in range")
    loss = SoftmaxCrossEntropy.apply(x, t.long(), ignore_index=ignore_index,
                                     reduction=reduction)
    return loss.reshape(target.shape) if reduction == "none" else loss


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
             ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities at class indices, as
    torch.nn.functional.nll_loss; the weighted mean divides by the weights of the kept rows.
    A target outside [0, C) raises on the CPU and gives NaN on CUDA (see Backend.check)."""
    _check_reduction(reduction, "nll_loss")
    x, t = _class_layout(input, target, "nll_loss")
    n, c = x.shape
    _check_classes(t, c, ignore_index, "nll_loss")
    valid = t != ignore_index
    in_range = (t >= 0) & (t < c)
    tc = where(in_range, t, 0)
    # An ignored row picks 0 whatever x holds there (-inf * 0 is NaN), and its loss is the
    # constant 0, which passes no gradient: a mean over no kept rows (0 / 0) is NaN with
    # gradients of 0, as in PyTorch.
    picked = where(valid, x[arange(n, device=x.device), tc], 0.0)
    w = valid.to(dtype=x.dtype)
    if weight is not None:
        if weight.shape != (c,):
            raise ValueError(f"nll_loss: weight must have shape ({c},), got {weight.shape}")
        w = w * weight[tc]
    loss = where(valid, where(in_range, -picked * w, math.nan), 0.0)
    if reduction == "none":
        return loss.reshape(target.shape)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / w.sum()


def _check_classes(target: Tensor, classes: int, ignore_index: int, what: str) -> None:
    t = target._data

    def error() -> Exception:
        bad = t[((t < 0) | (t >= classes)) & (t != ignore_index)]
        return IndexError(f"{what}: target {bad.flat[0]} is out of bounds for {classes} "
                          f"classes (and is not ignore_index={ignore_index})")

    target._backend.check(lambda: ((t >= 0) & (t < classes)) | (t == ignore_index), error)


def _check_same_shape(input: Tensor, target: Any, what: str) -> None:
    _check_tensor(input, what)
    if not isinstance(target, Tensor) or target.shape != input.shape:
        got = target.shape if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"{what}: target must be a tensor of the input's shape {input.shape}, "
                         f"got {got}")


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         reduction: str = "mean") -> Tensor:
    """-(t log x + (1 - t) log(1 - x)) for probabilities x, each log clamped at -100 as in
    PyTorch, so x = 0 or 1 gives a finite loss; as torch.nn.functional.binary_cross_entropy."""
    _check_reduction(reduction, "binary_cross_entropy")
    _check_same_shape(input, target, "binary_cross_entropy")
    for name, t in (("input", input), ("target", target)):
        t._backend.check(lambda a=t._data: (a >= 0) & (a <= 1), lambda name=name: ValueError(
            f"binary_cross_entropy: every element of {name} must be between 0 and 1 (a "
            "probability); for logits use binary_cross_entropy_with_logits"))
    if target._data.dtype != input._data.dtype:
        target = target.to(dtype=input.dtype)
    loss = BinaryCrossEntropy.apply(input, target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,
                                     weight: Tensor | None = None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """Binary cross-entropy of sigmoid(x), as torch.nn.functional.
    binary_cross_entropy_with_logits, in the stable form (1 - t) x + softplus(-x) that never
    forms sigmoid(x) and stays finite for any x."""
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    _check_same_shape(input, target, "binary_cross_entropy_with_logits")
    log_weight = 1.0 if pos_weight is None else (pos_weight - 1.0) * target + 1.0
    loss = (1.0 - target) * input + log_weight * softplus(-input)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


__all__ = ["avg_pool2d", "batch_norm", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "conv2d", "cross_entropy", "dropout", "elu",
           "embedding", "gelu", "layer_norm", "leaky_relu", "linear", "log_softmax",
           "max_pool2d", "mse_loss", "nll_loss", "pad", "relu", "scaled_dot_product_attention",
           "sigmoid", "silu", "softmax", "softplus", "tanh"]
