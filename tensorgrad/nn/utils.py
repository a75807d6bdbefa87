"""Gradient utilities, as torch.nn.utils: clip_grad_norm_, clip_grad_value_, and grad_norms
for spotting vanishing or exploding gradients layer by layer.

Norms and clipping factors stay on the device: nothing here reads a value back to the host
except grad_norms, which returns Python floats and reads them in one transfer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .._tensor import Tensor
from ..autograd import no_grad
from ..ops.shape import stack
from .module import Module


def _grads(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _norm(g: Tensor, norm_type: float) -> Tensor:
    if norm_type == math.inf:
        return g.abs().amax()
    if norm_type == 2.0:
        return (g * g).sum().sqrt()
    return (g.abs() ** norm_type).sum() ** (1.0 / norm_type)


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float,
                    norm_type: float = 2.0) -> Tensor:
    """Scale all gradients together so that their joint norm is at most max_norm, in place;
    returns the norm before clipping (a 0-d tensor), as torch.nn.utils.clip_grad_norm_."""
    norm_type = float(norm_type)
    if norm_type <= 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be positive, got {norm_type}")
    grads = _grads(parameters)
    if not grads:
        from .._creation import tensor

        return tensor(0.0)
    first = grads[0]
    with no_grad():
        norms = stack([_norm(g, norm_type).to(device=first.device, dtype=first.dtype)
                       for g in grads])
        total = _norm(norms, norm_type)
        # min(max_norm / (total + 1e-6), 1) on the device: no host round trip per step.
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.to(device=g.device, dtype=g.dtype))
    return total


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place, as
    torch.nn.utils.clip_grad_value_."""
    clip_value = float(clip_value)
    with no_grad():
        for g in _grads(parameters):
            g.copy_(g.clamp(-clip_value, clip_value))


def grad_norms(module: Module) -> dict[str, float]:
    """{parameter name: L2 norm of its gradient} for the parameters that have one; read from
    the device in one transfer."""
    named = [(name, p.grad) for name, p in module.named_parameters() if p.grad is not None]
    if not named:
        return {}
    first = named[0][1]
    with no_grad():
        norms = stack([_norm(g, 2.0).to(device=first.device, dtype="float64")
                       for _, g in named])
    return dict(zip((name for name, _ in named), norms.tolist()))
