"""One table of the differentiable ops, with the sample shapes, sampling domains and kinks the
gradient and PyTorch tests draw from: the tensor functions and operators (API.md "Methods and
functions"), conversions, the layers and losses of tg.nn.functional (and the parameter-free
Modules, whose API PyTorch shares), and the fused ops. A new op's gradient, second-order and
PyTorch tests come from its entry here; tests elsewhere hold what a table row cannot say
(a Module's parameters and buffers, error messages, numerically extreme inputs).

Each `fn(m, *xs)` is written once for both libraries: `m` is `tensorgrad` or `torch`, and the
body uses names the two share. Where PyTorch spells an op differently, `torch_fn` (same
signature) is the reference.
A sample is one shape per tensor input; `T(shape)` marks an input that reaches the op as a
transposed (non-contiguous) view of a contiguous leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

import tensorgrad as tg
from tensorgrad.ops.fused import linear_activation


class T(NamedTuple):
    """An input of `shape` given as the transpose of a contiguous leaf of the reversed last two
    dims, so the op sees non-contiguous strides."""

    shape: tuple[int, ...]


@dataclass(frozen=True)
class OpSpec:
    name: str
    fn: Callable[..., Any]
    samples: tuple[tuple[Any, ...], ...]
    low: float = -2.0
    high: float = 2.0
    kinks: tuple[float, ...] = ()      # sampled values keep at least `margin` away from these
    margin: float = 0.1
    domains: tuple[tuple[float, float], ...] | None = None  # per input, overrides low/high
    torch_fn: Callable[..., Any] | None = None
    eps: float = 1e-6                  # gradcheck's step
    # False where a gradient is a convention central differences cannot see (PyTorch's)
    gradcheck: bool = True
    dtypes: tuple[str, ...] = ("float16", "float32", "float64")  # compared with PyTorch
    # The degenerate inputs derived from the first sample (see degenerate_samples) on which
    # the op must do what PyTorch does, a result or an error; leaving one out needs a reason.
    degenerate: tuple[str, ...] = ("0-d", "empty")

    def call(self, m: Any, leaves: list[Any], samples: tuple[Any, ...]) -> Any:
        """Apply the op to leaves, transposing those the sample marks with T."""
        xs = [x.transpose(-2, -1) if isinstance(s, T) else x for x, s in zip(leaves, samples)]
        fn = self.torch_fn if (self.torch_fn is not None and m.__name__ == "torch") else self.fn
        return fn(m, *xs)


def leaf_shape(s: Any) -> tuple[int, ...]:
    """The contiguous leaf behind a sample shape."""
    if isinstance(s, T):
        return s.shape[:-2] + (s.shape[-1], s.shape[-2])
    return tuple(s)


def sample_arrays(spec: OpSpec, sample: tuple[Any, ...], rng: np.random.Generator
                  ) -> list[np.ndarray]:
    """float64 leaf values inside the op's domain and away from its kinks."""
    arrays = []
    for i, s in enumerate(sample):
        low, high = spec.domains[i] if spec.domains else (spec.low, spec.high)
        a = rng.uniform(low, high, size=leaf_shape(s))
        for k in spec.kinks:
            close = np.abs(a - k) < spec.margin
            side = np.where(a >= k, 1.0, -1.0)
            a = np.where(close, k + side * spec.margin * (1 + rng.uniform(0, 1, a.shape)), a)
        arrays.append(np.asarray(a, dtype=np.float64))
    return arrays


def degenerate_samples(spec: OpSpec) -> dict[str, tuple[Any, ...]]:
    """The first sample with every input 0-d, and with every input's first dim of size 0
    (0-d inputs stay 0-d), for the variants spec.degenerate names that differ from it."""
    first = spec.samples[0]
    variants = {"0-d": tuple(() for _ in first),
                "empty": tuple(T((0,) + s.shape[1:]) if isinstance(s, T)
                               else (0,) + tuple(s)[1:] if s else () for s in first)}
    return {k: v for k, v in variants.items() if k in spec.degenerate and v != first}


def sample_inputs(spec: OpSpec, sample: tuple[Any, ...], rng: np.random.Generator,
                  device: str = "cpu", dtype: Any = tg.float64) -> list[tg.Tensor]:
    """Leaves for one sample, requiring grad."""
    return [tg.tensor(a, dtype=dtype, device=device, requires_grad=True)
            for a in sample_arrays(spec, sample, rng)]


