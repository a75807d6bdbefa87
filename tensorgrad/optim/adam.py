"""Adam and AdamW."""

from __future__ import annotations

from typing import Any

from .._tensor import Tensor
from .optimizer import Optimizer, _check_value, _step_counter, _zeros_state


class Adam(Optimizer):
    """torch.optim.Adam (amsgrad=False): bias-corrected first and second moments; weight decay
    is L2, added to the gradient. One fused kernel call per parameter."""

    _kernel = "adam_step"

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        _check_value("epsilon value", group["eps"])
        beta1, beta2 = group["betas"]
        _check_value("beta parameter at index 0", beta1, 0.0, 1.0)
        _check_value("beta parameter at index 1", beta2, 0.0, 1.0)
        _check_value("weight_decay value", group["weight_decay"])

    def _update(self, group: dict[str, Any], p: Tensor, g: Tensor, state: dict[str, Any]
                ) -> None:
        if not state:
            state["step"] = _step_counter(p)
            state["exp_avg"] = _zeros_state(p)
            state["exp_avg_sq"] = _zeros_state(p)
        beta1, beta2 = group["betas"]
        # The kernel counts the step itself (on CUDA in the launch that computes the per-step
        # scalars, so an Adam step is two launches per parameter).
        getattr(p._backend.kernels, self._kernel)(
            p._data, g._data, state["exp_avg"]._data, state["exp_avg_sq"]._data,
            group.lr_array(p._backend), beta1, beta2, group["eps"], group["weight_decay"],
            state["step"]._data)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p *= 1 - lr * weight_decay."""

    _kernel = "adamw_step"

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)
