"""The Optimizer base: parameter groups, per-parameter state, zero_grad, and state_dict /
load_state_dict in PyTorch's layout ({"state": {index: {...}}, "param_groups": [...]}, with
parameters numbered in group order).

Subclasses implement `_update(group, p, g, state)` for one parameter: one fused kernel call of
the parameter's backend on raw arrays, in place. The base runs it under no_grad, skips
parameters without a gradient, and bumps each updated parameter's version counter.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from .._capture import baked_state_changed
from .._creation import zeros, zeros_like
from .._tensor import Tensor
from ..autograd import enable_grad, no_grad


def _check_value(name: str, value: float, low: float = 0.0, high: float | None = None,
                 open_high: bool = True) -> None:
    """Raise ValueError naming the hyperparameter unless low <= value (< or <=) high."""
    ok = value >= low and (high is None or (value < high if open_high else value <= high))
    if not ok:
        raise ValueError(f"Invalid {name}: {value}")


class _ParamGroup(dict):
    """A param group (a dict, as in PyTorch) whose learning rate is mirrored into a 1-element
    float64 array per device, which the update kernels read. Setting group["lr"] (as the
    schedulers do) refills those arrays, so a captured step uses the new rate without being
    captured again; a new value of any other hyperparameter, which the update kernels take as
    a number, makes captured steps record again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lr_arrays: dict[Any, Any] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        old = self.get(key, value)
        super().__setitem__(key, value)
        if key == "lr":
            for array in self.lr_arrays.values():
                array.fill(float(value))
        elif key != "params" and not (old is value or old == value):
            baked_state_changed()

    def lr_array(self, backend: Any) -> Any:
        """The learning rate as an array on `backend`'s device (made on first use)."""
        array = self.lr_arrays.get(backend)
        if array is None:
            array = self.lr_arrays[backend] = backend.asarray([float(self["lr"])], "float64")
        return array


class Optimizer:
    """Base class of the optimizers, as torch.optim.Optimizer."""

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {type(params).__name__}")
        if isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs; "
                            "use a list instead")
        self.defaults = defaults
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (defaults fill the rest)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a param group must be a dict, got {type(param_group).__name__}")
        group = _ParamGroup(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections "
                            "(a set's order changes between runs); use a list instead")
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"can't optimize a non-leaf Tensor (shape {p.shape}, created "
                                 f"by {p.grad_fn!r}); optimize the leaf it came from, or "
                                 ".detach().requires_grad_() it")
        group["params"] = params
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        self._validate(group)
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter group lists the same parameter more than once")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)
        baked_state_changed()  # captured steps update the parameters they recorded, no others

    def _validate(self, group: dict[str, Any]) -> None:
        """Check a group's hyperparameters; ValueError names the bad value."""
        _check_value("learning rate", group["lr"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) the .grad of every parameter."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = p.grad.detach()
                    p.grad.zero_()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; closure re-evaluates the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    g = p.grad
                    if g is None:
                        continue
                    if g.shape != p.shape or g._backend is not p._backend:
                        raise RuntimeError(f"the gradient of a parameter of shape {p.shape} on "
                                           f"{p.device} has shape {g.shape} on {g.device}")
                    state = self.state.setdefault(p, {})
                    self._update(group, p, g, state)
                    p._version[0] += 1
        return loss

    def _update(self, group: dict[str, Any], p: Tensor, g: Tensor, state: dict[str, Any]
                ) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """{"state": {index: state}, "param_groups": [hyperparameters and "params": indices]},
        as torch.optim.Optimizer.state_dict; state tensors are the live ones, not copies."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: s for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state saved by state_dict (tensors are copied to each
        parameter's device, and floating ones to its dtype)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, this "
                             f"optimizer has {len(self.param_groups)}")
        for k, (ours, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(ours["params"]) != len(saved["params"]):
                raise ValueError(f"loaded state dict contains a parameter group {k} of "
                                 f"{len(saved['params'])} parameters that doesn't match the "
                                 f"size of optimizer's group ({len(ours['params'])})")
        by_index = {}
        for ours, saved in zip(self.param_groups, saved_groups):
            by_index.update(zip(saved["params"], ours["params"]))
        for key, saved_state in state_dict["state"].items():
            p = by_index.get(int(key))
            for name, value in saved_state.items():
                if p is not None and isinstance(value, Tensor) and value.ndim and \
                        value.shape != p.shape:
                    raise ValueError(f"loaded state dict holds {name!r} of shape {value.shape} "
                                     f"for parameter {key}, whose shape is {p.shape}")
        self.state = {}
        baked_state_changed()  # new state tensors, which captured steps have not recorded
        for key, saved_state in state_dict["state"].items():
            p = by_index.get(int(key))
            if p is None:
                continue
            self.state[p] = {name: _cast_state(value, p, keep_dtype=name == "step")
                             for name, value in saved_state.items()}
        for ours, saved in zip(self.param_groups, saved_groups):
            for name, value in saved.items():
                if name != "params":
                    ours[name] = copy.deepcopy(value)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {k}")
            lines.extend(f"    {name}: {group[name]}" for name in sorted(group)
                         if name != "params")
        return "\n".join(lines) + "\n)"


def _cast_state(value: Any, p: Tensor, keep_dtype: bool = False) -> Any:
    """A copy of a saved state value, on p's device (and dtype, for floating tensors other
    than the float64 step counts)."""
    if not isinstance(value, Tensor):
        return copy.deepcopy(value)
    dtype = p.dtype if value.dtype.is_floating_point and not keep_dtype else None
    moved = value.detach().to(device=p.device, dtype=dtype)
    return moved.clone() if moved._data is value._data else moved


def _zeros_state(p: Tensor) -> Tensor:
    """A zero tensor like p, outside autograd (optimizer state)."""
    return zeros_like(p)


def _step_counter(p: Tensor) -> Tensor:
    """A step count on p's device (float64, exact to 2**53): kept on the device and
    incremented there, so a replayed CUDA graph counts its own steps."""
    return zeros((), dtype="float64", device=p.device)
