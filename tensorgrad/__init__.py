"""tensorgrad: a readable tensor autodiff engine on NumPy (CPU) and CuPy (CUDA).

The public names of the API contract (shared API.md) and nothing else.
"""

from __future__ import annotations

from . import autograd, cuda, data, distributed, nn, optim, utils, viz
from ._capture import capture
from ._creation import (
    arange,
    as_tensor,
    empty,
    empty_like,
    eye,
    from_dlpack,
    from_numpy,
    full,
    full_like,
    linspace,
    manual_seed,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    tensor,
    zeros,
    zeros_like,
)
from ._device import (
    Device,
    DeviceMismatchError,
    DeviceUnavailableError,
    get_default_device,
    set_default_device,
)
from ._dtype import DType, bool_, float16, float32, float64, int32, int64
from ._tensor import Tensor
from .autograd import (
    enable_grad,
    grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from .backend import CaptureError
from .ops.activation import (
    elu,
    gelu,
    leaky_relu,
    log_softmax,
    relu,
    sigmoid,
    silu,
    softmax,
    softplus,
    tanh,
)
from .ops.arithmetic import (
    abs,
    add,
    bitwise_and,
    bitwise_not,
    bitwise_or,
    bitwise_xor,
    clamp,
    clip,
    div,
    eq,
    floor_divide,
    ge,
    gt,
    le,
    lt,
    masked_fill,
    maximum,
    minimum,
    mul,
    ne,
    neg,
    pow,
    remainder,
    sub,
    where,
)
from .ops.attention import tril, triu
from .ops.conversion import clone
from .ops.indexing import getitem
from .ops.linalg import matmul
from .ops.math import cos, exp, log, sin, sqrt
from .ops.reduction import (
    all,
    amax,
    amin,
    any,
    argmax,
    argmin,
    logsumexp,
    max,
    mean,
    min,
    prod,
    std,
    sum,
    var,
)
from .ops.shape import (
    broadcast_to,
    cat,
    chunk,
    expand,
    flatten,
    pad,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    transpose,
    unsqueeze,
    view,
)
from .serialization import SerializationError, load, save

bool = bool_  # noqa: A001  (tg.bool, as torch.bool)
device = Device

__version__ = "0.1.0"

__all__ = [
    "CaptureError", "Device", "DeviceMismatchError", "DeviceUnavailableError", "DType",
    "SerializationError", "Tensor", "data", "distributed", "load", "save", "viz",
    "abs", "add", "all", "amax", "amin", "any", "arange", "argmax", "argmin", "as_tensor",
    "autograd",
    "bitwise_and", "bitwise_not", "bitwise_or", "bitwise_xor",
    "bool", "broadcast_to", "capture", "cat", "chunk", "clamp", "clip", "clone", "cos", "cuda",
    "device",
    "div", "elu", "empty", "empty_like", "enable_grad", "eq", "exp", "expand", "eye",
    "flatten", "float16", "float32", "float64", "floor_divide", "from_dlpack", "from_numpy",
    "full", "full_like", "ge", "gelu", "get_default_device", "getitem", "grad", "gt", "int32",
    "inference_mode", "int64", "is_grad_enabled", "le", "leaky_relu", "linspace", "log",
    "log_softmax",
    "logsumexp", "lt", "manual_seed", "masked_fill", "matmul", "max", "maximum", "mean", "min",
    "minimum", "mul", "ne", "neg", "nn", "no_grad", "ones", "ones_like", "optim", "pad",
    "permute", "pow",
    "prod", "rand", "rand_like", "randint", "randn", "randn_like", "relu", "remainder",
    "reshape", "set_default_device", "set_grad_enabled", "sigmoid", "silu", "sin", "softmax",
    "softplus", "split",
    "sqrt", "squeeze", "stack", "std", "sub", "sum", "tanh", "tensor", "transpose", "tril",
    "triu", "unsqueeze", "utils", "var", "view", "where", "zeros", "zeros_like",
]
