"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from typing import Any

from .._tensor import Tensor
from .optimizer import Optimizer, _check_value, _zeros_state


class SGD(Optimizer):
    """torch.optim.SGD: with momentum, buf = momentum buf + (1 - dampening) g (buf = g on the
    first step) and p -= lr buf (or lr (g + momentum buf) with nesterov); weight decay adds
    weight_decay * p to g. One fused kernel call per parameter."""

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        _check_value("momentum value", group["momentum"])
        _check_value("weight_decay value", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _update(self, group: dict[str, Any], p: Tensor, g: Tensor, state: dict[str, Any]
                ) -> None:
        momentum = group["momentum"]
        buf = None
        first = False
        if momentum != 0:
            first = "momentum_buffer" not in state
            if first:
                state["momentum_buffer"] = _zeros_state(p)
            buf = state["momentum_buffer"]._data
        p._backend.kernels.sgd_step(p._data, g._data, buf, group.lr_array(p._backend),
                                    momentum, group["dampening"], group["weight_decay"],
                                    group["nesterov"], first)