# Sample sets reused across the table.
UNARY = (((3, 4),), ((),), ((1, 5),), (T((3, 4)),), ((2, 1, 3),))
BINARY = (((3, 4), (3, 4)), ((3, 1), (1, 4)), ((), (2, 3)), ((2, 3), ()), ((4,), (2, 4)),
          ((4, 1, 3), (2, 3)), ((1,), (5, 4)), (T((3, 4)), (3, 4)), (T((3, 4)), (1, 4)))
MATRIX = (((3, 4),), (T((3, 4)),), ((1, 5),))
REDUCE = (((3, 4),), (T((3, 4)),), ((2, 3, 4),), ((1, 4),))
REDUCE_ALL = REDUCE + (((),),)


def _torch_pad(m: Any, x: Any, pad: tuple[int, ...]) -> Any:
    return m.nn.functional.pad(x, pad)


def _linear_activation(activation: str) -> Callable[..., Any]:
    """The fused op (tensorgrad only) and its PyTorch reference, activation(linear(x, w, b))."""

    def ours(m: Any, x: Any, w: Any, b: Any) -> Any:
        return linear_activation(x, w, b, activation)

    def reference(m: Any, x: Any, w: Any, b: Any) -> Any:
        return getattr(m, activation)(m.nn.functional.linear(x, w, b))

    return ours, reference


