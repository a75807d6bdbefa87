"""Every op of op_db against central differences in float64, on every device: first order,
and second order (the gradient of tg.grad(..., create_graph=True)) where the op promises it."""

from __future__ import annotations

import numpy as np
import pytest
from op_db import OPS, OpSpec, sample_inputs

import tensorgrad as tg


def _outputs(out: object) -> list[tg.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


CHECKED = [spec for spec in OPS if spec.gradcheck]


@pytest.mark.parametrize("spec", CHECKED, ids=lambda s: s.name)
def test_gradient_matches_central_differences(spec: OpSpec, device: str,
                                              rng: np.random.Generator) -> None:
    for sample in spec.samples:
        inputs = sample_inputs(spec, sample, rng, device=device)
        tg.autograd.gradcheck(lambda *xs, s=sample: spec.call(tg, list(xs), s), inputs,
                              eps=spec.eps)


def _once_differentiable_ops(outs: list[tg.Tensor]) -> set[str]:
    """Names of the recorded ops behind outs whose backward is marked once_differentiable."""
    marked, seen = set(), set()
    stack = [o.grad_fn for o in outs if o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if getattr(type(node).backward, "once_differentiable", False):
            marked.add(node.name())
        stack.extend(p for p in node.parents if isinstance(p, tg.autograd.Op))
    return marked


@pytest.mark.parametrize("spec", CHECKED, ids=lambda s: s.name)
def test_second_order_matches_central_differences(spec: OpSpec, device: str,
                                                  rng: np.random.Generator) -> None:
    """Every op either has a correct second derivative or is marked once_differentiable, and
    then differentiating its gradient raises instead of treating it as a constant."""
    for sample in spec.samples:
        inputs = sample_inputs(spec, sample, rng, device=device)
        n = len(inputs)
        outs = _outputs(spec.call(tg, inputs, sample))
        # The upstream gradients are inputs too (as in PyTorch's gradgradcheck), so that the
        # first-order gradients of linear ops still depend on something that requires grad.
        vs = [tg.tensor(rng.standard_normal(o.shape), dtype=tg.float64, device=device,
                        requires_grad=True) for o in outs]

        def first_order(*args: tg.Tensor, n: int = n, s: tuple = sample) -> tuple:
            xs, gs = list(args[:n]), list(args[n:])
            grads = tg.grad(_outputs(spec.call(tg, xs, s)), xs, grad_outputs=gs,
                            create_graph=True, allow_unused=True)
            return tuple(g for g in grads if g is not None)

        marked = _once_differentiable_ops(outs)
        if marked:
            grads = first_order(*inputs, *vs)
            with pytest.raises(RuntimeError, match="once_differentiable"):
                tg.grad([g.sum() for g in grads], inputs + vs, allow_unused=True)
        else:
            tg.autograd.gradcheck(first_order, inputs + vs, eps=spec.eps)


@pytest.mark.parametrize("spec", CHECKED, ids=lambda s: s.name)
def test_second_order_with_a_constant_upstream_gradient(spec: OpSpec, device: str,
                                                        rng: np.random.Generator) -> None:
    """The usual double backward (a Hessian-vector product): the upstream gradients need no
    gradient, so each backward op runs with only its inputs' gradients asked for."""
    sample = spec.samples[0]
    inputs = sample_inputs(spec, sample, rng, device=device)
    outs = _outputs(spec.call(tg, inputs, sample))
    if _once_differentiable_ops(outs):
        return
    ws = [tg.tensor(rng.standard_normal(o.shape), dtype=tg.float64, device=device)
          for o in outs]

    def first_order(*xs: tg.Tensor) -> tuple:
        grads = tg.grad(_outputs(spec.call(tg, list(xs), sample)), list(xs), grad_outputs=ws,
                        create_graph=True, allow_unused=True)
        return tuple(g for g in grads if g is not None and g.requires_grad)

    if first_order(*inputs):
        tg.autograd.gradcheck(first_order, inputs, eps=spec.eps)
