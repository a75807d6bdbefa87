"""Tensor creation, attributes, conversions (NumPy, DLPack, PyTorch), detach/clone, repr,
in-place operators and item assignment."""

from __future__ import annotations

import numpy as np
import pytest

import tensorgrad as tg

# ---- creation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("data, dtype", [
    (1.5, tg.float32), ([1.0, 2.0], tg.float32), (3, tg.int64), ([[1, 2]], tg.int64),
    (True, tg.bool), ([True, False], tg.bool), ([1, 2.5], tg.float32),
    (np.arange(3, dtype=np.int32), tg.int32), (np.ones(2), tg.float64),
    (np.float16(2.0), tg.float16),
])
def test_tensor_dtype_defaults(data: object, dtype: tg.DType, device: str) -> None:
    t = tg.tensor(data, device=device)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t.numpy(), np.asarray(data))


def test_tensor_copies_its_input(device: str) -> None:
    a = np.array([1.0, 2.0], dtype=np.float32)
    t = tg.tensor(a, device=device)
    a[0] = 9.0
    assert t.tolist() == [1.0, 2.0]


def test_from_numpy_shares_memory() -> None:
    a = np.array([1.0, 2.0])
    t = tg.from_numpy(a)
    a[0] = 9.0
    assert t.tolist() == [9.0, 2.0] and t.dtype == tg.float64 and t.device == "cpu"
    with pytest.raises(TypeError, match="NumPy array"):
        tg.from_numpy([1.0])


@pytest.mark.parametrize("make, shape, dtype", [
    (lambda d: tg.zeros(2, 3, device=d), (2, 3), tg.float32),
    (lambda d: tg.zeros((2, 3), device=d), (2, 3), tg.float32),
    (lambda d: tg.ones(4, dtype=tg.int64, device=d), (4,), tg.int64),
    (lambda d: tg.empty(0, 2, device=d), (0, 2), tg.float32),
    (lambda d: tg.full((2,), 3, device=d), (2,), tg.int64),
    (lambda d: tg.full((2,), 3.0, device=d), (2,), tg.float32),
    (lambda d: tg.full((), True, device=d), (), tg.bool),
    (lambda d: tg.arange(5, device=d), (5,), tg.int64),
    (lambda d: tg.arange(0.0, 1.0, 0.25, device=d), (4,), tg.float32),
    (lambda d: tg.linspace(0, 1, 5, device=d), (5,), tg.float32),
    (lambda d: tg.eye(2, 3, device=d), (2, 3), tg.float32),
    (lambda d: tg.rand(3, 2, device=d), (3, 2), tg.float32),
    (lambda d: tg.randn(3, dtype=tg.float64, device=d), (3,), tg.float64),
    (lambda d: tg.randint(0, 5, (4,), device=d), (4,), tg.int64),
    (lambda d: tg.randint(5, (2, 3), device=d), (2, 3), tg.int64),  # torch's (high, size)
    (lambda d: tg.zeros_like(tg.ones(2, dtype=tg.int32, device=d)), (2,), tg.int32),
    (lambda d: tg.ones_like(tg.ones(2, 2, device=d), dtype=tg.float64), (2, 2), tg.float64),
    (lambda d: tg.full_like(tg.ones(3, device=d), 7.0), (3,), tg.float32),
    (lambda d: tg.randn_like(tg.ones(3, device=d)), (3,), tg.float32),
])
def test_creation_functions(make, shape: tuple[int, ...], dtype: tg.DType, device: str) -> None:
    t = make(device)
    assert t.shape == shape and t.dtype == dtype and t.device == device
    assert not t.requires_grad and t.is_leaf and t.grad_fn is None


def test_creation_values(device: str) -> None:
    assert tg.arange(2, 8, 2, device=device).tolist() == [2, 4, 6]
    assert tg.linspace(0, 1, 5, device=device).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert tg.eye(2, device=device).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert tg.full((2,), 1.5, device=device).tolist() == [1.5, 1.5]
    r = tg.randint(3, 6, (200,), device=device).numpy()
    assert r.min() >= 3 and r.max() <= 5
    u = tg.rand(1000, device=device).numpy()
    assert 0.0 <= u.min() and u.max() < 1.0


def test_manual_seed_repeats_random_tensors(device: str) -> None:
    tg.manual_seed(123)
    a = tg.randn(5, device=device).numpy()
    tg.manual_seed(123)
    b = tg.randn(5, device=device).numpy()
    np.testing.assert_array_equal(a, b)


def test_requires_grad_at_creation(device: str) -> None:
    t = tg.zeros(2, requires_grad=True, device=device)
    assert t.requires_grad and t.is_leaf
    assert tg.tensor([1.0], requires_grad=True, device=device).requires_grad


# ---- attributes --------------------------------------------------------------------------------

