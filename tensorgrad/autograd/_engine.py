"""The backward walk: reverse topological order over the recorded graph, without recursion.

Every node has a sequence number from one global counter, and an op is always recorded after
the ops that produced its inputs, so newest-first is a topological order: when a node comes off
a max-heap of sequence numbers, every consumer that can send it a gradient has already run
(any that has not would sit higher in the heap, or behind one that does). So no separate pass
has to count dependencies, nodes that receive no gradient are never visited, and the order,
and with it every floating-point sum, is deterministic. Pending gradients live in a dict keyed
by node and are dropped as soon as the node has run.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from .._tensor import Tensor
from ._grad_mode import anomaly_enabled, grad_enabled
from ._op import _FREED_MESSAGE, Op, _check_finite


def run_backward(roots: Sequence[Tensor], root_grads: Sequence[Tensor], retain_graph: bool,
                 create_graph: bool, capture: dict[Any, Any] | None = None) -> None:
    """Send root_grads back from roots. With `capture` (tg.grad), the gradients reaching the
    keys (leaf tensors by id, non-leaf tensors by (node, output index)) are stored there and no
    leaf's .grad is touched; otherwise every leaf that requires grad accumulates into .grad."""
    token = grad_enabled.set(create_graph)
    try:
        _walk(roots, root_grads, retain_graph, create_graph, capture)
    finally:
        grad_enabled.reset(token)


def _walk(roots: Sequence[Tensor], root_grads: Sequence[Tensor], retain_graph: bool,
          create_graph: bool, capture: dict[Any, Any] | None) -> None:
    pending: dict[Op, list[Any]] = {}
    ready: list[tuple[int, Op]] = []  # (-sequence number, node): a max-heap on sequence
    handed_out: set[int] = set()  # ids of arrays already stored as some leaf's .grad
    keep_alive: list[Any] = []     # keeps those ids from being reused during the walk
    heappop, heappush = heapq.heappop, heapq.heappush

    for root, grad in zip(roots, root_grads):
        node = root._grad_fn
        if node is None:
            _to_leaf(root, grad, create_graph, capture, handed_out, keep_alive)
            continue
        slots = pending.get(node)
        if slots is None:
            slots = pending[node] = [None] * (1 if node.out_meta is None else len(node.out_meta))
            heappush(ready, (-node.seq, node))
        index = root._out_idx
        slots[index] = grad if slots[index] is None else slots[index] + grad

    anomaly = anomaly_enabled.get()
    while ready:
        _, node = heappop(ready)
        if node.saved is None:  # its backward already ran without retain_graph
            raise RuntimeError(_FREED_MESSAGE.format(op=node.name()))
        grads_out = pending.pop(node)
        if node.hooks:
            for index, hook in list(node.hooks):
                if grads_out[index] is not None:
                    replaced = hook(grads_out[index])
                    if replaced is not None:
                        grads_out[index] = replaced
        if capture is not None:
            for index, g in enumerate(grads_out):
                if (node, index) in capture:
                    capture[(node, index)] = g
        grads_in = _call_backward(node, grads_out)
        if anomaly:
            for i, g in enumerate(grads_in):
                if g is not None:
                    _check_finite(node, g._data, f"gradient for input {i}")
        if not retain_graph:
            node.saved = None
        for parent, index, g in zip(node.parents, node.parent_idx, grads_in):
            if g is None or parent is None:
                continue
            if isinstance(parent, Tensor):
                _to_leaf(parent, g, create_graph, capture, handed_out, keep_alive)
                continue
            slots = pending.get(parent)
            if slots is None:
                slots = pending[parent] = [None] * (
                    1 if parent.out_meta is None else len(parent.out_meta))
                heappush(ready, (-parent.seq, parent))
            # Out of place: the same gradient Tensor may also sit in another slot.
            slots[index] = g if slots[index] is None else slots[index] + g


def _call_backward(node: Op, grads_out: list[Any]) -> tuple[Any, ...]:
    """Run one node's backward and check what it returns: one gradient or None per input,
    each a Tensor of the input's shape and device (cast to its dtype, as PyTorch does)."""
    if node.out_meta is not None:  # multi-output op: outputs nobody used get zero gradients
        for k, (shape, dtype) in enumerate(node.out_meta):
            if grads_out[k] is None:
                grads_out[k] = Tensor._make(node.xp.zeros(shape, dtype), node.backend)
    grads_in = node.backward(node, *grads_out)
    if type(grads_in) is not tuple:
        grads_in = (grads_in,)
    in_meta = node.in_meta
    if len(grads_in) != len(in_meta):
        raise RuntimeError(f"{node.name()} returned {len(grads_in)} gradients for "
                           f"{len(in_meta)} inputs")
    checked = list(grads_in)
    for i, meta in enumerate(in_meta):
        g = checked[i]
        if g is None:
            continue
        if meta is None:  # a gradient for an input that needs none is dropped
            checked[i] = None
            continue
        if not isinstance(g, Tensor):
            raise TypeError(f"{node.name()} returned a {type(g).__name__} as the gradient of "
                            f"input {i}; expected a Tensor")
        data = g._data
        if data.shape != meta[0]:
            raise RuntimeError(f"{node.name()} returned a gradient of shape {data.shape} for "
                               f"input {i} of shape {meta[0]}")
        if g._backend is not node.backend:
            raise RuntimeError(f"{node.name()} returned a gradient on {g._backend.device} for "
                               f"input {i} on {node.backend.device}")
        if data.dtype != meta[1]:
            checked[i] = g.to(dtype=meta[1])
    return checked


def _to_leaf(leaf: Tensor, g: Tensor, create_graph: bool, capture: dict[Any, Any] | None,
             handed_out: set[int], keep_alive: list[Any]) -> None:
    if leaf._hooks:
        for hook in list(leaf._hooks):
            replaced = hook(g)
            if replaced is not None:
                g = replaced
    if capture is not None:
        key = id(leaf)
        if key in capture:
            capture[key] = g if capture[key] is None else capture[key] + g
        return
    if not leaf._requires_grad:
        return
    if leaf._grad is not None:
        total = leaf._grad + g
        leaf._grad = total if create_graph else total.detach()
        return
    if create_graph:
        leaf._grad = g
        return
    data = g._data
    # .grad must own its memory: users and optimizers change it in place, and one gradient
    # array may reach two leaves (a + b) or be a view of another leaf's (a + b.T).
    if data.base is not None or id(data) in handed_out:
        data = data.copy()
    handed_out.add(id(data))
    keep_alive.append(data)
    leaf._grad = Tensor._make(data, leaf._backend)
