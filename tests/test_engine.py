"""The autograd engine: the lecture examples with hand-computed values first, then the graph
machinery (accumulation, diamonds, retain_graph, deep chains, higher order, hooks, grad modes,
user Functions, anomaly detection, version counters, determinism, memory) and the gradient
conventions at kinks and ties."""

from __future__ import annotations

import gc
import math
import weakref

import numpy as np
import pytest

import tensorgrad as tg


def _t(values: object, device: str, requires_grad: bool = True) -> tg.Tensor:
    return tg.tensor(values, dtype=tg.float64, device=device, requires_grad=requires_grad)


# ---- the lecture examples ----------------------------------------------------------------------

def test_circuit_x_plus_y_times_z(device: str) -> None:
    x, y, z = _t(-2.0, device), _t(5.0, device), _t(-4.0, device)
    q = x + y
    f = q * z
    f.backward()
    assert f.item() == -12.0
    assert (x.grad.item(), y.grad.item(), z.grad.item()) == (-4.0, -4.0, 3.0)
    assert q.grad is None  # non-leaf tensors keep no .grad


def test_sigmoid_neuron_2d(device: str) -> None:
    w = _t([2.0, -3.0, -3.0], device)
    x = _t([-1.0, -2.0], device)
    f = (w[0] * x[0] + w[1] * x[1] + w[2]).sigmoid()
    f.backward()
    s = 1 / (1 + math.exp(-1.0))  # w0 x0 + w1 x1 + w2 = 1
    local = s * (1 - s)            # 0.19661193...
    assert f.item() == pytest.approx(s, abs=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), [2 * local, -3 * local], rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), [-local, -2 * local, local], rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), [0.39322387, -0.58983580], atol=1e-8)


def test_add_gate_distributes(device: str) -> None:
    x, y = _t([1.0, 2.0], device), _t([3.0, -4.0], device)
    (x + y).backward(gradient=_t([0.5, -2.0], device, False))
    np.testing.assert_array_equal(x.grad.numpy(), [0.5, -2.0])
    np.testing.assert_array_equal(y.grad.numpy(), [0.5, -2.0])


def test_max_gate_routes(device: str) -> None:
    x, y = _t([5.0, -1.0], device), _t([2.0, 3.0], device)
    tg.maximum(x, y).backward(gradient=_t([2.0, 7.0], device, False))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 0.0])
    np.testing.assert_array_equal(y.grad.numpy(), [0.0, 7.0])


def test_mul_gate_swaps(device: str) -> None:
    x, y = _t(3.0, device), _t(-4.0, device)
    (x * y).backward(gradient=_t(2.0, device, False))
    assert (x.grad.item(), y.grad.item()) == (-8.0, 6.0)


# ---- graph structure ---------------------------------------------------------------------------

def test_diamond_accumulates(device: str) -> None:
    a = _t(3.0, device)
    b = a + a
    c = b + b
    c.backward()
    assert a.grad.item() == 4.0


@pytest.mark.parametrize("fn, expected", [
    (lambda a: a * a, lambda a: 2 * a),
    (lambda a: a.exp() + a.exp(), lambda a: 2 * np.exp(a)),
    (lambda a: a.sum() + a.sum(dim=0).sum(), lambda a: np.full_like(a, 2.0)),
    (lambda a: tg.cat([a, a]).sum(), lambda a: np.full_like(a, 2.0)),
    (lambda a: a[0] + a[0] * a[1], lambda a: np.array([1 + a[1], a[0]])),
    (lambda a: a @ a, lambda a: 2 * a),
    (lambda a: a.reshape(2, 1) * a.sigmoid(), None),
], ids=["mul", "exp", "sum", "cat", "index", "matmul", "reshape-sigmoid"])
def test_reused_input_in_every_family(fn, expected, device: str) -> None:
    values = np.array([0.5, -1.5])
    a = _t(values, device)
    out = fn(a)
    out = out.sum() if out.ndim else out
    out.backward()
    if expected is None:  # sum_ij a_i s(a_j) = (sum a)(sum s(a)): d/da_k = sum s + sum a s'(a_k)
        s = 1 / (1 + np.exp(-values))
        expected_grad = np.full(2, s.sum()) + values.sum() * s * (1 - s)
    else:
        expected_grad = expected(values)
    np.testing.assert_allclose(a.grad.numpy(), expected_grad, rtol=1e-12)


def test_gradients_accumulate_across_backward_calls(device: str) -> None:
    x = _t([1.0, 2.0], device)
    for _ in range(3):
        (x * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])


def test_second_backward_without_retain_graph_raises(device: str) -> None:
    x = _t([1.0, 2.0], device)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_saved_arrays_freed_after_backward(device: str) -> None:
    x = _t([1.0, 2.0], device)
    z = x * x
    node = z.grad_fn
    z.sum().backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        _ = node.saved_tensors


