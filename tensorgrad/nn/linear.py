"""Fully connected layers: Identity, Linear, Maxout; and Flatten."""

from __future__ import annotations

import math
from typing import Any

from .._creation import empty
from .._tensor import Tensor
from ..ops.fused import linear_activation
from . import functional as F
from . import init
from .module import Module, Parameter


def _reset_affine(weight: Tensor, bias: Tensor | None, fan_in: int) -> None:
    """PyTorch's default for Linear and Conv: kaiming_uniform(a=sqrt(5)) on the weight, which
    is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(bias, -bound, bound)


def _check_dtype(layer: str, input: Tensor, param: Tensor | None, half_input: bool = False
                 ) -> None:
    """Refuse an input of another dtype than the layer's parameters, as PyTorch does: a layer
    never converts its input, so a float64 batch into a float32 layer is a bug to report, not
    a float64 result to hand back. half_input lets float16 into float32 layers (the norms'
    mixed precision, which PyTorch allows)."""
    if param is None or input.dtype == param.dtype:
        return
    if half_input and input.dtype.name == "float16" and param.dtype.name == "float32":
        return
    fix = f"pass input.to(tg.{param.dtype.name})"
    if input.dtype.is_floating_point:
        fix += f", or convert the layer with .to(tg.{input.dtype.name})"
    raise TypeError(f"{layer}: input is {input.dtype.name} but the layer's parameters are "
                    f"{param.dtype.name}; a layer does not convert its input (as in PyTorch): "
                    f"{fix}")


class Identity(Module):
    """Returns its input, as torch.nn.Identity."""

    def forward(self, input: Tensor) -> Tensor:
        return input


class Linear(Module):
    """y = x W^T + b, as torch.nn.Linear; weight (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(empty(out_features, in_features, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(empty(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self.weight, self.bias, self.in_features)

    def forward(self, input: Tensor) -> Tensor:
        self._check(input)
        return F.linear(input, self.weight, self.bias)

    def forward_activation(self, input: Tensor, activation: str) -> Tensor:
        """activation(self(input)) with the bias add and the activation fused into one pass
        ("relu", "sigmoid" or "tanh"); Sequential calls it for Linear then that activation."""
        self._check(input)
        return linear_activation(input, self.weight, self.bias, activation)

    def _check(self, input: Tensor) -> None:
        if input.ndim == 0 or input.shape[-1] != self.in_features:
            raise ValueError(f"Linear: expected input with {self.in_features} features in its "
                             f"last dim, got input of shape {tuple(input.shape)}")
        _check_dtype("Linear", input, self.weight)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Maxout(Module):
    """y_j = max_k (x W_jk^T + b_jk) over `pieces` affine maps per output (Goodfellow et al.
    2013). weight is (out_features * pieces, in_features), the pieces of output j in rows
    j * pieces ... j * pieces + pieces - 1; initialized as Linear. The gradient of each
    output goes to its largest piece (the first on a tie)."""

    def __init__(self, in_features: int, out_features: int, pieces: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if pieces < 1:
            raise ValueError(f"Maxout: pieces must be at least 1, got {pieces}")
        self.in_features = in_features
        self.out_features = out_features
        self.pieces = pieces
        rows = out_features * pieces
        self.weight = Parameter(empty(rows, in_features, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(empty(rows, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self.weight, self.bias, self.in_features)

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim == 0 or input.shape[-1] != self.in_features:
            raise ValueError(f"Maxout: expected input with {self.in_features} features in its "
                             f"last dim, got input of shape {tuple(input.shape)}")
        _check_dtype("Maxout", input, self.weight)
        z = F.linear(input, self.weight, self.bias)
        z = z.reshape(*input.shape[:-1], self.out_features, self.pieces)
        return z.max(dim=-1).values

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"pieces={self.pieces}")


class Flatten(Module):
    """Flattens dims start_dim..end_dim into one, as torch.nn.Flatten (keeps the batch dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: Tensor) -> Tensor:
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
