"""Convolution layers: Conv2d."""

from __future__ import annotations

import math
from typing import Any

from .._creation import empty
from .._tensor import Tensor
from . import functional as F
from .linear import _check_dtype, _reset_affine
from .module import Module, Parameter


class Conv2d(Module):
    """2-d convolution (cross-correlation), as torch.nn.Conv2d with groups=1 and zero padding;
    weight (out_channels, in_channels, kh, kw)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if groups != 1:
            raise ValueError(f"Conv2d: only groups=1 is supported, got groups={groups}")
        if padding == "valid":
            padding = 0
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = F._pair(kernel_size, "Conv2d: kernel_size")
        self.stride = F._pair(stride, "Conv2d: stride")
        self.padding = F._pair(padding, "Conv2d: padding")
        self.dilation = F._pair(dilation, "Conv2d: dilation")
        self.groups = groups
        self.weight = Parameter(empty(out_channels, in_channels, *self.kernel_size,
                                      device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(empty(out_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self.weight, self.bias, self.in_channels * math.prod(self.kernel_size))

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim not in (3, 4) or input.shape[-3] != self.in_channels:
            raise ValueError(f"Conv2d: expected input (N, {self.in_channels}, H, W) or "
                             f"({self.in_channels}, H, W) with {self.in_channels} channels, "
                             f"got input of shape {tuple(input.shape)}")
        _check_dtype("Conv2d", input, self.weight)
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding,
                        self.dilation)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.bias is None:
            text += ", bias=False"
        return text