def test_retain_graph_allows_second_backward(device: str) -> None:
    x = _t([1.0, 2.0], device)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 8.0])


def test_chain_of_100k_ops_backprops_without_recursion() -> None:
    x = tg.tensor(1.0, dtype=tg.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 0.5
    y.backward()
    assert x.grad.item() == 1.0 and y.item() == 50_001.0
    del y  # freeing the deep graph must not recurse either


def test_create_graph_third_order_of_cube(device: str) -> None:
    x = _t(2.0, device)
    y = x ** 3
    (g1,) = tg.grad(y, x, create_graph=True)
    (g2,) = tg.grad(g1, x, create_graph=True)
    (g3,) = tg.grad(g2, x)
    assert (g1.item(), g2.item(), g3.item()) == (12.0, 12.0, 6.0)
    assert x.grad is None  # tg.grad returns gradients, it does not accumulate them


def test_backward_create_graph_gives_differentiable_grad(device: str) -> None:
    x = _t(1.5, device)
    with pytest.warns(UserWarning, match=r"reference cycle.*tg\.grad"):
        (x ** 3).backward(create_graph=True)
    g = x.grad
    assert g.requires_grad
    x.grad = None
    g.backward()
    assert x.grad.item() == pytest.approx(9.0)  # d/dx 3x^2 = 6x


def test_grad_allow_unused(device: str) -> None:
    x, unused = _t(2.0, device), _t(5.0, device)
    y = x * 3.0
    with pytest.raises(RuntimeError, match="allow_unused"):
        tg.grad(y, [x, unused], retain_graph=True)
    gx, gu = tg.grad(y, [x, unused], allow_unused=True)
    assert gx.item() == 3.0 and gu is None


def test_backward_of_a_leaf_itself(device: str) -> None:
    x = _t([1.0, 2.0], device)
    x.backward(_t([0.5, -3.0], device, requires_grad=False))
    np.testing.assert_array_equal(x.grad.numpy(), [0.5, -3.0])
    (gx,) = tg.grad(x, x, grad_outputs=_t([2.0, 7.0], device, requires_grad=False))
    np.testing.assert_array_equal(gx.numpy(), [2.0, 7.0])


def test_leaf_that_stops_requiring_grad_after_the_forward_gets_no_grad(device: str) -> None:
    # As PyTorch: the recorded graph still reaches x, but x no longer accumulates.
    x, other = _t([1.0, 2.0], device), _t([3.0, 4.0], device)
    y = (x * other).sum()
    x.requires_grad_(False)
    y.backward()
    assert x.grad is None
    np.testing.assert_array_equal(other.grad.numpy(), [1.0, 2.0])


def test_grad_leaves_every_dot_grad_alone(device: str) -> None:
    x, other = _t([1.0, 2.0], device), _t([3.0, 4.0], device)
    y = (x * other).sum()
    (gx,) = tg.grad(y, x)
    np.testing.assert_array_equal(gx.numpy(), [3.0, 4.0])
    assert x.grad is None and other.grad is None


def test_grad_of_non_leaf_input(device: str) -> None:
    x = _t([1.0, 2.0], device)
    h = x * 2.0
    (gh,) = tg.grad((h * h).sum(), h)
    np.testing.assert_array_equal(gh.numpy(), [4.0, 8.0])


# ---- hooks -------------------------------------------------------------------------------------

def test_hook_replaces_leaf_gradient_and_handle_removes_it(device: str) -> None:
    x = _t([1.0, 2.0], device)
    seen = []
    handle = x.register_hook(lambda g: g * 10.0)
    x.register_hook(lambda g: seen.append(g.numpy().copy()))
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [30.0, 30.0])
    np.testing.assert_array_equal(seen[0], [30.0, 30.0])
    handle.remove()
    x.grad = None
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


def test_hook_on_non_leaf_sees_and_replaces_its_gradient(device: str) -> None:
    x = _t([1.0, 2.0], device)
    h = x * 2.0
    seen = []
    h.register_hook(lambda g: seen.append(g.numpy().copy()))
    h.register_hook(lambda g: g * 0.5)
    (h * h).sum().backward()
    np.testing.assert_array_equal(seen[0], [4.0, 8.0])  # 2h
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 8.0])  # 0.5 * 2h * 2
    assert h.grad is None


# ---- grad modes --------------------------------------------------------------------------------

def test_no_grad_and_enable_grad_as_contexts(device: str) -> None:
    x = _t([1.0], device)
    assert tg.is_grad_enabled()
    with tg.no_grad():
        assert not tg.is_grad_enabled()
        y = x * 2.0
        with tg.enable_grad():
            z = x * 2.0
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None


