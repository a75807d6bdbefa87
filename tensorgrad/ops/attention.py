"""Attention: scaled dot-product attention as one op, and tril / triu (the masks it is built
with elsewhere).

Attention's forward is one op over raw arrays: the scores, the mask, the row softmax (one
kernel pass per row, the causal mask applied inside the kernel, so no (L, S) array is built on
CUDA), dropout and the product with v. It keeps q, k, v, the softmax output and the dropout
mask; never the scores. Its backward is written in Tensor ops around SoftmaxGrad, so
create_graph records it; under create_graph it rebuilds the softmax output from q and k as a
recorded op (the saved one is a constant), which is why the mask input is referenced too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._creation import rand
from .._tensor import Tensor
from ..autograd._grad_mode import grad_enabled
from ..autograd._op import Op
from ._broadcast import sum_to
from .activation import SoftmaxGrad
from .linalg import matmul


def _scores(ctx: Op, q: Any, k: Any, mask: Any, scale: float) -> Any:
    """q k^T scale with the mask applied: added (float) or -inf where False (bool)."""
    xp = ctx.xp
    s = ctx.backend.matmul(q, xp.swapaxes(k, -1, -2))
    s *= s.dtype.type(scale)
    if mask is None:
        return s
    if mask.dtype == np.bool_:
        return xp.where(mask, s, s.dtype.type(-np.inf))
    if np.broadcast_shapes(s.shape, mask.shape) == s.shape:
        s += mask
        return s
    return s + mask


class AttentionSoftmax(Op):
    """p = softmax over the last axis with query row i (of L per matrix) seeing columns j <= i
    when causal_rows = L, and a row with nothing left all zeros (PyTorch's attention); the
    gradient is SoftmaxGrad's. Used to rebuild p as a recorded op under create_graph."""

    @staticmethod
    def forward(ctx: Op, s: Any, causal_rows: int) -> Any:
        p = ctx.kernels.softmax_fwd(s, causal_rows=causal_rows, masked_zero=True)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx: Op, gp: Tensor) -> Tensor:
        (p,) = ctx.saved_tensors
        return SoftmaxGrad.apply(p, gp, dim=-1)


class Attention(Op):
    """y = (softmax(q k^T scale + mask) * keep / (1 - dropout_p)) v for q (..., L, E),
    k (..., S, E), v (..., S, Ev); the batch dims broadcast. With return_weights the dropped
    weights are a second output. gv = pd^T gy; gs = SoftmaxGrad(p, (gy v^T) keep / (1 - p));
    gq = gs k scale; gk = gs^T q scale; an additive mask gets gs."""

    @staticmethod
    def forward(ctx: Op, q: Any, k: Any, v: Any, mask: Any, keep: Any, scale: float,
                causal: bool, dropout_p: float, return_weights: bool) -> Any:
        s = _scores(ctx, q, k, mask, scale)
        causal_rows = q.shape[-2] if causal else 0
        p = ctx.kernels.softmax_fwd(s, causal_rows=causal_rows, masked_zero=True, out=s)
        pd = p
        if keep is not None:
            pd = p * keep
            pd *= pd.dtype.type(_keep_scale(dropout_p))
        y = ctx.backend.matmul(pd, v)
        ctx.save_for_backward(q, k, v, p, mask, keep)
        ctx.scale, ctx.causal_rows, ctx.dropout_p = scale, causal_rows, dropout_p
        return (y, pd) if return_weights else y

    @staticmethod
    def backward(ctx: Op, gy: Tensor, gw: Tensor | None = None) -> tuple[Any, ...]:
        q, k, v, p, mask, keep = ctx.saved_tensors
        need_q, need_k, need_v, need_mask = ctx.needs_input_grad[:4]
        scale = ctx.scale
        if grad_enabled.get():  # create_graph: p as a recorded function of q, k and the mask
            s = matmul(q, k.mT) * scale
            if mask is not None:
                s = s + mask if mask.dtype.is_floating_point else s.masked_fill(~mask, -math.inf)
            p = AttentionSoftmax.apply(s, causal_rows=ctx.causal_rows)
        drop = None if keep is None else keep.to(dtype=p.dtype) * _keep_scale(ctx.dropout_p)
        gq = gk = gv = gmask = None
        if need_v:
            pd = p if drop is None else p * drop
            gv = sum_to(matmul(pd.mT, gy), v.shape)
        if need_q or need_k or need_mask:
            gpd = matmul(gy, v.mT)
            if gw is not None:
                gpd = gpd + gw
            gs = SoftmaxGrad.apply(p, gpd if drop is None else gpd * drop, dim=-1)
            if need_mask:
                gmask = sum_to(gs, mask.shape)
            gs = gs * scale
            if need_q:
                gq = sum_to(matmul(gs, k), q.shape)
            if need_k:
                gk = sum_to(matmul(gs.mT, q), k.shape)
        return gq, gk, gv, gmask, None