def test_attributes(device: str) -> None:
    t = tg.ones(2, 3, device=device)
    assert (t.shape, t.ndim, t.dtype) == ((2, 3), 2, tg.float32)
    assert t.T.shape == (3, 2) and t.size() == (2, 3) and t.size(1) == 3
    assert t.numel() == 6 and len(t) == 2 and t.dim() == 2
    y = t.requires_grad_() * 2.0
    assert not y.is_leaf and y.grad_fn is not None and "MulBackward" in repr(y.grad_fn)
    assert isinstance(t.data, type(tg.zeros(1, device=device).data))


# ---- conversions -------------------------------------------------------------------------------

def test_numpy_item_tolist(device: str) -> None:
    t = tg.tensor([[1.0, 2.0], [3.0, 4.0]], device=device)
    a = t.numpy()
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert t[1, 0].item() == 3.0 and isinstance(t[1, 0].item(), float)
    assert isinstance(tg.tensor(5, device=device).item(), int)
    assert float(tg.tensor([2.5], device=device)) == 2.5
    assert int(tg.tensor(7, device=device)) == 7
    with pytest.raises(ValueError, match=r"one element.*\(2, 2\)"):
        t.item()


def test_numpy_of_cpu_tensor_shares_memory() -> None:
    t = tg.tensor([1.0, 2.0])
    t.numpy()[0] = 5.0
    assert t.tolist() == [5.0, 2.0]


def test_array_protocol(device: str) -> None:
    t = tg.tensor([1.0, 2.0], device=device)
    a = np.asarray(t)
    assert isinstance(a, np.ndarray) and a.tolist() == [1.0, 2.0]
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert np.array(t).dtype == np.float32


def test_to_dtype_and_device(device: str) -> None:
    x = tg.tensor([1.5, -2.5], device=device, requires_grad=True)
    y = x.to(dtype=tg.float64)
    assert y.dtype == tg.float64 and y.requires_grad
    assert x.to(tg.float32) is x and x.to(device) is x
    assert x.to("cpu").device == "cpu" and x.cpu().device == "cpu"
    assert x.to("cpu", tg.float64).dtype == tg.float64
    assert x.to(dtype=tg.int64).tolist() == [1, -2]
    assert not x.to(dtype=tg.int64).requires_grad
    (y * y).sum().backward()
    assert x.grad.dtype == tg.float32
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, -5.0])
    assert x.double().dtype == tg.float64 and x.half().dtype == tg.float16
    assert x.long().dtype == tg.int64 and x.int().dtype == tg.int32
    assert (x > 0).dtype == tg.bool and x.bool().tolist() == [True, True]


def test_dlpack_round_trip_with_numpy() -> None:
    t = tg.tensor([1.0, 2.0, 3.0])
    a = np.from_dlpack(t)
    np.testing.assert_array_equal(a, [1.0, 2.0, 3.0])
    a[0] = 7.0  # zero-copy both ways
    assert t.tolist()[0] == 7.0
    back = tg.from_dlpack(np.arange(4.0))
    assert back.dtype == tg.float64 and back.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_dlpack_round_trip_with_torch() -> None:
    torch = pytest.importorskip("torch")
    t = tg.tensor([[1.0, 2.0], [3.0, 4.0]])
    pt = torch.from_dlpack(t)
    assert pt.dtype == torch.float32 and pt.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    pt[0, 0] = -1.0
    assert t.tolist()[0][0] == -1.0
    back = tg.from_dlpack(torch.arange(3, dtype=torch.int64))
    assert back.dtype == tg.int64 and back.tolist() == [0, 1, 2]


# ---- detach / clone / requires_grad_ -----------------------------------------------------------

def test_detach_shares_memory_and_leaves_the_graph(device: str) -> None:
    x = tg.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = x * 2.0
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    with tg.no_grad():
        d += 1.0
    assert y.tolist() == [3.0, 5.0]  # same memory


def test_clone_copies_and_stays_in_the_graph(device: str) -> None:
    x = tg.tensor([1.0, 2.0], device=device, requires_grad=True)
    c = x.clone()
    assert c.grad_fn is not None
    with tg.no_grad():
        c += 1.0
    assert x.tolist() == [1.0, 2.0]
    (x.clone() * 3.0).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]
    assert tg.clone(x).tolist() == [1.0, 2.0]


def test_requires_grad_(device: str) -> None:
    x = tg.tensor([1.0], device=device)
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad_(False)
    assert not x.requires_grad
    x.requires_grad = True
    assert x.requires_grad
    y = x * 2.0
    with pytest.raises(RuntimeError, match="detach"):
        y.requires_grad_(False)


# ---- repr --------------------------------------------------------------------------------------