def test_no_grad_and_enable_grad_as_decorators(device: str) -> None:
    x = _t([1.0], device)

    @tg.no_grad()
    def frozen(t: tg.Tensor) -> tg.Tensor:
        return t * 2.0

    @tg.enable_grad()
    def recorded(t: tg.Tensor) -> tg.Tensor:
        return t * 2.0

    assert not frozen(x).requires_grad
    with tg.no_grad():
        assert recorded(x).requires_grad
    assert frozen.__name__ == "frozen"
    assert tg.is_grad_enabled()


def test_grad_mode_restored_after_exception() -> None:
    with pytest.raises(ValueError):
        with tg.no_grad():
            raise ValueError("boom")
    assert tg.is_grad_enabled()


# ---- user Functions ----------------------------------------------------------------------------

class _Cube(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, gy):
        (x,) = ctx.saved_tensors
        return gy * 3.0 * x * x


class _ScaledAdd(tg.autograd.Function):
    """Two tensor inputs and a plain float; returns None for the float."""

    @staticmethod
    def forward(ctx, a, b, alpha):
        ctx.alpha = alpha
        return a + b * alpha

    @staticmethod
    def backward(ctx, gy):
        return gy, gy * ctx.alpha, None


def test_function_with_save_for_backward(device: str, rng: np.random.Generator) -> None:
    x = _t(rng.standard_normal((3, 2)), device)
    y = _Cube.apply(x)
    assert "_Cube" in repr(y.grad_fn)
    np.testing.assert_allclose(y.numpy(), x.numpy() ** 3)
    tg.autograd.gradcheck(_Cube.apply, [x])
    (gx,) = tg.grad(_Cube.apply(x).sum(), x)
    np.testing.assert_allclose(gx.numpy(), 3 * x.numpy() ** 2)


def test_function_with_non_tensor_argument(device: str) -> None:
    a, b = _t([1.0, 2.0], device), _t([3.0, 4.0], device)
    _ScaledAdd.apply(a, b, 0.5).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(b.grad.numpy(), [0.5, 0.5])