def _losses(name: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """The loss Module under every reduction, as one op with three outputs."""

    def fn(m: Any, x: Any, *rest: Any) -> tuple[Any, ...]:
        return tuple(getattr(m.nn, name)(*args, reduction=r, **kwargs)(x, *rest)
                     for r in ("mean", "sum", "none"))

    return fn


def _classes(m: Any, x: Any, values: Any) -> Any:
    """Integer class targets (with ignored rows, -100) on x's device."""
    return m.tensor(np.asarray(values), device=x.device)


# Class targets for a (6, 4) input and a (2, 3, 4, 2) input, rows of -100 ignored.
_TARGETS = [0, 3, -100, 2, 2, 1]
_TARGETS_SPATIAL = np.array([[0, 2], [1, -100], [2, 2], [0, 1]] * 2).reshape(2, 4, 2)
_INDICES = [[1, 4, 9, 0, 4], [2, 2, 7, 3, 5], [9, 8, 0, 1, 6]]
_RUNNING = (np.array([0.3, -0.2, 0.1]), np.array([0.8, 1.5, 1.1]))
NN = ("float32", "float64")  # forward dtypes compared for the layers and losses
ACT = (((4, 5),), (T((4, 5)),))

_RELU, _RELU_REF = _linear_activation("relu")
_SIGMOID, _SIGMOID_REF = _linear_activation("sigmoid")
_TANH, _TANH_REF = _linear_activation("tanh")


def _torch_prod_dims(m: Any, x: Any, dims: tuple[int, ...], keepdim: bool) -> Any:
    for d in sorted(dims, reverse=True):
        x = x.prod(dim=d, keepdim=keepdim)
    return x


OPS: list[OpSpec] = [
    # ---- elementwise math ------------------------------------------------------------------
    OpSpec("exp", lambda m, x: m.exp(x), UNARY),
    OpSpec("log", lambda m, x: m.log(x), UNARY, low=0.2, high=3.0),
    OpSpec("sqrt", lambda m, x: x.sqrt(), UNARY, low=0.2, high=3.0),
    OpSpec("sin", lambda m, x: m.sin(x), UNARY, low=-3.0, high=3.0),
    OpSpec("cos", lambda m, x: x.cos(), UNARY, low=-3.0, high=3.0),
    OpSpec("tanh", lambda m, x: m.tanh(x), UNARY),
    OpSpec("sigmoid", lambda m, x: x.sigmoid(), UNARY, low=-4.0, high=4.0),
    OpSpec("relu", lambda m, x: m.relu(x), UNARY, kinks=(0.0,)),
    OpSpec("leaky_relu_default", lambda m, x: m.nn.functional.leaky_relu(x), UNARY,
           kinks=(0.0,)),
    OpSpec("elu_default", lambda m, x: m.nn.functional.elu(x), UNARY, kinks=(0.0,)),
    OpSpec("softplus_default", lambda m, x: m.nn.functional.softplus(x), UNARY),
    OpSpec("leaky_relu", lambda m, x: m.leaky_relu(x, 0.1), UNARY, kinks=(0.0,),
           torch_fn=lambda m, x: m.nn.functional.leaky_relu(x, 0.1)),
    OpSpec("elu", lambda m, x: m.elu(x, 0.7), UNARY, kinks=(0.0,),
           torch_fn=lambda m, x: m.nn.functional.elu(x, 0.7)),
    OpSpec("gelu", lambda m, x: m.gelu(x), UNARY, torch_fn=lambda m, x: m.nn.functional.gelu(x)),
    OpSpec("gelu_tanh", lambda m, x: m.gelu(x, approximate="tanh"), UNARY,
           torch_fn=lambda m, x: m.nn.functional.gelu(x, approximate="tanh")),
    OpSpec("silu", lambda m, x: m.silu(x), UNARY, torch_fn=lambda m, x: m.nn.functional.silu(x)),
    OpSpec("softplus", lambda m, x: m.softplus(x, 2.0, 3.0), UNARY, kinks=(1.5,),
           torch_fn=lambda m, x: m.nn.functional.softplus(x, 2.0, 3.0)),
    OpSpec("abs", lambda m, x: abs(x), UNARY, kinks=(0.0,)),
    OpSpec("abs_fn", lambda m, x: m.abs(x), UNARY, kinks=(0.0,)),
    OpSpec("neg", lambda m, x: -x, UNARY),
    OpSpec("clamp", lambda m, x: m.clamp(x, -0.5, 1.0), UNARY, kinks=(-0.5, 1.0)),
    OpSpec("clamp_min", lambda m, x: x.clamp(min=0.3), UNARY, kinks=(0.3,)),
    OpSpec("clip_max", lambda m, x: m.clip(x, max=-0.2), UNARY, kinks=(-0.2,)),
    # ---- binary arithmetic -----------------------------------------------------------------
    OpSpec("add", lambda m, a, b: a + b, BINARY),
    OpSpec("add_fn", lambda m, a, b: m.add(a, b), BINARY[:3]),
    OpSpec("sub", lambda m, a, b: a - b, BINARY),
    OpSpec("mul", lambda m, a, b: a * b, BINARY),
    OpSpec("div", lambda m, a, b: a / b, BINARY, kinks=(0.0,), margin=0.3),
    OpSpec("pow", lambda m, a, b: a ** b, BINARY, domains=((0.3, 2.0), (-2.0, 2.0))),
    OpSpec("maximum", lambda m, a, b: m.maximum(a, b), BINARY),
    # a / b stays inside (-1, 0), away from remainder's jumps, so floor(a / b) = -1.
    OpSpec("remainder", lambda m, a, b: a % b, BINARY, domains=((0.2, 2.0), (-3.0, -2.5))),
    OpSpec("minimum", lambda m, a, b: a.minimum(b), BINARY),
    OpSpec("matmul", lambda m, a, b: a @ b,
           (((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
            ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), (T((3, 4)), T((4, 2))),
            ((1, 4), (4, 1)))),
    OpSpec("matmul_fn", lambda m, a, b: m.matmul(a, b), (((2, 3), (3, 2)),)),
    # ---- with Python scalars ---------------------------------------------------------------
    OpSpec("add_scalar", lambda m, x: 1.5 + x, UNARY),
    OpSpec("rsub_scalar", lambda m, x: 3 - x, UNARY),
    OpSpec("mul_scalar", lambda m, x: x * 2.5, UNARY),
    OpSpec("div_scalar", lambda m, x: x / 4, UNARY),
    OpSpec("rdiv_scalar", lambda m, x: 2.0 / x, UNARY, kinks=(0.0,), margin=0.3),
    OpSpec("pow_int", lambda m, x: x ** 3, UNARY),
    OpSpec("pow_half", lambda m, x: x ** 0.5, UNARY, low=0.2, high=3.0),
    OpSpec("pow_neg", lambda m, x: x ** -2, UNARY, kinks=(0.0,), margin=0.3),
    OpSpec("rpow", lambda m, x: 2.0 ** x, UNARY),
    OpSpec("pow_method", lambda m, x: x.pow(2), UNARY),
    # ---- selection -------------------------------------------------------------------------
    OpSpec("where", lambda m, a, b: m.where(a > 0.0, a, b),
           (((3, 4), (3, 4)), ((3, 4), (1, 4)), ((2, 3), ()), (T((3, 4)), (3, 1))),
           kinks=(0.0,)),
    OpSpec("where_scalar", lambda m, x: m.where(x > 0.5, x * 2.0, 0.0), UNARY, kinks=(0.5,)),
    OpSpec("masked_fill", lambda m, x: x.masked_fill(x > 0.5, -1.0), UNARY, kinks=(0.5,)),
    OpSpec("masked_fill_bcast",
           lambda m, x: x.masked_fill(m.tensor([True, False, True], device=x.device), 2.0),
           (((4, 3),), ((3,),))),
    # ---- reductions ------------------------------------------------------------------------
    OpSpec("sum", lambda m, x: x.sum(), REDUCE_ALL),
    OpSpec("sum_dim", lambda m, x: m.sum(x, 1), REDUCE),
    OpSpec("sum_neg_dim_keepdim", lambda m, x: x.sum(dim=-1, keepdim=True), REDUCE),
    OpSpec("sum_dims", lambda m, x: x.sum(dim=(2, 0)), (((2, 3, 4),), ((1, 1, 3),))),
    OpSpec("sum_dims_keepdim", lambda m, x: x.sum(dim=(0, 2), keepdim=True), (((2, 3, 4),),)),
    OpSpec("mean", lambda m, x: x.mean(), REDUCE_ALL),
    OpSpec("mean_dims", lambda m, x: m.mean(x, dim=(-1, -2)), (((2, 3, 4),), (T((3, 4)),))),
    OpSpec("mean_keepdim", lambda m, x: x.mean(dim=0, keepdim=True), REDUCE),
    OpSpec("max", lambda m, x: x.max(), REDUCE_ALL),
    OpSpec("max_dim", lambda m, x: x.max(dim=1).values, REDUCE),
    OpSpec("max_dim_keepdim", lambda m, x: m.max(x, -1, keepdim=True)[0], REDUCE),
    OpSpec("max_dims", lambda m, x: m.max(x, dim=(0, 2)), (((2, 3, 4),),),
           torch_fn=lambda m, x: m.amax(x, dim=(0, 2))),
    OpSpec("max_dim_0d", lambda m, x: m.max(x, 0).values, (((),),)),
    OpSpec("amax", lambda m, x: m.amax(x, dim=1), REDUCE),
    OpSpec("min", lambda m, x: m.min(x), REDUCE_ALL),
    OpSpec("min_dim", lambda m, x: x.min(dim=0).values, REDUCE),
    OpSpec("min_dim_0d_keepdim", lambda m, x: x.min(dim=-1, keepdim=True).values, (((),),)),
    OpSpec("amin_keepdim", lambda m, x: x.amin(dim=(0, 1), keepdim=True), REDUCE),
    # 0-d with correction=1 is NaN; its backward meets NumPy's invalid-value warning (inf * 0
    # in Mul), which PyTorch does not give
    OpSpec("var", lambda m, x: x.var(), REDUCE, degenerate=("empty",)),
    OpSpec("var_dim", lambda m, x: m.var(x, dim=1), REDUCE),
    OpSpec("var_biased", lambda m, x: x.var(dim=(0, 1), correction=0, keepdim=True), REDUCE),
    OpSpec("var_0d_biased", lambda m, x: x.var(correction=0), (((),),)),
    OpSpec("std", lambda m, x: x.std(), REDUCE),
    OpSpec("std_biased", lambda m, x: m.std(x, dim=0, correction=0), REDUCE + (((),),)),
    OpSpec("std_dim", lambda m, x: m.std(x, dim=-1, keepdim=True), REDUCE),
    OpSpec("prod", lambda m, x: x.prod(), REDUCE_ALL),
    OpSpec("prod_dim", lambda m, x: m.prod(x, 1), REDUCE),
    OpSpec("prod_dims", lambda m, x: x.prod(dim=(0, 2), keepdim=True), (((2, 3, 4),),),
           torch_fn=lambda m, x: _torch_prod_dims(m, x, (0, 2), True)),
    OpSpec("logsumexp", lambda m, x: m.logsumexp(x, 1), REDUCE),
    OpSpec("logsumexp_dims", lambda m, x: x.logsumexp(dim=(0, 1), keepdim=True), REDUCE),
    OpSpec("softmax", lambda m, x: m.softmax(x, -1), REDUCE, low=-3.0, high=3.0),
    OpSpec("softmax_dim0", lambda m, x: x.softmax(0), REDUCE),
    OpSpec("log_softmax", lambda m, x: m.log_softmax(x, 1), REDUCE),
    OpSpec("log_softmax_last", lambda m, x: x.log_softmax(-1), REDUCE),
    # ---- shape -----------------------------------------------------------------------------
    OpSpec("reshape", lambda m, x: x.reshape(4, 3), (((3, 4),), (T((3, 4)),), ((12,),))),
    OpSpec("reshape_fn", lambda m, x: m.reshape(x, (2, -1)), (((3, 4),), ((2, 1, 3),))),
    OpSpec("view", lambda m, x: x.view(-1), (((3, 4),), ((),))),
    OpSpec("flatten", lambda m, x: m.flatten(x), (((2, 3, 4),), ((),), (T((3, 4)),))),
    OpSpec("flatten_range", lambda m, x: x.flatten(1, 2), (((2, 3, 4, 1),),)),
    OpSpec("transpose", lambda m, x: m.transpose(x, 0, 1), (((3, 4),), ((2, 3, 4),))),
    OpSpec("transpose_method", lambda m, x: x.transpose(-1, 0), (((2, 3, 4),),)),
    OpSpec("T", lambda m, x: x.T, (((3, 4),), ((1, 5),))),
    OpSpec("permute", lambda m, x: x.permute(2, 0, 1), (((2, 3, 4),),)),
    OpSpec("permute_fn", lambda m, x: m.permute(x, (1, 0)), (((3, 4),), (T((3, 4)),))),
    OpSpec("squeeze", lambda m, x: x.squeeze(), (((1, 3, 1),), ((1,),))),
    OpSpec("squeeze_dim", lambda m, x: m.squeeze(x, 0), (((1, 3, 1),), ((3, 1),))),
    OpSpec("unsqueeze", lambda m, x: x.unsqueeze(1), (((3, 4),), ((3,),))),
    OpSpec("unsqueeze_fn", lambda m, x: m.unsqueeze(x, -1), (((),), ((3,),))),
    OpSpec("expand", lambda m, x: x.expand(2, 3, 4), (((3, 1),), ((4,),), ((),))),
    OpSpec("expand_keep", lambda m, x: x.expand(-1, 4), (((3, 1),),)),
    OpSpec("broadcast_to", lambda m, x: m.broadcast_to(x, (2, 3, 4)), (((1, 4),), ((3, 1),))),
    OpSpec("cat", lambda m, a, b: m.cat([a, b], dim=1),
           (((2, 3), (2, 4)), ((2, 1), (2, 2)), (T((2, 3)), (2, 1)))),
    OpSpec("cat3", lambda m, a, b, c: m.cat((a, b, c)), (((2,), (1,), (3,)),)),
    OpSpec("stack", lambda m, a, b: m.stack([a, b], dim=-1), (((2, 3), (2, 3)), ((), ()))),
    OpSpec("split", lambda m, x: m.split(x, 2, dim=1), (((3, 5),), (T((3, 4)),))),
    OpSpec("split_sections", lambda m, x: x.split([1, 3], 0), (((4, 2),),)),
    OpSpec("chunk", lambda m, x: x.chunk(3, dim=0), (((7, 2),), ((3,),))),
    OpSpec("chunk_fn", lambda m, x: m.chunk(x, 2, 1), (((2, 4),),)),
    OpSpec("pad", lambda m, x: m.pad(x, (1, 2)), (((3, 4),), ((5,),)),
           torch_fn=lambda m, x: _torch_pad(m, x, (1, 2))),
    OpSpec("pad_2d", lambda m, x: m.pad(x, (0, 1, 2, 0)), (((3, 4),), (T((3, 4)),), ((2, 3, 4),)),
           torch_fn=lambda m, x: _torch_pad(m, x, (0, 1, 2, 0))),
    # ---- indexing --------------------------------------------------------------------------
    OpSpec("getitem_int", lambda m, x: x[1], (((3, 4),), ((3,),))),
    OpSpec("getitem_slices", lambda m, x: x[1:3, ::2], (((4, 5),), (T((4, 5)),))),
    OpSpec("getitem_ellipsis_none", lambda m, x: x[..., None, -1], (((2, 3, 4),),)),
    # a 0-d tensor has no dim to slice (PyTorch's reference, flip, has nothing to refuse)
    OpSpec("getitem_negstep", lambda m, x: x[::-1], (((4, 3),),),
           torch_fn=lambda m, x: m.flip(x, (0,)), degenerate=("empty",)),
    OpSpec("getitem_list_repeat", lambda m, x: x[[1, 0, 1]], (((3, 4),), ((3,),))),
    OpSpec("getitem_tensor", lambda m, x: x[m.tensor([[0, 2], [2, 2]], device=x.device)],
           (((3, 2),),)),
    OpSpec("getitem_two_lists", lambda m, x: x[[0, 1, 1], [2, 0, 2]], (((2, 3),), (T((2, 3)),))),
    OpSpec("getitem_mixed", lambda m, x: x[:, [0, 0, 2]], (((2, 3),),)),
    OpSpec("getitem_mask", lambda m, x: x[x > 0.0], (((3, 4),),), kinks=(0.0,)),
    # ---- copies and conversions ------------------------------------------------------------
    OpSpec("clone", lambda m, x: x.clone(), UNARY),
    OpSpec("contiguous", lambda m, x: x.contiguous() * 1.0, UNARY),
    # A float32 round trip: the step is large enough that float32's rounding is no slope.
    OpSpec("to_float32_and_back", lambda m, x: x.to(m.float32).to(x.dtype) * 2.0, UNARY,
           eps=1e-2),
    # The device copy and back (an op only where x is not on the CPU).
    OpSpec("to_cpu_and_back", lambda m, x: (x.cpu() * 2.0).to(x.device), UNARY),
    # ---- nn.functional layers -----------------------------------------------------------------
    OpSpec("linear", lambda m, x, w, b: m.nn.functional.linear(x, w, b),
           (((5, 4), (3, 4), (3,)), ((2, 5, 4), (3, 4), (3,)), (T((5, 4)), (3, 4), (3,))),
           dtypes=NN),
    OpSpec("linear_nobias", lambda m, x, w: m.nn.functional.linear(x, w),
           (((5, 4), (3, 4)), ((2, 5, 4), (3, 4))), dtypes=NN),
    OpSpec("conv2d", lambda m, x, w, b: m.nn.functional.conv2d(x, w, b),
           (((2, 3, 6, 6), (4, 3, 3, 3), (4,)), ((1, 1, 5, 4), (2, 1, 2, 2), (2,))), dtypes=NN),
    OpSpec("conv2d_strided",
           lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, stride=2, padding=1, dilation=2),
           (((2, 2, 7, 8), (3, 2, 2, 3), (3,)),), dtypes=NN),
    OpSpec("conv2d_nobias_unbatched",
           lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1),
           (((2, 5, 5), (3, 2, 3, 3)),), dtypes=NN),
    OpSpec("max_pool2d", lambda m, x: m.nn.MaxPool2d(2)(x), (((2, 3, 6, 6),), ((1, 1, 4, 5),))),
    OpSpec("max_pool2d_overlapping", lambda m, x: m.nn.functional.max_pool2d(x, 3, stride=1),
           (((2, 2, 6, 6),),)),
    OpSpec("max_pool2d_padded", lambda m, x: m.nn.MaxPool2d(3, stride=2, padding=1)(x),
           (((2, 2, 7, 7),),)),
    OpSpec("max_pool2d_dilated", lambda m, x: m.nn.MaxPool2d(2, stride=1, dilation=2)(x),
           (((1, 2, 5, 6),),)),
    OpSpec("avg_pool2d", lambda m, x: m.nn.AvgPool2d(2)(x), (((2, 3, 6, 6),),)),
    OpSpec("avg_pool2d_padded", lambda m, x: m.nn.functional.avg_pool2d(x, 3, 2, 1),
           (((2, 2, 7, 7),),)),
    OpSpec("avg_pool2d_exclude_pad",
           lambda m, x: m.nn.AvgPool2d(3, 2, 1, count_include_pad=False)(x),
           (((2, 2, 7, 7),),)),
    OpSpec("batch_norm", lambda m, x, w, b: m.nn.functional.batch_norm(
               x, None, None, w, b, training=True),
           (((8, 3), (3,), (3,)), ((4, 3, 5), (3,), (3,)), ((4, 3, 3, 3), (3,), (3,))),
           dtypes=NN),
    OpSpec("batch_norm_eval", lambda m, x, w, b: m.nn.functional.batch_norm(
               x, *(m.tensor(r, dtype=x.dtype, device=x.device) for r in _RUNNING), w, b),
           (((4, 3, 3, 3), (3,), (3,)), ((5, 3), (3,), (3,))), dtypes=NN),
    # an empty batch has no statistics: refused, where PyTorch returns an empty result
    OpSpec("batch_norm_noaffine", lambda m, x: m.nn.functional.batch_norm(
               x, None, None, training=True), (((6, 3),),), dtypes=NN, degenerate=("0-d",)),
    OpSpec("layer_norm", lambda m, x, w, b: m.nn.functional.layer_norm(x, w.shape, w, b),
           (((3, 5), (5,), (5,)), ((2, 4, 5), (4, 5), (4, 5))), dtypes=NN),
    OpSpec("embedding", lambda m, w: m.nn.functional.embedding(_classes(m, w, _INDICES), w),
           (((10, 4),),)),
    # The padding row gets no gradient though the output reads it: compared with PyTorch only.
    OpSpec("embedding_padding", lambda m, w: m.nn.functional.embedding(
               _classes(m, w, _INDICES), w, padding_idx=2), (((10, 3),),), gradcheck=False),
    OpSpec("flatten_module", lambda m, x: m.nn.Flatten()(x), (((2, 3, 4),),)),
    # ---- nn activation Modules ------------------------------------------------------------
    OpSpec("ReLU", lambda m, x: m.nn.ReLU()(x), ACT, kinks=(0.0,)),
    OpSpec("LeakyReLU", lambda m, x: m.nn.LeakyReLU(0.2)(x), ACT, kinks=(0.0,)),
    OpSpec("LeakyReLU_default", lambda m, x: m.nn.LeakyReLU()(x), ACT, kinks=(0.0,)),
    OpSpec("ELU", lambda m, x: m.nn.ELU(0.5)(x), ACT, kinks=(0.0,)),
    OpSpec("ELU_default", lambda m, x: m.nn.ELU()(x), ACT, kinks=(0.0,)),
    OpSpec("Softplus_default", lambda m, x: m.nn.Softplus()(x), ACT),
    OpSpec("GELU", lambda m, x: m.nn.GELU()(x), ACT),
    OpSpec("GELU_tanh", lambda m, x: m.nn.GELU("tanh")(x), ACT),
    OpSpec("SiLU", lambda m, x: m.nn.SiLU()(x), ACT),
    OpSpec("Sigmoid", lambda m, x: m.nn.Sigmoid()(x), ACT),
    OpSpec("Tanh", lambda m, x: m.nn.Tanh()(x), ACT),
    OpSpec("Softplus", lambda m, x: m.nn.Softplus(2.0, 3.0)(x), ACT, kinks=(1.5,)),
    OpSpec("Softmax", lambda m, x: m.nn.Softmax(1)(x), ACT),
    OpSpec("LogSoftmax", lambda m, x: m.nn.LogSoftmax(0)(x), ACT),
    # ---- losses (the Modules, each under mean, sum and none) --------------------------------
    OpSpec("mse_loss", _losses("MSELoss"), (((5, 3), (5, 3)), ((4,), (4,))), dtypes=NN),
    OpSpec("cross_entropy", lambda m, x: _losses("CrossEntropyLoss")(
               m, x, _classes(m, x, _TARGETS)), (((6, 4),),), low=-4.0, high=4.0, dtypes=NN),
    OpSpec("cross_entropy_spatial", lambda m, x: _losses("CrossEntropyLoss")(
               m, x, _classes(m, x, _TARGETS_SPATIAL)), (((2, 3, 4, 2),),), dtypes=NN),
    OpSpec("nll_loss", lambda m, x: _losses("NLLLoss")(m, x, _classes(m, x, _TARGETS)),
           (((6, 4),),), dtypes=NN),
    # unbatched: logits of shape (C,) and a 0-d target
    OpSpec("cross_entropy_unbatched", lambda m, x: _losses("CrossEntropyLoss")(
               m, x, _classes(m, x, 3)), (((4,),),), dtypes=NN),
    OpSpec("cross_entropy_unbatched_weighted", lambda m, x: _losses(
               "CrossEntropyLoss", weight=m.tensor([0.5, 2.0, 1.0, 1.5], dtype=x.dtype,
                                                   device=x.device))(m, x, _classes(m, x, 1)),
           (((4,),),), dtypes=NN),
    OpSpec("nll_loss_unbatched", lambda m, x: _losses("NLLLoss")(m, x, _classes(m, x, 0)),
           (((4,),),), dtypes=NN),
    OpSpec("binary_cross_entropy", _losses("BCELoss"), (((5, 3), (5, 3)), ((4,), (4,))),
           domains=((0.05, 0.95), (0.0, 1.0)), dtypes=NN),
    OpSpec("binary_cross_entropy_with_logits", _losses("BCEWithLogitsLoss"),
           (((5, 3), (5, 3)),), domains=((-6.0, 6.0), (0.0, 1.0)), dtypes=NN),
    # ---- fused ops (tensorgrad only; PyTorch's reference is the unfused composite) -----------
    OpSpec("linear_relu", _RELU, (((3, 4), (2, 4), (2,)), ((2, 3, 4), (5, 4), (5,))),
           torch_fn=_RELU_REF, dtypes=NN),
    OpSpec("linear_sigmoid", _SIGMOID, (((3, 4), (2, 4), (2,)),), torch_fn=_SIGMOID_REF,
           dtypes=NN),
    OpSpec("linear_tanh", _TANH, (((3, 4), (2, 4), (2,)),), torch_fn=_TANH_REF, dtypes=NN),
]

