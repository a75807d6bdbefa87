"""Autograd: backward, tg.grad, grad modes, user Functions, gradcheck, anomaly detection.

The graph machinery here knows nothing about particular ops.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import Any

from .._tensor import Tensor
from ._engine import run_backward
from ._function import Function, FunctionCtx
from ._grad_mode import (
    detect_anomaly,
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from ._gradcheck import GradcheckError, gradcheck
from ._op import Op, once_differentiable

__all__ = ["Function", "FunctionCtx", "GradcheckError", "Op", "backward", "detect_anomaly",
           "enable_grad", "grad", "gradcheck", "inference_mode", "is_grad_enabled", "no_grad",
           "once_differentiable", "set_grad_enabled"]


def _root_grads(outputs: Sequence[Tensor], grad_outputs: Sequence[Any] | None
                ) -> list[Tensor]:
    grads = []
    given = [None] * len(outputs) if grad_outputs is None else list(grad_outputs)
    if len(given) != len(outputs):
        raise ValueError(f"got {len(given)} grad_outputs for {len(outputs)} outputs")
    for out, g in zip(outputs, given):
        if not isinstance(out, Tensor):
            raise TypeError(f"backward needs Tensors, got {type(out).__name__}")
        if not out.requires_grad:
            raise RuntimeError("element of the outputs does not require grad and has no "
                               "grad_fn: nothing to differentiate (did you forget "
                               "requires_grad=True, or run under no_grad?)")
        if g is None:
            if out._data.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for outputs with one "
                                   f"element; this output has shape {out.shape}: pass "
                                   f"gradient= (backward) or grad_outputs= (tg.grad)")
            backend = out._backend
            # On a second GPU the ones must be made there, not on the current device.
            with contextlib.nullcontext() if backend.switch is None else backend.switch():
                g = Tensor._make(backend.xp.ones(out.shape, out._data.dtype), backend)
        elif not isinstance(g, Tensor):
            g = Tensor(g, dtype=out.dtype, device=out.device)
        if g.shape != out.shape:
            raise ValueError(f"gradient has shape {g.shape} but the output has shape "
                             f"{out.shape}")
        if g._backend is not out._backend:
            raise RuntimeError(f"gradient on {g.device} for an output on {out.device}")
        if g._data.dtype != out._data.dtype:
            g = g.to(dtype=out.dtype)
        grads.append(g)
    return grads


def backward(tensors: Tensor | Sequence[Tensor], grad_tensors: Any = None,
             retain_graph: bool | None = None, create_graph: bool = False) -> None:
    """Accumulate into .grad of the leaves the tensors depend on, as torch.autograd.backward."""
    outputs = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if grad_tensors is not None and isinstance(tensors, Tensor) and not isinstance(
            grad_tensors, (list, tuple)):
        grad_tensors = [grad_tensors]
    grads = _root_grads(outputs, grad_tensors)
    if create_graph:  # as PyTorch warns
        warnings.warn(
            "backward(create_graph=True) makes a reference cycle between each leaf and its "
            ".grad, whose graph holds the leaf: both stay alive until the cycle collector "
            "runs. tg.grad(..., create_graph=True) returns the gradients without one; or set "
            "the leaves' .grad to None when done with them.", UserWarning, stacklevel=2)
    run_backward(outputs, grads, create_graph if retain_graph is None else retain_graph,
                 create_graph)


def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
         grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple[Any, ...]:
    """Gradients of outputs with respect to inputs, returned rather than accumulated, as
    torch.autograd.grad; create_graph=True makes them differentiable."""
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is not None and isinstance(outputs, Tensor) and not isinstance(
            grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    for t in ins:
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError("every input of tg.grad must be a Tensor that requires grad")
    capture: dict[Any, Any] = {}
    keys = [id(t) if t._grad_fn is None else (t._grad_fn, t._out_idx) for t in ins]
    for key in keys:
        capture[key] = None
    run_backward(outs, _root_grads(outs, grad_outputs),
                 create_graph if retain_graph is None else retain_graph, create_graph, capture)
    result = []
    for key in keys:
        g = capture[key]
        if g is None and not allow_unused:
            raise RuntimeError("one of the inputs was not used to compute the outputs; pass "
                               "allow_unused=True to get None for it")
        if g is not None and not create_graph:
            g = g.detach()
        result.append(g)
    return tuple(result)