def test_function_forward_is_not_recorded(device: str) -> None:
    seen = []

    class Probe(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            seen.append(tg.is_grad_enabled())
            return x * 2.0

        @staticmethod
        def backward(ctx, gy):
            return gy * 2.0

    y = Probe.apply(_t([1.0], device))
    assert seen == [False] and y.requires_grad


class _RawCube(tg.autograd.Function):
    """x ** 3 with a backward on raw arrays, marked as such."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    @tg.autograd.once_differentiable
    def backward(ctx, gy):
        (x,) = ctx.saved_tensors
        return tg.tensor(3.0 * gy.numpy() * x.numpy() ** 2, device=gy.device)


def test_once_differentiable_first_order_is_unchanged(device: str) -> None:
    x = _t([1.0, -2.0], device)
    _RawCube.apply(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 12.0])
    (g,) = tg.grad(_RawCube.apply(x).sum(), x, create_graph=True)
    np.testing.assert_array_equal(g.numpy(), [3.0, 12.0])  # its value is still right


def test_once_differentiable_refuses_a_second_derivative(device: str) -> None:
    x = _t([1.0, -2.0], device)
    (g,) = tg.grad(_RawCube.apply(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"_RawCubeBackward.*once_differentiable"):
        (g.sum() + x.sum()).backward()  # it would have given [1, 1], not 6x + 1


def test_once_differentiable_on_an_op() -> None:
    class RawSquare(tg.autograd.Op):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @tg.autograd.once_differentiable
        def backward(ctx, gy):
            (x,) = ctx.saved_tensors
            return tg.Tensor(2.0 * x.data * gy.data)

    x = _t([3.0], "cpu")
    (g,) = tg.grad(RawSquare.apply(x), x, create_graph=True)
    assert g.item() == 6.0
    with pytest.raises(RuntimeError, match=r"RawSquareBackward's backward is once_diff"):
        tg.grad(g, x)


def test_prod_second_derivative(device: str) -> None:
    """The issue's example: prod's backward used to be a constant under create_graph."""
    x = _t([1.0, 2.0, 3.0], device)
    (g,) = tg.grad(x.prod(), x, create_graph=True)
    (g.sum() + x.sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 5.0, 4.0])  # PyTorch's
    x, w = _t([1.0, 2.0], device), _t([3.0, 4.0], device)
    (g,) = tg.grad((x * w).prod(), x, create_graph=True)
    (h,) = tg.grad(g.sum(), w)
    np.testing.assert_array_equal(h.numpy(), [12.0, 9.0])  # d/dw of w0 w1 (x1 + x0) w_other


@pytest.mark.parametrize("values", [[0.0, 3.0, 2.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
@pytest.mark.parametrize("dim", [None, 1])
def test_prod_derivatives_with_zeros(values: list[float], dim: int | None, device: str) -> None:
    """d prod / dx_p and d2 prod / dx_p dx_q are products of the rest of the slice, also where
    the rest holds zeros; checked against those products written out."""
    a = np.array([values, [1.5, -2.0, 0.5]])
    x = _t(a, device)
    w = np.array([[1.0, 2.0, 3.0]] * 2)
    (g,) = tg.grad(x.prod(dim).sum(), x, create_graph=True)
    (h,) = tg.grad((g * _t(w, device, False)).sum(), x)
    cells = list(np.ndindex(2, 3))
    slices = [cells[:3], cells[3:]] if dim == 1 else [cells]
    grad, hess_w = np.zeros_like(a), np.zeros_like(a)
    for cells in slices:
        for p in cells:
            grad[p] = np.prod([a[k] for k in cells if k != p])
            hess_w[p] = sum(w[q] * np.prod([a[k] for k in cells if k not in (p, q)])
                            for q in cells if q != p)
    np.testing.assert_allclose(g.numpy(), grad)
    np.testing.assert_allclose(h.numpy(), hess_w)


@pytest.mark.parametrize("values, expected", [([0.0, 0.0], [0.0, 0.0]), ([0.0], [1.0]),
                                             ([0.0, 0.0, 3.0], [0.0, 0.0, 0.0])])
def test_prod_gradient_of_all_zeros_under_create_graph(values: list[float], expected: list[float],
                                                       device: str) -> None:
    x = _t(values, device)
    (g,) = tg.grad(x.prod(), x, create_graph=True)
    np.testing.assert_array_equal(g.numpy(), expected)


# ---- anomaly detection -------------------------------------------------------------------------

def test_detect_anomaly_names_op_in_forward(device: str) -> None:
    x = _t([-1.0, 1.0], device)
    with tg.autograd.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"(?s)LogBackward.*created at"):
            x.log()


def test_detect_anomaly_names_op_in_backward(device: str) -> None:
    x = _t([0.0, 4.0], device)
    with tg.autograd.detect_anomaly():
        y = x.sqrt().sum()  # sqrt(0) = 0 is finite; its gradient 1/(2*0) is not
        with pytest.raises(FloatingPointError, match=r"SqrtBackward"):
            y.backward()


def test_detect_anomaly_in_backward_of_a_forward_run_outside_it(device: str) -> None:
    """The case users hit first: it raised AttributeError ('Sqrt' object has no attribute
    'trace') instead of naming the op."""
    x = _t([0.0, 4.0], device)
    y = x.sqrt().sum()
    with tg.autograd.detect_anomaly():
        with pytest.raises(FloatingPointError,
                           match=r"SqrtBackward: gradient for input 0 contains NaN or Inf\. "
                                 r"Its creation trace was not recorded: the forward ran "
                                 r"outside detect_anomaly\(\)"):
            y.backward()


def test_no_anomaly_check_outside_detect_anomaly(device: str) -> None:
    x = _t([-1.0], device)
    assert np.isnan(x.log().item())


# ---- version counter ---------------------------------------------------------------------------

def test_inplace_change_of_saved_tensor_raises_at_backward(device: str) -> None:
    x = _t([1.0, 2.0], device)
    y = x * 2.0
    z = y * y  # Mul saves y
    y += 1.0
    with pytest.raises(RuntimeError, match=r"modified in place.*MulBackward.*clone"):
        z.sum().backward()


def test_inplace_change_of_saved_constant_raises_at_backward(device: str) -> None:
    x = _t([1.0, 2.0], device)
    w = _t([3.0, 4.0], device, requires_grad=False)
    z = x * w
    w *= 2.0
    with pytest.raises(RuntimeError, match="modified in place"):
        z.sum().backward()


def test_inplace_on_leaf_requiring_grad_raises(device: str) -> None:
    x = _t([1.0, 2.0], device)
    with pytest.raises(RuntimeError, match=r"leaf.*no_grad"):
        x += 1.0
    with pytest.raises(RuntimeError, match="leaf"):
        x[0] = 5.0


def test_inplace_on_leaf_under_no_grad_works(device: str) -> None:
    x = _t([1.0, 2.0], device)
    with tg.no_grad():
        x -= 0.5
        x *= 2.0
    np.testing.assert_array_equal(x.numpy(), [1.0, 3.0])
    assert x.requires_grad and x.is_leaf
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 6.0])


def test_clone_is_the_fix_for_inplace(device: str) -> None:
    x = _t([1.0, 2.0], device)
    y = x * 2.0
    z = y * y
    c = y.clone()
    c += 1.0
    (z.sum() + (c * c).sum()).backward()
    # d/dx [(2x)^2 + (2x + 1)^2] = 8x + 4(2x + 1)
    np.testing.assert_array_equal(x.grad.numpy(), [20.0, 36.0])


def test_recorded_inplace_on_non_leaf_has_right_gradient(device: str) -> None:
    x = _t([1.0, 2.0], device)
    y = x * 3.0
    y *= 2.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])


def test_inplace_with_a_grad_requiring_operand_is_recorded(device: str) -> None:
    """A tensor that needs no grad, changed in place by one that does, joins the graph (as in
    PyTorch) instead of dropping the other side's gradient."""
    x = _t([1.0, 2.0, 3.0], device)
    y = tg.zeros(3, dtype="float64", device=device)
    y += x * 2.0
    assert y.requires_grad and not y.is_leaf
    z = tg.zeros(4, dtype="float64", device=device)
    z[1:] = x * 3.0
    ((y * y).sum() + (z * z).sum()).backward()
    # d/dx [(2x)^2 + (3x)^2] = 26x
    np.testing.assert_array_equal(x.grad.numpy(), [26.0, 52.0, 78.0])


def test_recorded_inplace_op_keeps_its_own_input_for_backward(device: str) -> None:
    """y *= w saves y's old values for w's gradient: the in-place write must not change them."""
    x = _t([1.0, 2.0, 3.0], device)
    w = _t([2.0, 3.0, 4.0], device)
    y = x * 1.0
    y *= w
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 3.0, 4.0])
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 2.0, 3.0])
    z = x * 2.0
    z /= 4.0  # Div saves its first input even when only its scalar divisor is used
    z.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.5, 3.5, 4.5])