def test_repr() -> None:
    assert repr(tg.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(tg.tensor([1.5, 2.0])) == "tensor([1.5, 2. ])"
    assert repr(tg.tensor(3.0, dtype=tg.float64)) == "tensor(3., dtype=tensorgrad.float64)"
    x = tg.tensor([1.0], requires_grad=True)
    assert repr(x) == "tensor([1.], requires_grad=True)"
    assert repr(x * 2.0) == "tensor([2.], grad_fn=<MulBackward>)"
    assert repr(tg.tensor([True])) == "tensor([ True])"
    assert repr(tg.float16) == "tensorgrad.float16"


# ---- in-place operators ------------------------------------------------------------------------

def test_inplace_operators_keep_identity_dtype_and_bump_version(device: str) -> None:
    x = tg.tensor([1.0, 2.0], device=device)
    data = x.data
    ident = id(x)
    x += 1
    x -= 0.5
    x *= 4
    x /= 2
    assert id(x) == ident and x.data is data and x.dtype == tg.float32
    assert x.tolist() == [3.0, 5.0]
    x += tg.tensor(1.0, dtype=tg.float64, device=device)  # never up-casts in place
    assert x.dtype == tg.float32 and x.tolist() == [4.0, 6.0]
    x.add_(tg.tensor([1.0, 1.0], device=device), alpha=2.0).mul_(0.5).sub_(1.0).div_(2.0)
    assert x.tolist() == [1.0, 1.5]


def test_inplace_broadcasts_the_other_operand_only(device: str) -> None:
    x = tg.zeros(2, 3, device=device)
    x += tg.tensor([1.0, 2.0, 3.0], device=device)
    assert x.tolist() == [[1.0, 2.0, 3.0]] * 2
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)|\(2, 3\).*\(3,\)|shape"):
        y = tg.zeros(3, device=device)
        y += x


def test_inplace_type_rules(device: str) -> None:
    i = tg.tensor([1, 2], device=device)
    i += 3
    assert i.dtype == tg.int64 and i.tolist() == [4, 5]
    with pytest.raises(TypeError, match="float"):
        i += 0.5
    with pytest.raises(TypeError, match="int64"):
        i /= 2
    assert i.tolist() == [4, 5]
    f = tg.tensor([3.0], device=device)
    f /= 2
    assert f.tolist() == [1.5]


def test_fill_zero_copy(device: str) -> None:
    x = tg.ones(3, device=device)
    x.fill_(2.5)
    assert x.tolist() == [2.5] * 3
    x.zero_()
    assert x.tolist() == [0.0] * 3
    x.copy_(tg.tensor([1.0, 2.0, 3.0], device=device))
    assert x.tolist() == [1.0, 2.0, 3.0]
    p = tg.ones(2, requires_grad=True, device=device)
    with pytest.raises(RuntimeError, match="no_grad"):
        p.zero_()
    with tg.no_grad():
        p.normal_()
        p.uniform_(-1.0, 1.0)
    assert (np.abs(p.numpy()) <= 1.0).all()


# ---- item assignment ---------------------------------------------------------------------------

def test_setitem_values(device: str) -> None:
    x = tg.zeros(3, 4, device=device)
    x[0] = 1.0
    x[1, 1:3] = tg.tensor([2.0, 3.0], device=device)
    x[:, -1] = 9
    x[tg.tensor([False, False, True], device=device)] = 5.0
    assert x.tolist() == [[1.0, 1.0, 1.0, 9.0], [0.0, 2.0, 3.0, 9.0], [5.0, 5.0, 5.0, 5.0]]
    x[[0, 0], [1, 2]] = -1.0
    assert x.tolist()[0] == [1.0, -1.0, -1.0, 9.0]


def test_setitem_on_non_leaf_is_recorded(device: str) -> None:
    x = tg.tensor([1.0, 2.0, 3.0], dtype=tg.float64, device=device, requires_grad=True)
    v = tg.tensor(10.0, dtype=tg.float64, device=device, requires_grad=True)
    y = x * 2.0
    y[1] = v * 3.0
    assert y.tolist() == [2.0, 30.0, 6.0]
    y.backward(gradient=tg.tensor([1.0, 2.0, 3.0], dtype=tg.float64, device=device))
    assert x.grad.tolist() == [2.0, 0.0, 6.0]  # the overwritten element gets no gradient
    assert v.grad.item() == 6.0


def test_setitem_on_leaf_requiring_grad(device: str) -> None:
    x = tg.zeros(3, requires_grad=True, device=device)
    with pytest.raises(RuntimeError, match="leaf"):
        x[0] = 1.0
    with tg.no_grad():
        x[0] = 1.0
    assert x.tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "var", "std"])
