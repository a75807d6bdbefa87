"""Matrix products. The backend does the multiplication so that the CUDA backend can route it
through a capture-safe cuBLAS call."""

from __future__ import annotations

from typing import Any

from .._tensor import Tensor
from ..autograd._op import Op
from ._broadcast import sum_to
from .arithmetic import _operands


class MatMul(Op):
    """z = a @ b for a, b with at least 2 dims (batch dims broadcast);
    ga = gz @ b^T, gb = a^T @ gz, summed over broadcast batch dims."""

    @staticmethod
    def forward(ctx: Op, a: Any, b: Any) -> Any:
        ctx.save_for_backward(a, b)
        return ctx.backend.matmul(a, b)

    @staticmethod
    def backward(ctx: Op, gz: Tensor) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = sum_to(matmul(gz, b.mT), a.shape) if need_a else None
        gb = sum_to(matmul(a.mT, gz), b.shape) if need_b else None
        return ga, gb


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy's rules for 1-D and batched operands, as torch.matmul."""
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("matmul needs two tensors")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dim, got shapes {a.shape} "
                         f"and {b.shape}")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
                         f"({a.shape[-1]} != {b.shape[-2 if b.ndim > 1 else 0]})")
    a, b = _operands(a, b)
    a2 = a.unsqueeze(0) if a.ndim == 1 else a
    b2 = b.unsqueeze(-1) if b.ndim == 1 else b
    try:
        z = MatMul.apply(a2, b2)
    except ValueError as err:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not broadcast: {err}"
                         ) from None
    if b.ndim == 1:
        z = z.squeeze(-1)
    if a.ndim == 1:
        z = z.squeeze(-2 if b.ndim > 1 else -1) if z.ndim else z
    return z