@pytest.mark.parametrize("change", [
    "v *= 2.0",             # through a slice of a non-leaf: its base's history misses it
    "y *= 3.0",             # the base, after a view was taken: the view's history misses it
    "v[0] = 5.0",           # item assignment through the view
    "r = y.reshape(3, 1); r += 1.0",
    "t = y.expand(2, 3); y.sub_(1.0)",
])
def test_inplace_through_recorded_views_is_refused(device: str, change: str) -> None:
    # PyTorch rebases the other side's history; tensorgrad refuses rather than let either
    # gradient come out wrong.
    x = _t([1.0, 2.0, 3.0], device)
    y = x * 1.0
    v = y[0:2]
    with pytest.raises(RuntimeError, match=r"shares memory with a view.*clone"):
        exec(change, {}, {"y": y, "v": v})
    np.testing.assert_array_equal(y.numpy(), [1.0, 2.0, 3.0])  # refused before any write


def test_inplace_on_a_view_of_a_leaf_is_refused(device: str) -> None:
    x = _t([1.0, 2.0, 3.0], device)
    v = x[0:2]
    with pytest.raises(RuntimeError, match="shares memory with a view"):
        v += 1.0
    np.testing.assert_array_equal(x.numpy(), [1.0, 2.0, 3.0])


def test_views_under_no_grad_leave_inplace_changes_free(device: str) -> None:
    x = _t([1.0, 2.0, 3.0], device)
    y = x * 1.0
    with tg.no_grad():
        v = y[0:2]
        v *= 2.0  # untracked, as in PyTorch: the values change, the history does not
    y *= 3.0
    y.sum().backward()
    np.testing.assert_array_equal(y.numpy(), [6.0, 12.0, 9.0])
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0, 3.0])


# ---- determinism and memory --------------------------------------------------------------------

def _messy_gradients(device: str) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    a = _t(rng.standard_normal((5, 4)), device)
    b = _t(rng.standard_normal((4, 3)), device)
    h = (a @ b).tanh()
    parts = [h.sum(dim=0), (h * h).mean(dim=0), h.softmax(-1).max(dim=0).values,
             a[[0, 0, 3]].sum(dim=0)[:3]]
    total = sum((p * (k + 1.3)).sum() for k, p in enumerate(parts))
    total = total + (a.exp() @ b).logsumexp(dim=1).sum()
    total.backward()
    return [a.grad.numpy().copy(), b.grad.numpy().copy()]


def test_gradients_are_bitwise_deterministic(device: str) -> None:
    first, second = _messy_gradients(device), _messy_gradients(device)
    for g1, g2 in zip(first, second):
        assert g1.tobytes() == g2.tobytes()