def _keep_scale(dropout_p: float) -> float:
    # Everything dropped (p = 1) is zeros, not 0 * inf.
    return 0.0 if dropout_p >= 1.0 else 1.0 / (1.0 - dropout_p)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 need_weights: bool = False) -> Any:
    """softmax(q k^T scale + mask) v, as torch.nn.functional.scaled_dot_product_attention.

    attn_mask is bool (True takes part) or float (added to the scores) and broadcasts over
    the batch and head dims; is_causal masks the future (top-left aligned, as PyTorch). A query
    row with every key masked gives zeros. need_weights=True also returns the attention
    weights (after dropout), as nn.MultiheadAttention needs.
    """
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"scaled_dot_product_attention: {name} must be a Tensor, got "
                            f"{type(t).__name__}")
        if t.ndim < 2:
            raise ValueError(f"scaled_dot_product_attention: {name} needs at least 2 dims "
                             f"(..., length, features), got shape {t.shape}")
        if not t.dtype.is_floating_point or t.dtype != query.dtype:
            raise TypeError(f"scaled_dot_product_attention: query, key and value must have "
                            f"one floating-point dtype, got {query.dtype.name}, "
                            f"{key.dtype.name} and {value.dtype.name}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: query (..., L, E), key (..., S, E) "
                         f"and value (..., S, Ev) do not fit: shapes {query.shape}, "
                         f"{key.shape} and {value.shape}")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must be between 0 and 1, "
                         f"got {dropout_p}")
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: pass either attn_mask or "
                         "is_causal=True, not both")
    lead = np.broadcast_shapes(query.shape[:-2], key.shape[:-2])
    shape = (*lead, query.shape[-2], key.shape[-2])
    if attn_mask is not None:
        if not isinstance(attn_mask, Tensor):
            raise TypeError(f"scaled_dot_product_attention: attn_mask must be a Tensor, got "
                            f"{type(attn_mask).__name__}")
        if attn_mask.dtype.name != "bool" and attn_mask.dtype != query.dtype:
            raise TypeError(f"scaled_dot_product_attention: attn_mask must be bool or of the "
                            f"query's dtype {query.dtype.name}, got {attn_mask.dtype.name}")
        try:
            shape = np.broadcast_shapes(shape, attn_mask.shape)
        except ValueError:
            raise ValueError(f"scaled_dot_product_attention: attn_mask of shape "
                             f"{attn_mask.shape} does not broadcast to the scores' shape "
                             f"{shape}") from None
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    keep = None
    if dropout_p > 0.0:
        keep = rand(*shape, dtype=query.dtype, device=query.device) >= dropout_p
    return Attention.apply(query, key, value, attn_mask, keep, scale=float(scale),
                           causal=bool(is_causal), dropout_p=float(dropout_p),
                           return_weights=need_weights)


class Tril(Op):
    """y = x with the elements above diagonal d of the last two dims zeroed (lower=True), or
    those below it (lower=False); linear, so gx is the same selection of gy."""

    @staticmethod
    def forward(ctx: Op, x: Any, diagonal: int, lower: bool) -> Any:
        ctx.diagonal, ctx.lower = diagonal, lower
        return ctx.xp.tril(x, diagonal) if lower else ctx.xp.triu(x, diagonal)

    @staticmethod
    def backward(ctx: Op, gy: Tensor) -> Tensor:
        return Tril.apply(gy, diagonal=ctx.diagonal, lower=ctx.lower)


def _triangle(x: Tensor, diagonal: int, lower: bool, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} expects a Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{what}: input needs at least 2 dims, got shape {x.shape}")
    return Tril.apply(x, diagonal=int(diagonal), lower=lower)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """The lower triangle (j <= i + diagonal) of the last two dims, the rest 0, as torch.tril."""
    return _triangle(input, diagonal, True, "tril")


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """The upper triangle (j >= i + diagonal) of the last two dims, the rest 0, as torch.triu."""
    return _triangle(input, diagonal, False, "triu")


__all__ = ["scaled_dot_product_attention", "tril", "triu"]
