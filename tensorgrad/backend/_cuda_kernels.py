"""The CUDA kernels: one table of CuPy ElementwiseKernels over the sources in kernels/*.cuh.

The only module that knows kernels/ exists. Each kernel is compiled on first use and then kept
as an attribute of the `CudaKernels` object, so later calls cost one attribute lookup. CuPy is
imported when a `CudaKernels` is created, never at module import. The NumPy twins of every
method, with the same names and semantics, are in `_cpu_kernels.py`.

Calling convention (same as `CpuKernels`): arrays of one float dtype (float16, float32,
float64) in, a new array out, or the caller's array when `out` is passed; raw kernels take
`out` positionally as their last argument. Scalars are `float64` kernel parameters that each
body casts to the compute type (float for float16 and float32, double for double), so a NumPy
float64 scalar never changes the output dtype and float16 arrays compute with float32 scalars.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

# Installed wheels carry the sources inside the package (pyproject force-includes kernels/ as
# tensorgrad/_kernels); a source checkout has them in the repository's kernels/.
_SOURCE_DIRS = (
    Path(__file__).resolve().parent.parent / "_kernels",
    Path(__file__).resolve().parents[2] / "kernels",
)

# key: (source file, in_params, out_params, body); the CuPy kernel is named tg_<key>. Keys
# that a CudaKernels method calls (as self._<key>, to order arguments or derive scalars) are
# internal to it; every other key is a public method as it stands. Placeholder types (T, I, S)
# are arrays, concrete types are scalars; float64 scalars are cast with tg_real<T>.
_KERNELS: dict[str, tuple[str, str, str, str]] = {
    "relu_fwd": ("activations.cuh", "T x", "T y", "y = tg_relu(x)"),
    "relu_bwd": ("activations.cuh", "T y, T gy", "T gx", "gx = tg_relu_grad(y, gy)"),
    "leaky_relu_fwd": ("activations.cuh", "T x, float64 slope", "T y",
                       "y = tg_leaky_relu(x, tg_real<T>(slope))"),
    "leaky_relu_bwd": ("activations.cuh", "T x, T gy, float64 slope", "T gx",
                       "gx = tg_leaky_relu_grad(x, gy, tg_real<T>(slope))"),
    "elu_fwd": ("activations.cuh", "T x, float64 alpha", "T y",
                "y = tg_elu(x, tg_real<T>(alpha))"),
    "elu_bwd": ("activations.cuh", "T y, T gy, float64 alpha", "T gx",
                "gx = tg_elu_grad(y, gy, tg_real<T>(alpha))"),
    "gelu_fwd": ("activations.cuh", "T x", "T y", "y = tg_gelu(x)"),
    "gelu_bwd": ("activations.cuh", "T x, T gy", "T gx", "gx = tg_gelu_grad(x, gy)"),
    "gelu_tanh_fwd": ("activations.cuh", "T x", "T y", "y = tg_gelu_tanh(x)"),
    "gelu_tanh_bwd": ("activations.cuh", "T x, T gy", "T gx", "gx = tg_gelu_tanh_grad(x, gy)"),
    "silu_fwd": ("activations.cuh", "T x", "T y", "y = tg_silu(x)"),
    "silu_bwd": ("activations.cuh", "T x, T gy", "T gx", "gx = tg_silu_grad(x, gy)"),
    "sigmoid_fwd": ("activations.cuh", "T x", "T y", "y = tg_sigmoid(x)"),
    "sigmoid_bwd": ("activations.cuh", "T y, T gy", "T gx", "gx = tg_sigmoid_grad(y, gy)"),
    "tanh_fwd": ("activations.cuh", "T x", "T y", "y = tg_tanh(x)"),
    "tanh_bwd": ("activations.cuh", "T y, T gy", "T gx", "gx = tg_tanh_grad(y, gy)"),
    "softplus_fwd": ("activations.cuh", "T x, float64 beta, float64 threshold", "T y",
                     "y = tg_softplus(x, tg_real<T>(beta), tg_real<T>(threshold))"),
    "softplus_bwd": ("activations.cuh", "T x, T gy, float64 beta, float64 threshold", "T gx",
                     "gx = tg_softplus_grad(x, gy, tg_real<T>(beta), tg_real<T>(threshold))"),
    "bias_relu_fwd": ("activations.cuh", "T z, T b", "T y", "y = tg_bias_relu(z, b)"),
    "bias_sigmoid_fwd": ("activations.cuh", "T z, T b", "T y", "y = tg_bias_sigmoid(z, b)"),
    "bias_tanh_fwd": ("activations.cuh", "T z, T b", "T y", "y = tg_bias_tanh(z, b)"),
    # One thread per row of the (N, C) log-probabilities (raw, C-contiguous): the row's loss,
    # its target clamped into [0, C) for the backward's gather (0 outside: a negative target
    # read as unsigned is above any C, so one comparison checks both ends), and its weight, 1
    # unless the target is ignore_index. logp is only read at an index in range.
    "softmax_xent_fwd": (
        "losses.cuh", "raw T logp, I t, int64 ncls, int64 ignore", "T nll, I tc, T kept",
        ("long long c = t; bool in_range = (unsigned long long)c < (unsigned long long)ncls; "
         "bool keep = c != ignore; tc = in_range ? c : 0; kept = T(keep ? 1.0f : 0.0f); "
         "nll = tg_xent_nll(in_range ? tg_real<T>(logp[i * ncls + c]) : tg_real<T>(0), "
         "in_range, keep)")),
    # target (any integer dtype, I) and the per-row scale (S; one element broadcasts) arrive
    # as (N, 1) and broadcast along the classes; i is the C-order index of the (N, C) output,
    # so i % ncls is the class of this element.
    "softmax_xent_bwd": ("losses.cuh", "T p, I target, S scale, int64 ncls", "T gx",
                         ("gx = tg_softmax_xent_grad(p, target == i % ncls, "
                          "tg_real<T>(scale))")),
    # Optimizer steps: parameter and state are outputs updated in place, loaded into the
    # compute type, stepped, and stored back (one rounding per step for float16). The learning
    # rate and the step count are read and counted on the device (raw, 1-element float64
    # arrays), so a captured CUDA graph picks up a scheduler's new rate and counts its own
    # steps; RMSprop's count is bookkeeping only (PyTorch keeps it), bumped by the thread of
    # element 0 rather than by a launch of its own. Coefficients
    # 1 - beta come computed on the host in double (om_ = "one minus"), as PyTorch passes them.
    "sgd_step": ("optimizers.cuh", "T g, raw float64 lr, float64 wd", "T p",
                 "tg_real<T> pc = p; tg_sgd_step(pc, g, tg_real<T>(lr[0]), wd); p = pc"),
    "sgd_momentum_step": (
        "optimizers.cuh",
        ("T g, raw float64 lr, float64 momentum, float64 om_dampening, float64 wd, "
         "bool nesterov, bool first"),
        "T p, T buf",
        ("tg_real<T> pc = p, bc = buf; "
         "tg_sgd_momentum_step(pc, g, bc, tg_real<T>(lr[0]), momentum, om_dampening, wd, "
         "nesterov, first); p = pc; buf = bc")),
    # One thread (size=1): counts the step, then Adam's per-step scalars (step size, sqrt of
    # the second bias correction, AdamW's decay factor) into a 3-element float64 array that
    # adam_step reads.
    "adam_scalars": (
        "optimizers.cuh",
        "raw float64 lr, float64 beta1, float64 beta2, float64 decoupled_wd",
        "raw float64 step, raw float64 scalars",
        ("step[0] += 1; "
         "scalars[0] = tg_adam_step_size(lr[0], beta1, step[0]); "
         "scalars[1] = tg_adam_bc2_sqrt(beta2, step[0]); "
         "scalars[2] = tg_adam_decay(lr[0], decoupled_wd)")),
    "adam_step": (
        "optimizers.cuh",
        ("T g, raw float64 scalars, float64 l2, float64 om_beta1, float64 beta2, "
         "float64 om_beta2, float64 eps"),
        "T p, T m, T v",
        ("tg_real<T> pc = p, mc = m, vc = v; "
         "tg_adam_step(pc, g, mc, vc, l2, tg_real<T>(scalars[2]), om_beta1, beta2, om_beta2, "
         "tg_real<T>(scalars[0]), tg_real<T>(scalars[1]), eps); "
         "p = pc; m = mc; v = vc")),
    "rmsprop_step": (
        "optimizers.cuh",
        "T g, raw float64 lr, float64 alpha, float64 om_alpha, float64 eps, float64 wd",
        "T p, T sq, raw float64 step",
        ("if (i == 0) step[0] += 1; "
         "tg_real<T> pc = p, sc = sq; "
         "tg_rmsprop_step(pc, g, sc, tg_real<T>(lr[0]), alpha, om_alpha, eps, wd); "
         "p = pc; sq = sc")),
    "rmsprop_momentum_step": (
        "optimizers.cuh",
        ("T g, raw float64 lr, float64 alpha, float64 om_alpha, float64 eps, float64 wd, "
         "float64 momentum"),
        "T p, T sq, T buf, raw float64 step",
        ("if (i == 0) step[0] += 1; "
         "tg_real<T> pc = p, sc = sq, bc = buf; "
         "tg_rmsprop_momentum_step(pc, g, sc, bc, tg_real<T>(lr[0]), alpha, om_alpha, eps, wd, "
         "momentum); p = pc; sq = sc; buf = bc")),
}


# The row reductions of softmax.cuh, compiled together as one RawModule, each instantiated
# for every storage type (CuPy's float16 class, float, double).
_ROW_KERNELS = ("tg_softmax_fwd", "tg_softmax_bwd", "tg_log_softmax_fwd", "tg_log_softmax_bwd")
_ROW_CTYPES = {np.dtype(np.float16): "float16", np.dtype(np.float32): "float",
               np.dtype(np.float64): "double"}


def _find_source(name: str) -> Path:
    """The path of kernels/<name>: inside the installed package first, then the checkout."""
    for folder in _SOURCE_DIRS:
        path = folder / name
        if path.is_file():
            return path
    looked = ", ".join(str(folder / name) for folder in _SOURCE_DIRS)
    raise FileNotFoundError(f"CUDA kernel source {name!r} not found; looked in: {looked}")


@functools.cache
def _preamble(source: str) -> str:
    """common.cuh followed by the family file: the preamble of every kernel of that family.

    #line directives make NVRTC's errors name the .cuh file and its line; the last one labels
    what CuPy generates after the preamble (the kernel and its body).
    """
    parts = [f'#line 1 "{name}"\n' + _find_source(name).read_text(encoding="utf-8")
             for name in ("common.cuh", source)]
    return "\n".join(parts) + '\n#line 1 "tg_elementwise_kernel"\n'


class CudaKernels:
    """Each kernel is built on first use and then kept as a plain attribute.

    Table keys without a method here are attributes holding the raw ElementwiseKernel; the
    methods below wrap the keys whose arguments need ordering or derived scalars.
    """

    def __init__(self) -> None:
        import cupy

        self._cupy = cupy

    def __getattr__(self, name: str) -> Any:
        # Reached only on a miss: the first use of a kernel. `_<key>` is the raw kernel behind
        # a wrapper method of the same key.
        key = name.removeprefix("_")
        try:
            source, in_params, out_params, body = _KERNELS[key]
        except KeyError:
            raise AttributeError(f"no CUDA kernel named {name!r}") from None
        kernel = self._cupy.ElementwiseKernel(
            in_params, out_params, body, f"tg_{key}", preamble=_preamble(source))
        setattr(self, name, kernel)  # later lookups never reach __getattr__
        return kernel

    def softmax_xent_fwd(self, logp: Any, target: Any, ignore_index: int,
                         out: tuple[Any, Any, Any] | None = None) -> tuple[Any, Any, Any]:
        """(nll, tc, kept) per row of logp (N, C) and integer targets (N,), as the twin."""
        logp = self._cupy.ascontiguousarray(logp)
        return self._softmax_xent_fwd(logp, target, logp.shape[-1], int(ignore_index),
                                      *(out or ()))

    def softmax_xent_bwd(self, p: Any, target: Any, scale: Any, out: Any = None) -> Any:
        """(p - onehot(target)) * scale per row for p (N, C), target int64 (N,), scale a
        number or an array of 1 or N elements (gy times the row's weight)."""
        if not isinstance(scale, self._cupy.ndarray):
            # A host scalar becomes a 1-element device array by a fill kernel, not a copy.
            scale = self._cupy.full((1,), float(np.reshape(scale, ())), dtype=np.float64)
        args = (p, target.reshape(-1, 1), scale.reshape(-1, 1), p.shape[-1])
        return self._softmax_xent_bwd(*args) if out is None else self._softmax_xent_bwd(*args, out)

    # row softmax (kernels/softmax.cuh): RawModule templates, one thread block per row

    @functools.cached_property
    def _row_module(self) -> Any:
        # CuPy's float16 class (the one its ElementwiseKernels use) is found on the include
        # path CuPy gives every compile; RawModule sources get none of CuPy's headers unasked.
        names = [f"{name}<{t}>" for name in _ROW_KERNELS for t in _ROW_CTYPES.values()]
        code = "#include <cupy/float16.cuh>\n" + _preamble("softmax.cuh")
        return self._cupy.RawModule(code=code, options=("--std=c++17",),
                                    name_expressions=names)

    def _row_kernel(self, name: str, dtype: Any) -> Any:
        key = f"_{name}_{dtype.name}"
        kernel = self.__dict__.get(key)
        if kernel is None:
            expression = f"{name}<{_ROW_CTYPES[dtype]}>"
            kernel = self.__dict__[key] = self._row_module.get_function(expression)
        return kernel

    def _rows(self, name: str, arrays: tuple[Any, ...], scalars: tuple[Any, ...],
              out: Any) -> Any:
        """Run a row kernel over the last axis of C-contiguous copies of arrays, writing a new
        array, or out when given. out may be one of the inputs: each thread reads an element
        before it writes it, and every read of a row's reductions comes before the block's
        first write."""
        cupy = self._cupy
        x = arrays[0]
        arrays = tuple(cupy.ascontiguousarray(a, dtype=x.dtype) for a in arrays)
        direct = out is not None and out.dtype == x.dtype and out.flags.c_contiguous
        result = out if direct else cupy.empty(x.shape, x.dtype)
        n = x.shape[-1]
        rows = x.size // n if n else 0
        if rows:
            block = min(1024, 32 * ((min(n, 1024) + 31) // 32))
            self._row_kernel(name, x.dtype)((rows,), (block,),
                                            (*arrays, result, np.int64(n), *scalars))
        if out is None or direct:
            return result
        out[...] = result
        return out

    def softmax_fwd(self, x: Any, causal_rows: int = 0, masked_zero: bool = False,
                    out: Any = None) -> Any:
        """exp(x - max) / sum over the last axis; causal_rows and masked_zero as the twin."""
        return self._rows("tg_softmax_fwd", (x,), (np.int64(causal_rows),
                                                   np.int32(masked_zero)), out)

    def softmax_bwd(self, y: Any, gy: Any, out: Any = None) -> Any:
        """y (gy - sum(gy y)) over the last axis."""
        return self._rows("tg_softmax_bwd", (y, gy), (), out)

    def log_softmax_fwd(self, x: Any, out: Any = None) -> Any:
        """x - max - log(sum(exp(x - max))) over the last axis."""
        return self._rows("tg_log_softmax_fwd", (x,), (), out)

    def log_softmax_bwd(self, y: Any, gy: Any, out: Any = None) -> Any:
        """gy - exp(y) sum(gy) over the last axis."""
        return self._rows("tg_log_softmax_bwd", (y, gy), (), out)

    def _device_scalar(self, value: Any) -> Any:
        """A learning rate as the 1-element float64 device array the kernels read; the
        optimizers pass such arrays already, so this fills only for direct calls."""
        if isinstance(value, self._cupy.ndarray):
            return value.reshape(1)
        return self._cupy.full((1,), float(np.reshape(value, ())), dtype=np.float64)

    def _step_count(self, step: Any) -> Any:
        """An optimizer's step count as the kernels take it: a 1-element float64 device array
        (state["step"]), which the kernel increments."""
        if not (isinstance(step, self._cupy.ndarray) and step.size == 1
                and step.dtype == np.float64):
            raise TypeError("an optimizer's step count must be a 1-element float64 device "
                            f"array (state['step']), which the step increments; got {step!r}")
        return step.reshape(1)

    def sgd_step(self, p: Any, g: Any, buf: Any, lr: Any, momentum: float, dampening: float,
                 weight_decay: float, nesterov: bool, first_step: bool = False) -> None:
        """torch.optim.SGD on one tensor, in place; buf is None when momentum == 0, and
        first_step=True sets buf = g as PyTorch does on its first step."""
        lr = self._device_scalar(lr)
        if momentum == 0:
            self._sgd_step(g, lr, float(weight_decay), p)
        else:
            self._sgd_momentum_step(g, lr, float(momentum), 1.0 - float(dampening),
                                    float(weight_decay), bool(nesterov), bool(first_step),
                                    p, buf)

    def adam_step(self, p: Any, g: Any, m: Any, v: Any, lr: Any, beta1: float, beta2: float,
                  eps: float, weight_decay: float, step: Any) -> None:
        """torch.optim.Adam on one tensor, in place; weight decay is L2 added to g. lr may
        be a number or a 1-element device array; step is the step count, a 1-element float64
        device array that this call increments before using it (state["step"])."""
        self._adam(p, g, m, v, lr, beta1, beta2, eps, step, l2=weight_decay, decoupled_wd=0.0)

    def adamw_step(self, p: Any, g: Any, m: Any, v: Any, lr: Any, beta1: float, beta2: float,
                   eps: float, weight_decay: float, step: Any) -> None:
        """torch.optim.AdamW on one tensor, in place; decoupled decay p *= 1 - lr * wd."""
        self._adam(p, g, m, v, lr, beta1, beta2, eps, step, l2=0.0, decoupled_wd=weight_decay)

    def _adam(self, p: Any, g: Any, m: Any, v: Any, lr: Any, beta1: float, beta2: float,
              eps: float, step: Any, l2: float, decoupled_wd: float) -> None:
        # Two launches: the step count and the per-step scalars once (pow, sqrt, division in
        # double on one thread), then the element update, which only loads them and stays
        # bandwidth-bound.
        step = self._step_count(step)
        scalars = self._cupy.empty(3, dtype=np.float64)
        self._adam_scalars(self._device_scalar(lr), float(beta1), float(beta2),
                           float(decoupled_wd), step, scalars, size=1)
        self._adam_step(g, scalars, float(l2), 1.0 - float(beta1), float(beta2),
                        1.0 - float(beta2), float(eps), p, m, v)

    def rmsprop_step(self, p: Any, g: Any, sq: Any, lr: Any, alpha: float, eps: float,
                     weight_decay: float, momentum: float, buf: Any, step: Any) -> None:
        """torch.optim.RMSprop (centered=False) on one tensor, in place; buf is None when
        momentum == 0; step is the step count (as adam_step's), incremented by the same
        launch."""
        step = self._step_count(step)
        if p.size == 0:  # no launch, so no element 0 to count the step
            step += 1
            return
        lr = self._device_scalar(lr)
        args = (g, lr, float(alpha), 1.0 - float(alpha), float(eps), float(weight_decay))
        if momentum == 0:
            self._rmsprop_step(*args, p, sq, step)
        else:
            self._rmsprop_momentum_step(*args, float(momentum), p, sq, buf, step)