def test_an_empty_dim_list_reduces_over_every_dim(device: str, name: str) -> None:
    values = np.arange(6.0).reshape(2, 3)
    x = tg.tensor(values, device=device)
    for dim in ((), []):
        full = getattr(x, name)(dim=dim)
        assert full.shape == ()  # as PyTorch, not the input unchanged
        assert full.item() == pytest.approx(getattr(x, name)().item())


def test_an_empty_index_list_selects_nothing(device: str) -> None:
    x = tg.ones(3, 4, device=device, requires_grad=True)
    picked = x[[]]
    assert picked.shape == (0, 4)  # as PyTorch; NumPy would read [] as a float index
    picked.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((3, 4)))


def test_softmax_family_over_an_empty_dim(device: str) -> None:
    # As PyTorch: empty results, and logsumexp of nothing is -inf (no NumPy "no identity").
    assert tg.softmax(tg.zeros(0, 3, device=device), dim=0).shape == (0, 3)
    assert tg.log_softmax(tg.zeros(0, device=device), dim=0).shape == (0,)
    x = tg.zeros(2, 0, device=device, requires_grad=True)
    out = tg.logsumexp(x, dim=1)
    assert out.tolist() == [float("-inf"), float("-inf")]
    out.sum().backward()
    assert x.grad.shape == (2, 0)


# ---- bitwise operators -------------------------------------------------------------------------

@pytest.mark.parametrize("op", [
    lambda a, b: a & b, lambda a, b: a | b, lambda a, b: a ^ b, lambda a, b: ~a,
    lambda a, b: a & 6, lambda a, b: 5 | a, lambda a, b: True ^ b,
], ids=["and", "or", "xor", "not", "and_scalar", "ror_scalar", "rxor_scalar"])
@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_bitwise_operators_match_torch(op, dtype: str, device: str) -> None:
    """Bitwise on integers (3 & 5 = 1, ~3 = -4), logical on bools, as PyTorch; they were
    logical on integers too."""
    torch = pytest.importorskip("torch")
    a, b = np.array([3, 6, 0, -7]), np.array([5, 3, 1, 2])
    if dtype == "bool":
        a, b = a > 1, b > 2
    a, b = a.astype(dtype), b.astype(dtype)
    ours = op(tg.tensor(a, device=device), tg.tensor(b, device=device))
    ref = op(torch.from_numpy(a), torch.from_numpy(b))
    assert ours.dtype.name == str(ref.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(ours.numpy(), ref.numpy())


def test_view_shares_memory_when_strides_allow(device: str) -> None:
    x = tg.zeros(4, 6, device=device)
    v = x[:, :2].view(2, 2, 2)  # not contiguous, but its rows regroup without a copy
    v[1, 0, 1] = 5.0
    assert x[2, 1].item() == 5.0
    w = x.t().view(6, 2, 2)  # splits a dim of the transpose: still a view
    w[0, 1, 0] = 7.0  # x.t()[0, 2]
    assert x[2, 0].item() == 7.0
    assert x.view(-1).shape == (24,) and tg.zeros((), device=device).view(1, 1).shape == (1, 1)


@pytest.mark.parametrize("shape, dim", [((0,), 0), ((0, 2), 0), ((2, 0), 1)])
def test_chunk_of_an_empty_dim_gives_that_many_chunks(shape: tuple[int, ...], dim: int,
                                                      device: str) -> None:
    pieces = tg.zeros(*shape, device=device).chunk(3, dim)
    assert [p.shape for p in pieces] == [shape] * 3  # as PyTorch; one piece before


# ---- smaller differences from PyTorch, each checked against it --------------------------------

@pytest.mark.parametrize("call", [
    lambda m, x, e: m.relu(x),
    lambda m, x, e: x.masked_fill(x > 1, 0) > 0,  # a bool tensor stays bool
    lambda m, x, e: 2 ** e,
    lambda m, x, e: x ** e,
    lambda m, x, e: (-1) ** e,
    lambda m, x, e: (x > 0).any(1),
    lambda m, x, e: x.all(dim=0, keepdim=True),
    lambda m, x, e: (x > 1).any(dim=(0, 1)),
    lambda m, x, e: m.nn.functional.pad(x, (1, 0, 0, 2)),
], ids=["relu_int", "masked_fill_bool", "int_rpow_negative", "int_pow_negative",
        "minus_one_pow_negative", "any_dim", "all_dim_keepdim", "any_dims", "functional_pad"])
def test_integer_and_bool_results_match_torch(call, device: str) -> None:
    torch = pytest.importorskip("torch")
    x, e = np.array([[-1, 2, 0], [3, 1, -2]]), np.array([[-1, 2, -3], [0, -2, 3]])
    ours = call(tg, tg.tensor(x, device=device), tg.tensor(e, device=device))
    ref = call(torch, torch.from_numpy(x), torch.from_numpy(e))
    assert ours.dtype.name == str(ref.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(ours.numpy(), ref.numpy())
