"""Bad input raises a typed error whose message names what is wrong (shapes, dtypes, the op)."""

from __future__ import annotations

import pytest

import tensorgrad as tg


@pytest.mark.parametrize("op", [
    lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / b,
    lambda a, b: a ** b, lambda a, b: tg.maximum(a, b), lambda a, b: tg.minimum(a, b),
    lambda a, b: tg.where(a > 0, a, b),
], ids=["add", "sub", "mul", "div", "pow", "maximum", "minimum", "where"])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_mismatched_shapes_name_both(op, requires_grad: bool, device: str) -> None:
    a = tg.ones(3, 4, device=device, requires_grad=requires_grad)
    b = tg.ones(5, device=device)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5,\)"):
        op(a, b)


def test_matmul_shape_mismatch(device: str) -> None:
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\).*3 != 4"):
        tg.ones(2, 3, device=device) @ tg.ones(4, 5, device=device)
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3, 4\).*\(5, 4, 2\)"):
        tg.ones(2, 3, 4, device=device) @ tg.ones(5, 4, 2, device=device)
    with pytest.raises(ValueError, match=r"matmul.*at least 1 dim.*\(\) and \(2,\)"):
        tg.ones((), device=device) @ tg.ones(2, device=device)


@pytest.mark.parametrize("shape", [(4, 2), (-1, 4), (7,), (-1, -1)])
def test_reshape_to_a_wrong_size(shape: tuple[int, ...], device: str) -> None:
    x = tg.ones(6, device=device)
    with pytest.raises(ValueError, match=r"shape \(6,\).*into shape"):
        x.reshape(*shape)


def test_non_scalar_backward_without_gradient(device: str) -> None:
    y = tg.ones(2, 3, device=device, requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match=r"one element.*\(2, 3\).*gradient="):
        y.backward()
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\).*\(2, 3\)"):
        y.backward(gradient=tg.ones(3, device=device))


def test_backward_twice_mentions_retain_graph(device: str) -> None:
    y = (tg.ones(2, device=device, requires_grad=True).exp()).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        y.backward()


def test_backward_of_tensor_without_grad(device: str) -> None:
    with pytest.raises(RuntimeError, match="requires_grad"):
        tg.ones(1, device=device).backward()
    with tg.no_grad():
        y = tg.ones(1, device=device, requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match="no_grad"):
        y.backward()


def test_grad_inputs_must_require_grad(device: str) -> None:
    x = tg.ones(1, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="requires grad"):
        tg.grad(x * 2.0, tg.ones(1, device=device))