def test_graph_is_freed_without_the_garbage_collector(device: str) -> None:
    gc.collect()
    gc.disable()
    try:
        x = _t(np.arange(6.0).reshape(2, 3), device)
        h = (x * 2.0).exp()
        y = (h.sigmoid() @ x.T).sum()
        nodes = [weakref.ref(h.grad_fn), weakref.ref(y.grad_fn)]
        saved = weakref.ref(h.data)
        y.backward()
        del h, y
        assert all(ref() is None for ref in nodes)
        assert saved() is None
        assert x.grad is not None
    finally:
        gc.enable()


# ---- conventions at kinks and ties -------------------------------------------------------------

def test_full_max_splits_ties_evenly(device: str) -> None:
    x = _t([1.0, 3.0, 3.0, 2.0], device)
    x.max().backward(gradient=_t(4.0, device, False))
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 2.0, 2.0, 0.0])
    y = _t([[5.0, 5.0], [5.0, 1.0]], device)
    tg.amin(y, dim=(0, 1)).backward()
    np.testing.assert_allclose(y.grad.numpy(), [[0.0, 0.0], [0.0, 1.0]])
    z = _t([[2.0, 2.0], [2.0, 1.0]], device)
    z.amax(dim=(0, 1)).backward()
    np.testing.assert_allclose(z.grad.numpy(), [[1 / 3, 1 / 3], [1 / 3, 0.0]])


def test_max_along_dim_routes_to_one_index(device: str) -> None:
    x = _t([[3.0, 3.0, 1.0], [0.0, 2.0, 2.0]], device)
    values, indices = x.max(dim=1)
    values.backward(gradient=_t([5.0, 7.0], device, False))
    grad = x.grad.numpy()
    np.testing.assert_array_equal(grad.sum(axis=1), [5.0, 7.0])  # all of upstream, once
    assert (grad != 0).sum(axis=1).tolist() == [1, 1]
    assert grad[0, indices.numpy()[0]] == 5.0 and grad[1, indices.numpy()[1]] == 7.0
    m = _t([[1.0, 1.0]], device)
    m.min(dim=-1).values.sum().backward()
    assert sorted(m.grad.numpy().ravel().tolist()) == [0.0, 1.0]


@pytest.mark.parametrize("fn", [tg.relu, tg.abs, lambda x: abs(x), lambda x: x.relu()],
                         ids=["relu", "abs", "builtin-abs", "relu-method"])
def test_gradient_is_zero_at_the_kink(fn, device: str) -> None:
    x = _t([0.0, -0.0, 2.0], device)
    fn(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])


@pytest.mark.parametrize("fn", [
    lambda m, x: x.max(), lambda m, x: x.min(), lambda m, x: x[:2].max(),
    lambda m, x: m.abs(x).sum(), lambda m, x: x.reshape(2, 2).max(1).values.sum(),
    lambda m, x: (m.relu(x) * m.arange(4.0, dtype=x.dtype, device=x.device)).sum(),
], ids=["max", "min", "max_one_nan", "abs", "max_dim", "relu"])
def test_nan_inputs_give_pytorchs_gradients(fn, device: str) -> None:
    """A NaN maximum sends its gradient to the NaNs (it gave NaN everywhere), abs' gradient at
    NaN is 0 (it was NaN), relu passes the gradient at a NaN through (it gave 0), as PyTorch."""
    torch = pytest.importorskip("torch")
    values = [1.0, math.nan, 3.0, math.nan]
    x, t = _t(values, device), torch.tensor(values, requires_grad=True)
    fn(tg, x).backward()
    fn(torch, t).backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())