# Ops without a gradient (their results are indices), compared with PyTorch exactly: the
# defaults, keepdim with and without a dim, and the 0-d input.
ARG_SAMPLES = (((3, 4),), (T((3, 4)),), ((2, 3, 4),), ((5,),), ((),))
INDEX_OPS = [
    OpSpec("argmax", lambda m, x: m.argmax(x), ARG_SAMPLES),
    OpSpec("argmax_keepdim", lambda m, x: x.argmax(keepdim=True), ARG_SAMPLES),
    OpSpec("argmax_dim", lambda m, x: x.argmax(0), ARG_SAMPLES),
    OpSpec("argmax_dim_keepdim", lambda m, x: m.argmax(x, dim=-1, keepdim=True), ARG_SAMPLES),
    OpSpec("argmin", lambda m, x: x.argmin(), ARG_SAMPLES),
    OpSpec("argmin_keepdim", lambda m, x: m.argmin(x, keepdim=True), ARG_SAMPLES),
    OpSpec("argmin_dim", lambda m, x: m.argmin(x, dim=-1), ARG_SAMPLES),
    OpSpec("argmin_dim_keepdim", lambda m, x: x.argmin(0, keepdim=True), ARG_SAMPLES),
    OpSpec("max_dim_indices", lambda m, x: m.max(x, 0).indices, ARG_SAMPLES),
    OpSpec("max_dim_keepdim_indices", lambda m, x: x.max(-1, keepdim=True)[1], ARG_SAMPLES),
    OpSpec("min_dim_indices", lambda m, x: x.min(dim=-1).indices, ARG_SAMPLES),
    OpSpec("min_dim_keepdim_indices", lambda m, x: m.min(x, 0, True).indices, ARG_SAMPLES),
]

OPS_BY_NAME = {spec.name: spec for spec in OPS}
if len(OPS_BY_NAME) != len(OPS):
    raise RuntimeError("op_db: two OpSpecs share a name")