@pytest.mark.parametrize("dtype", [tg.int64, tg.int32, tg.bool])
def test_requires_grad_on_non_float_tensor(dtype: tg.DType, device: str) -> None:
    with pytest.raises(TypeError, match=rf"floating-point.*{dtype.name}"):
        tg.ones(2, dtype=dtype, device=device, requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        tg.ones(2, dtype=dtype, device=device).requires_grad_()


def test_requires_grad_must_be_a_bool(device: str) -> None:
    with pytest.raises(TypeError, match="bool"):
        tg.ones(1, device=device).requires_grad_(None)


@pytest.mark.parametrize("name", ["float128", "complex64", "float8", "str", "tg.float32", 3])
def test_bad_dtype_names(name: object, device: str) -> None:
    with pytest.raises(TypeError, match=r"unsupported dtype.*float32"):
        tg.zeros(1, dtype=name, device=device)


def test_unsupported_array_dtype() -> None:
    import numpy as np

    with pytest.raises(TypeError, match=r"complex128.*not supported"):
        tg.from_numpy(np.ones(2, dtype=np.complex128))
    with pytest.raises(TypeError, match="cannot make a tensor"):
        tg.tensor(["a", "b"])


class _WrongShape(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2.0

    @staticmethod
    def backward(ctx, gy):
        return gy.sum()


class _TooManyGrads(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2.0

    @staticmethod
    def backward(ctx, gy):
        return gy, gy


class _NotATensor(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.numpy()

    @staticmethod
    def backward(ctx, gy):
        return gy


def test_function_returning_wrong_shaped_gradient_names_the_op(device: str) -> None:
    x = tg.ones(2, 3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"_WrongShape.*shape \(\).*\(2, 3\)"):
        _WrongShape.apply(x).sum().backward()
    assert x.grad is None


def test_function_returning_too_many_gradients_names_the_op(device: str) -> None:
    x = tg.ones(2, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"_TooManyGrads.*2 gradients for 1 input"):
        _TooManyGrads.apply(x).sum().backward()


def test_function_forward_must_return_tensors(device: str) -> None:
    with pytest.raises(TypeError, match=r"_NotATensor.forward must return Tensors"):
        _NotATensor.apply(tg.ones(2, device=device))


def test_index_errors_name_the_shape(device: str) -> None:
    x = tg.ones(3, device=device)
    with pytest.raises(IndexError, match=r"shape \(3,\)"):
        x[5]
    with pytest.raises(IndexError, match="integer or bool"):
        x[tg.ones(1, device=device)]
    with pytest.raises(IndexError, match=r"dim 2 is out of range.*1 dimension"):
        x.sum(dim=2)
    for reduce in (tg.max, tg.argmax):  # a 0-d tensor takes dim 0 or -1, as in PyTorch
        with pytest.raises(IndexError, match=r"dim 1 is out of range; expected one in \[-1, 0\]"):
            reduce(tg.tensor(2.0, device=device), dim=1)


def test_shape_op_errors(device: str) -> None:
    with pytest.raises(ValueError, match="0-d tensor cannot be joined.*stack"):
        tg.cat([tg.tensor(1.0, device=device), tg.tensor(2.0, device=device)])
    with pytest.raises(TypeError, match="sequence of Tensors, got a list"):
        tg.cat([tg.ones(2, device=device), [1.0, 2.0]])
    with pytest.raises(ValueError, match=r"cat along dim 1.*\(2, 3\).*\(3, 3\)"):
        tg.cat([tg.ones(2, 3, device=device), tg.ones(3, 3, device=device)], dim=1)
    with pytest.raises(ValueError, match=r"one shape.*\(2,\).*\(3,\)"):
        tg.stack([tg.ones(2, device=device), tg.ones(3, device=device)])
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 4\)"):
        tg.ones(3, device=device).expand(2, 4)
    with pytest.raises(ValueError, match=r"permute"):
        tg.ones(2, 3, device=device).permute(0, 0)


def test_other_value_errors(device: str) -> None:
    x = tg.ones(2, 2, device=device)
    with pytest.raises(ValueError, match=r"one element.*\(2, 2\)"):
        x.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)
    with pytest.raises(TypeError, match="bool tensor"):
        tg.where(x, x, x)
    with pytest.raises(TypeError, match=r"mean.*int64"):
        tg.ones(2, dtype=tg.int64, device=device).mean()
    with pytest.raises(ValueError, match="clamp"):
        x.clamp()


def test_creation_and_init_argument_errors(device: str) -> None:
    with pytest.raises(ValueError, match="from 5 to 0 the step must be negative"):
        tg.arange(5, 0, device=device)
    with pytest.raises(ValueError, match="step must be positive, got -1"):
        tg.arange(0, 5, -1, device=device)
    assert tg.arange(5, 0, -2, device=device).tolist() == [5, 3, 1]
    with pytest.raises(TypeError, match=r"sizes must be integers, got 2.5"):
        tg.zeros(2.5, device=device)
    with pytest.raises(ValueError, match="expected a <= b, got a=2, b=1"):
        tg.nn.init.uniform_(tg.empty(2, device=device), 2, 1)
    with pytest.raises(ValueError, match="expected std >= 0"):
        tg.nn.init.normal_(tg.empty(2, device=device), 0.0, -1.0)
    with pytest.raises(TypeError, match="fills floating-point tensors, got int64"):
        tg.nn.init.normal_(tg.zeros(2, dtype=tg.int64, device=device))


def test_functional_argument_errors_name_the_argument(device: str) -> None:
    F = tg.nn.functional
    with pytest.raises(TypeError, match="cross_entropy: input must be floating point"):
        F.cross_entropy(tg.ones(2, 3, dtype=tg.int64, device=device),
                        tg.tensor([0, 1], device=device))
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\).*got \(3,\)"):
        F.conv2d(tg.ones(1, 3, 5, 5, device=device), tg.ones(4, 3, 3, 3, device=device),
                 bias=tg.ones(3, device=device))
    with pytest.raises(ValueError, match=r"layer_norm: weight must have .* \(3,\), got \(4,\)"):
        F.layer_norm(tg.ones(2, 3, device=device), (3,), weight=tg.ones(4, device=device))
    with pytest.raises(TypeError, match="dropout: input must be floating point, got int64"):
        F.dropout(tg.ones(4, dtype=tg.int64, device=device))


def test_manual_seed_takes_integers_only() -> None:
    tg.manual_seed(-1)  # as PyTorch: a negative seed is its two's complement
    first = tg.rand(3).tolist()
    tg.manual_seed(2**64 - 1)
    assert tg.rand(3).tolist() == first
    with pytest.raises(TypeError, match="seed must be an integer, got 1.5"):
        tg.manual_seed(1.5)


def test_integer_division_by_zero_raises_on_the_cpu() -> None:
    i = tg.tensor([7, -7])
    for divide in (lambda: i // 0, lambda: i % tg.tensor([2, 0]), lambda: 7 // tg.tensor([0, 1])):
        with pytest.raises(ZeroDivisionError, match="integer division by zero"):
            divide()
    assert (i // 2).tolist() == [3, -4] and (i % 3).tolist() == [1, 2]
    assert (tg.tensor([3.0]) // 0).tolist() == [float("inf")]  # floats follow IEEE


def test_max_and_argmax_over_an_empty_dim_name_it(device: str) -> None:
    empty = tg.zeros(0, 3, device=device)
    for reduce in (lambda: empty.max(dim=0), lambda: empty.amax(), lambda: empty.argmax(),
                   lambda: empty.min(dim=0), lambda: tg.zeros(2, 0, device=device).argmin(dim=1)):
        with pytest.raises(IndexError, match=r"dim \d of the tensor of shape .* has size 0"):
            reduce()
    assert empty.amax(dim=1).shape == (0,)  # as PyTorch: only the reduced dim must be non-empty
    assert empty.max(dim=1).values.shape == (0,)


@pytest.mark.parametrize("op", [lambda a: a & a, lambda a: a | 1, lambda a: 1 ^ a,
                                lambda a: ~a], ids=["and", "or", "rxor", "not"])
def test_bitwise_operators_refuse_floats(op, device: str) -> None:
    with pytest.raises(TypeError, match=r"bitwise_\w+ \(.\) needs integer or bool.*float32"):
        op(tg.ones(2, device=device))


def test_view_of_non_contiguous_memory_raises_and_points_to_reshape(device: str) -> None:
    """view used to copy silently here, so writes through the "view" were lost."""
    x = tg.zeros(2, 3, device=device)
    with pytest.raises(RuntimeError, match=r"view.*\(3, 2\).*not contiguous.*\(6,\).*reshape"):
        x.t().view(6)
    with pytest.raises(RuntimeError, match=r"reshape"):
        x[:, :2].view(4)


@pytest.mark.parametrize("call, error, message", [
    (lambda x: x.reshape(1.9, 4), TypeError, r"reshape: expected ints, got \(1.9, 4\)"),
    (lambda x: x.view(2.0, -1), TypeError, r"view: expected ints"),
    (lambda x: x.permute(1.0, 0), TypeError, r"permute: expected ints"),
    (lambda x: x.reshape(-2, -6), ValueError, r"cannot reshape.*\(-2, -6\)"),
    (lambda x: x.split([6, -2]), ValueError, r"split: section sizes must not be negative"),
    (lambda x: x.expand(-1, -1, 3), ValueError, r"expand: size -1 at dim 0 .*not allowed"),
    (lambda x: x.expand(2, -2), ValueError, r"expand: size -2 at dim 1"),
    (lambda x: x.t().t().t().transpose(6, 0), IndexError, r"transpose: dim 6 is out of range"),
    (lambda x: x[0].transpose(6, 0), IndexError, r"transpose: dim 6 .*\[-1, 0\]"),
    (lambda x: x[0, 0].transpose(1, 0), IndexError, r"transpose: dim 1 .*\[-1, 0\]"),
    (lambda x: x[0, 0].flatten(2), IndexError, r"flatten: dim 2 .*\[-1, 0\]"),
    (lambda x: x[0, 0].flatten(0, -2), IndexError, r"flatten: dim -2"),
    (lambda x: x[0, 0].squeeze(3), IndexError, r"squeeze: dim 3 is out of range"),
    (lambda x: x[None].t(), ValueError, r"t\(\) expects a tensor with at most 2 dims"),
], ids=["reshape_float", "view_float", "permute_float", "reshape_negative", "split_negative",
        "expand_new_dim_keep", "expand_negative", "transpose_2d", "transpose_1d", "transpose_0d",
        "flatten_0d", "flatten_0d_end", "squeeze_0d", "t_3d"])
def test_invalid_shape_arguments_raise(call, error: type, message: str, device: str) -> None:
    """Each was accepted (truncated, ignored or read as a size) before, as PyTorch refuses."""
    with pytest.raises(error, match=message):
        call(tg.zeros(2, 2, device=device))


@pytest.mark.parametrize("value, error, message", [
    (lambda d: tg.ones(1, device=d), RuntimeError, r"grad has shape \(1,\).*shape \(3,\)"),
    (lambda d: tg.ones(3, 1, device=d), RuntimeError, r"grad has shape \(3, 1\)"),
    (lambda d: tg.ones(3, dtype=tg.float64, device=d), RuntimeError,
     r"grad has dtype float64.*float32"),
    (lambda d: 3.0, TypeError, r"grad must be a Tensor or None, got float"),
], ids=["shape", "rank", "dtype", "not_a_tensor"])
def test_assigning_a_wrong_grad_is_refused(value, error: type, message: str,
                                           device: str) -> None:
    """A (1,) .grad on a 3-vector was accepted and the next backward broadcast into it."""
    x = tg.ones(3, device=device, requires_grad=True)
    with pytest.raises(error, match=message):
        x.grad = value(device)
    assert x.grad is None
    x.grad = tg.ones(3, device=device)  # the right shape and dtype: accumulated into
    (x * 2.0).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0, 3.0]


@pytest.mark.parametrize("value, dtype", [(1e40, tg.float16), (70000.0, tg.float16),
                                          (-1e39, tg.float32), (2**31, tg.int32),
                                          (1e19, tg.int64)])
def test_full_refuses_a_value_beyond_the_dtype(value: float, dtype: tg.DType,
                                               device: str) -> None:
    """It gave inf (or a wrapped integer) with a NumPy warning; PyTorch raises."""
    with pytest.raises(ValueError, match=rf"full: value .* cannot be converted to "
                                         rf"{dtype.name} without overflow"):
        tg.full((2,), value, dtype=dtype, device=device)
    inf = float("inf")  # a non-finite value is not an overflow
    assert tg.full((2,), inf, dtype=tg.float16, device=device).tolist() == [inf, inf]


def test_relu_of_bools_is_refused(device: str) -> None:
    with pytest.raises(TypeError, match="relu: bool"):
        tg.relu(tg.tensor([True], device=device))


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "silu", "gelu", "elu", "leaky_relu",
                                  "softplus"])
def test_activations_refuse_a_non_tensor_naming_themselves(name: str) -> None:
    with pytest.raises(TypeError, match=rf"^{name} expects a Tensor, got list$"):
        getattr(tg.nn.functional, name)([1.0, -1.0])


def test_gelu_refuses_an_unknown_approximation() -> None:
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        tg.nn.functional.gelu(tg.ones(2), approximate="erf")