def test_relus_gradient_of_gradient_passes_at_nan(device: str) -> None:
    """The recorded relu backward (ActivationGrad) uses the same mask as its kernel."""
    torch = pytest.importorskip("torch")
    values, weights = [-1.0, math.nan, 0.0, 2.0], [1.0, 2.0, 3.0, 4.0]
    results = []
    for m, x, v in ((tg, _t(values, device, False), _t(weights, device)),
                    (torch, torch.tensor(values, dtype=torch.float64),
                     torch.tensor(weights, dtype=torch.float64, requires_grad=True))):
        x.requires_grad_(True)
        (g,) = m.autograd.grad(m.relu(x), [x], grad_outputs=[v], create_graph=True)
        (g * g).sum().backward()
        results.append((g.detach().numpy(), v.grad.numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("beta, threshold", [(1.0, 20.0), (2.0, 3.0), (0.5, 1.0)])
def test_softplus_at_its_threshold_follows_torch(beta: float, threshold: float,
                                                  device: str) -> None:
    # Exactly at beta x = threshold softplus is still the smooth branch (PyTorch's `>`); the
    # points just beyond it are linear.
    torch = pytest.importorskip("torch")
    edge = threshold / beta
    values = [edge, np.nextafter(edge, np.inf), np.nextafter(edge, -np.inf), edge + 1.0]
    x = _t(values, device)
    xt = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    y = tg.nn.functional.softplus(x, beta, threshold)
    yt = torch.nn.functional.softplus(xt, beta, threshold)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-15)
    w = [0.5, -2.0, 3.0, 0.25]
    (y * _t(w, device, requires_grad=False)).sum().backward()
    (yt * torch.tensor(w, dtype=torch.float64)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-15)


@pytest.mark.parametrize("fn, name", [
    (tg.relu, "Relu"), (tg.sigmoid, "Sigmoid"), (tg.tanh, "Tanh"), (tg.silu, "Silu"),
    (tg.nn.functional.leaky_relu, "LeakyRelu"), (tg.nn.functional.elu, "Elu"),
    (tg.nn.functional.gelu, "Gelu"), (lambda x: tg.nn.functional.gelu(x, approximate="tanh"),
                                      "GeluTanh"),
    (tg.nn.functional.softplus, "Softplus"),
])
def test_fused_activation_nodes_are_named_after_the_activation(fn, name: str,
                                                               device: str) -> None:
    x = _t([0.5, -1.0], device)
    y = fn(x)
    (gx,) = tg.grad(y.sum(), x, create_graph=True)
    assert y.grad_fn.name() == f"{name}Backward"
    assert gx.grad_fn.name() == f"{name}GradBackward"
    gx.sum().backward()
    with pytest.raises(RuntimeError, match=f"{name}GradBackward already ran its backward"):
        gx.sum().backward()


def test_clamp_passes_gradient_at_its_bounds(device: str) -> None:
    x = _t([-1.0, 0.0, 1.0, 2.0], device)
    x.clamp(0.0, 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, 1.0, 0.0])  # as PyTorch


def test_double_where_gives_finite_gradient(device: str) -> None:
    x = _t([0.0, -1.0, 2.0], device)
    positive = x > 0.0
    safe = tg.where(positive, x, 1.0)
    y = tg.where(positive, safe.log(), 0.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.5])


def test_pow_with_negative_base(device: str) -> None:
    x = _t([-2.0, -0.5], device)
    (x ** 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [12.0, 0.75])
    a, b = _t([-2.0], device), _t([2.0], device)
    (a ** b).sum().backward()
    assert a.grad.item() == -4.0       # d/da a^b = b a^(b-1): finite
    assert np.isnan(b.grad.item())     # d/db = a^b log(a): NaN for a < 0, as PyTorch


def test_pow_at_base_zero_follows_pytorch(device: str) -> None:
    # d/da a^0 is 0 even at a = 0 (not 0 * 0^-1); d/db 0^b is 0 for b >= 0 (not 0 * log 0).
    x = _t([0.0, 2.0], device)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])
    a, b = _t([0.0, 0.0, 0.0], device), _t([2.0, 0.0, 0.5], device)
    with np.errstate(all="raise"):  # and no NaN or 0 * inf on the way
        (a ** b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 0.0, np.inf])
    np.testing.assert_array_equal(b.grad.numpy(), [0.0, 0.0, 0.0])
    e = _t([1.0, 2.0], device)
    (0.0 ** e).sum().backward()  # a Python base of 0
    np.testing.assert_array_equal(e.grad.numpy(), [0.0, 0.0])
    c = _t([0.0, 3.0], device, requires_grad=False)
    d = _t([0.0, 2.0], device)
    (d ** c).sum().backward()  # an exponent tensor holding 0
    np.testing.assert_array_equal(d.grad.numpy(), [0.0, 12.0])


def test_repeated_advanced_indices_accumulate(device: str) -> None:
    x = _t([10.0, 20.0], device)
    y = x[[1, 0, 1]]
    np.testing.assert_array_equal(y.numpy(), [20.0, 10.0, 20.0])
    y.backward(gradient=_t([1.0, 2.0, 3.0], device, False))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])
    m = _t(np.zeros((3, 2)), device)
    m[tg.tensor([2, 2, 0], device=device), 1].sum().backward()
    np.testing.assert_array_equal(m.grad.numpy(), [[0.0, 1.0], [0.0, 0.0], [0.0, 2.0]])


def test_prod_gradient_with_a_zero(device: str) -> None:
    x = _t([2.0, 0.0, 3.0], device)
    x.prod().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 6.0, 0.0])


