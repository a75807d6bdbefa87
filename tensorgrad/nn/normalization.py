"""Normalization layers: BatchNorm1d, BatchNorm2d, LayerNorm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._creation import empty, ones, tensor, zeros
from .._dtype import int64
from .._tensor import Tensor
from ..autograd import no_grad
from . import functional as F
from . import init
from .linear import _check_dtype
from .module import Module, Parameter


def _as_input_dtype(y: Tensor, input: Tensor) -> Tensor:
    """A float16 input through float32 parameters is computed in float32 and rounded once to
    float16, as PyTorch's mixed-precision norms return it."""
    return y if y.dtype == input.dtype else y.to(input.dtype)


class _BatchNorm(Module):
    """Shared body of BatchNorm1d/2d, as torch.nn.modules.batchnorm._BatchNorm: batch
    statistics while training (updating the running ones), running statistics in eval.
    momentum=None gives the cumulative average over all batches seen."""

    _dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device: Any = None,
                 dtype: Any = None, *, bias: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(empty(num_features, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
        if affine and bias:
            self.bias = Parameter(empty(num_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, device=device, dtype=dtype))
            self.register_buffer("running_var", ones(num_features, device=device, dtype=dtype))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1.0)
                self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        name = type(self).__name__
        if input.ndim not in self._dims:
            dims = " or ".join(f"{d}D" for d in self._dims)
            raise ValueError(f"{name}: expected {dims} input, got {input.ndim}D input of shape "
                             f"{tuple(input.shape)}")
        if input.shape[1] != self.num_features:
            raise ValueError(f"{name}: expected input with {self.num_features} features in dim "
                             f"1, got input of shape {tuple(input.shape)}")
        _check_dtype(name, input, self.running_mean if self.weight is None else self.weight,
                     half_input=True)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            with no_grad():
                self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.item())
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        y = F.batch_norm(input, self.running_mean if track else None,
                         self.running_var if track else None, self.weight, self.bias,
                         use_batch, factor, self.eps)
        return _as_input_dtype(y, input)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization over (N, C) or (N, C, L) input, as torch.nn.BatchNorm1d."""

    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization over (N, C, H, W) input, as torch.nn.BatchNorm2d."""

    _dims = (4,)


class LayerNorm(Module):
    """Normalization over the trailing normalized_shape dims, as torch.nn.LayerNorm."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(ones(*self.normalized_shape, device=device, dtype=dtype))
            if bias:
                self.bias = Parameter(zeros(*self.normalized_shape, device=device, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, input: Tensor) -> Tensor:
        _check_dtype("LayerNorm", input, self.weight, half_input=True)
        y = F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)
        return _as_input_dtype(y, input)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")
