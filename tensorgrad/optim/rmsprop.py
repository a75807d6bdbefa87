"""RMSprop."""

from __future__ import annotations

from typing import Any

from .._tensor import Tensor
from .optimizer import Optimizer, _check_value, _step_counter, _zeros_state


class RMSprop(Optimizer):
    """torch.optim.RMSprop (centered=False): sq = alpha sq + (1 - alpha) g^2, step along
    g / (sqrt(sq) + eps), optionally through a momentum buffer. One fused kernel call per
    parameter."""

    def __init__(self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum))

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        _check_value("epsilon value", group["eps"])
        _check_value("momentum value", group["momentum"])
        _check_value("weight_decay value", group["weight_decay"])
        _check_value("alpha value", group["alpha"])

    def _update(self, group: dict[str, Any], p: Tensor, g: Tensor, state: dict[str, Any]
                ) -> None:
        if not state:
            state["step"] = _step_counter(p)
            state["square_avg"] = _zeros_state(p)
        if group["momentum"] > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = _zeros_state(p)
        buf = state["momentum_buffer"]._data if group["momentum"] > 0 else None
        # The kernel counts the step (on CUDA in the update's launch).
        p._backend.kernels.rmsprop_step(p._data, g._data, state["square_avg"]._data,
                                        group.lr_array(p._backend),
                                        group["alpha"], group["eps"], group["weight_decay"],
                                        group["momentum"], buf, state["step"]._data)