@pytest.mark.parametrize("make", [
    lambda x: x.sum(), lambda x: x.mean(), lambda x: x.max(), lambda x: x.min(),
    lambda x: x.prod(), lambda x: x.var(), lambda x: x.std(), lambda x: x.logsumexp(0),
    lambda x: x[1], lambda x: x @ x, lambda x: x.argmax(), lambda x: (x > 0).any(),
    lambda x: x.sum().exp(), lambda x: x.sum() * 2.0, lambda x: x.sum().relu(),
    lambda x: x.max(dim=0).values, lambda x: x.max(dim=0).indices, lambda x: x[0] > 0.5,
    lambda x: x.argmin(dim=0), lambda x: x.min(dim=-1).indices,
    lambda x: x.sum().to(dtype=tg.float32), lambda x: -x.sum(), lambda x: abs(x[0]),
])
def test_results_hold_arrays_never_numpy_scalars(make, device: str) -> None:
    x = _t([0.25, 1.5, -0.5], device)
    out = make(x)
    array_type = type(tg.zeros(1, device=device).data)
    assert type(out.data) is array_type and out.shape == ()
    if out.requires_grad:
        out.backward()
        assert type(x.grad.data) is array_type


# ---- what the walk promises about the gradients it hands out -----------------------------------

@pytest.mark.parametrize("make", [lambda a, b: a + b, lambda a, b: (a + b.T) * 2.0],
                         ids=["a+b", "(a+b.T)*2"])
def test_leaf_gradients_never_share_memory(make, device: str) -> None:
    # One gradient array reaches both leaves (add passes it on), or one is a view of the other
    # (the transpose): each .grad must be its own array, as optimizers change it in place.
    a = _t([[1.0, 2.0], [3.0, 4.0]], device)
    b = _t([[5.0, 6.0], [7.0, 8.0]], device)
    make(a, b).sum().backward()
    expected = b.grad.numpy().copy()
    a.grad.add_(100.0)
    np.testing.assert_array_equal(b.grad.numpy(), expected)
    b.grad.mul_(0.0)
    assert (a.grad.numpy() > 100.0).all()


def test_backward_twice_through_ops_that_save_nothing_raises(device: str) -> None:
    x = _t([1.0, 2.0], device)
    y = (x + 1.0).sum()   # add of a scalar and sum keep no saved arrays
    y.backward()
    with pytest.raises(RuntimeError, match=r"SumBackward.*retain_graph=True"):
        y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])


class _DoubleInFloat64(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2.0

    @staticmethod
    def backward(ctx, gy):
        return gy.to(dtype=tg.float64) * 2.0


def test_function_gradient_is_cast_to_its_inputs_dtype(device: str) -> None:
    x = tg.tensor([1.0, 2.0], dtype=tg.float32, device=device, requires_grad=True)
    _DoubleInFloat64.apply(x).sum().backward()
    assert x.grad.dtype == tg.float32
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


class _TwoOutputs(tg.autograd.Function):
    received: list[tg.Tensor] = []

    @staticmethod
    def forward(ctx, x):
        return x * 2.0, x * 3.0

    @staticmethod
    def backward(ctx, g_double, g_triple):
        _TwoOutputs.received[:] = [g_double, g_triple]
        return g_double * 2.0 + g_triple * 3.0


def test_unused_output_of_a_function_gets_a_zero_gradient(device: str) -> None:
    x = _t([1.0, 2.0, 3.0], device)
    double, _ = _TwoOutputs.apply(x)
    (double * _t([1.0, 10.0, 100.0], device, requires_grad=False)).sum().backward()
    g_double, g_triple = _TwoOutputs.received
    np.testing.assert_array_equal(g_double.numpy(), [1.0, 10.0, 100.0])
    assert isinstance(g_triple, tg.Tensor) and g_triple.shape == (3,)
    np.testing.assert_array_equal(g_triple.numpy(), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 20.0, 200.0])


class _GradForBoth(tg.autograd.Function):
    """Returns a gradient for `y` too, even one of the wrong shape and dtype."""

    @staticmethod
    def forward(ctx, x, y):
        return x * 2.0 + y.sum()

    @staticmethod
    def backward(ctx, gy):
        return gy * 2.0, tg.ones(7, dtype=tg.float32, device=gy.device)


def test_gradient_for_an_input_that_needs_none_is_dropped(device: str) -> None:
    # As PyTorch: the input needs no gradient, so what backward returns for it is not checked.
    x = _t([1.0, 2.0, 3.0], device)
    y = _t([1.0, 1.0, 1.0], device, requires_grad=False)
    _GradForBoth.apply(x, y).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])
    assert y.grad is None


class _GradOnTheCpu(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2.0

    @staticmethod
    def backward(ctx, gy):
        return (gy * 2.0).to("cpu")


def test_function_gradient_on_another_device_raises(device: str) -> None:
    if device == "cpu":
        pytest.skip("needs an input on a second device")
    x = _t([1.0, 2.0], device)
    with pytest.raises(RuntimeError,
                       match=r"_GradOnTheCpuBackward returned a gradient "
                             r"on cpu for input 0 on cuda:0"):
        _GradOnTheCpu.apply(x).sum().backward()
