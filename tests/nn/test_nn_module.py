"""The Module API: registration, names and order, repr, train/eval, to(), zero_grad,
state_dict round trips and load_state_dict errors, Parameter, containers, init and utils."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import nn


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.scale = nn.Parameter(tg.ones(1))
        self.register_buffer("steps", tg.zeros(1))
        self.register_buffer("scratch", tg.zeros(2), persistent=False)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return self.bn(self.conv(x)) * self.scale


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8, 3), nn.ReLU(), nn.Dropout(0.1))
        self.shared = self.head[1]  # the same module twice: its parameters are listed once

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return self.head(self.block(x))


def test_named_parameters_buffers_and_modules_follow_pytorch_order() -> None:
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "block.scale", "block.conv.weight", "block.conv.bias", "block.bn.weight",
        "block.bn.bias", "head.1.weight", "head.1.bias"]
    assert [n for n, _ in net.named_buffers()] == [
        "block.steps", "block.scratch", "block.bn.running_mean", "block.bn.running_var",
        "block.bn.num_batches_tracked"]
    assert [n for n, _ in net.named_modules()] == [
        "", "block", "block.conv", "block.bn", "head", "head.0", "head.1", "head.2", "head.3"]
    assert [n for n, _ in net.named_children()] == ["block", "head", "shared"]
    assert list(net.state_dict()) == [
        "block.scale", "block.steps", "block.conv.weight", "block.conv.bias", "block.bn.weight",
        "block.bn.bias", "block.bn.running_mean", "block.bn.running_var",
        "block.bn.num_batches_tracked", "head.1.weight", "head.1.bias", "shared.weight",
        "shared.bias"]
    assert len(list(net.parameters())) == 7
    assert len(list(net.parameters(recurse=False))) == 0


def test_names_match_torch_for_the_same_architecture() -> None:
    torch = pytest.importorskip("torch")
    ours = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8, 3), nn.LayerNorm(3), nn.Embedding(4, 3))
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 3),
                              torch.nn.LayerNorm(3), torch.nn.Embedding(4, 3))
    assert list(ours.state_dict()) == list(ref.state_dict())
    for (name, value), ref_value in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert value.shape == tuple(ref_value.shape), name


def test_repr_matches_pytorch_exactly() -> None:
    torch = pytest.importorskip("torch")
    t = torch.nn
    pairs = [
        (nn.Linear(4, 2), t.Linear(4, 2)),
        (nn.Linear(4, 2, bias=False), t.Linear(4, 2, bias=False)),
        (nn.Conv2d(3, 8, 3), t.Conv2d(3, 8, 3)),
        (nn.Conv2d(3, 8, (3, 5), stride=2, padding=1, dilation=2, bias=False),
         t.Conv2d(3, 8, (3, 5), stride=2, padding=1, dilation=2, bias=False)),
        (nn.MaxPool2d(2), t.MaxPool2d(2)),
        (nn.MaxPool2d(3, 2, 1), t.MaxPool2d(3, 2, 1)),
        (nn.AvgPool2d(2), t.AvgPool2d(2)),
        (nn.BatchNorm1d(4), t.BatchNorm1d(4)),
        (nn.BatchNorm2d(4, momentum=None, affine=False), t.BatchNorm2d(4, momentum=None,
                                                                       affine=False)),
        (nn.LayerNorm(5), t.LayerNorm(5)),
        (nn.LayerNorm((2, 3), elementwise_affine=False), t.LayerNorm((2, 3),
                                                                     elementwise_affine=False)),
        (nn.Dropout(0.25), t.Dropout(0.25)),
        (nn.Embedding(10, 3), t.Embedding(10, 3)),
        (nn.Embedding(10, 3, padding_idx=0), t.Embedding(10, 3, padding_idx=0)),
        (nn.Flatten(), t.Flatten()),
        (nn.Identity(), t.Identity()),
        (nn.ReLU(), t.ReLU()), (nn.LeakyReLU(), t.LeakyReLU()), (nn.ELU(), t.ELU()),
        (nn.GELU(), t.GELU()), (nn.GELU("tanh"), t.GELU("tanh")), (nn.SiLU(), t.SiLU()),
        (nn.Sigmoid(), t.Sigmoid()), (nn.Tanh(), t.Tanh()), (nn.Softplus(), t.Softplus()),
        (nn.Softmax(dim=1), t.Softmax(dim=1)), (nn.LogSoftmax(dim=-1), t.LogSoftmax(dim=-1)),
        (nn.MSELoss(), t.MSELoss()), (nn.CrossEntropyLoss(), t.CrossEntropyLoss()),
        (nn.NLLLoss(), t.NLLLoss()), (nn.BCELoss(), t.BCELoss()),
        (nn.BCEWithLogitsLoss(), t.BCEWithLogitsLoss()),
        (nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 2), nn.Tanh())),
         t.Sequential(t.Linear(4, 8), t.ReLU(), t.Sequential(t.Linear(8, 2), t.Tanh()))),
        (nn.ModuleList([nn.Linear(2, 2), nn.ReLU()]), t.ModuleList([t.Linear(2, 2), t.ReLU()])),
    ]
    for ours, ref in pairs:
        assert repr(ours) == repr(ref)


def test_repr_of_a_custom_module_and_maxout() -> None:
    assert repr(nn.Maxout(4, 2, 3)) == "Maxout(in_features=4, out_features=2, pieces=3)"
    assert repr(Net()).splitlines()[:3] == ["Net(", "  (block): Block(",
                                           "    (conv): Conv2d(1, 2, kernel_size=(3, 3), "
                                           "stride=(1, 1))"]


def test_train_eval_flags_every_module() -> None:
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_parameter_is_a_leaf_tensor_that_requires_grad() -> None:
    p = nn.Parameter(tg.randn(2, 3))
    assert isinstance(p, tg.Tensor) and p.requires_grad and p.is_leaf and p.grad_fn is None
    assert repr(p).startswith("Parameter containing:\ntensor(")
    y = (p * 2.0).sum()
    assert type(p * 2.0) is tg.Tensor
    y.backward()
    np.testing.assert_array_equal(p.grad.numpy(), 2.0)
    frozen = nn.Parameter(tg.zeros(2), requires_grad=False)
    assert not frozen.requires_grad
    with pytest.raises(TypeError, match="Parameter expects a Tensor"):
        nn.Parameter([1.0, 2.0])


def test_registration_errors_and_reassignment() -> None:
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="cannot assign Tensor as parameter 'weight'"):
        lin.weight = tg.zeros(2, 2)
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert "bias" in lin.state_dict() or lin.bias is None

    class Forgetful(nn.Module):
        def __init__(self) -> None:
            self.w = nn.Parameter(tg.zeros(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Forgetful()
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'nope'"):
        getattr(lin, "nope")  # noqa: B009  (attribute access is what is tested)
    with pytest.raises(KeyError, match="without '.'"):
        lin.register_buffer("a.b", tg.zeros(1))


def test_zero_grad_set_to_none_and_to_zero() -> None:
    lin = nn.Linear(3, 2)
    lin(tg.randn(4, 3)).sum().backward()
    lin.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(lin.weight.grad.numpy(), 0.0)
    lin.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None


def test_to_keeps_parameter_identity_and_casts_floating_only(device: str) -> None:
    net = Net()
    params = list(net.parameters())
    optimizer = tg.optim.SGD(net.parameters(), lr=0.1)
    assert net.to(device, tg.float64) is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.dtype == tg.float64 and p.device == tg.device(device) for p in params)
    assert net.block.bn.num_batches_tracked.dtype == tg.int64
    net(tg.randn(2, 1, 4, 4, dtype="float64", device=device)).sum().backward()
    before = net.shared.weight.numpy().copy()
    optimizer.step()
    assert not np.array_equal(net.shared.weight.numpy(), before)
    net.float()
    assert net.shared.weight.grad.dtype == tg.float32
    with pytest.raises(TypeError, match="floating dtypes, got int64"):
        net.to(dtype=tg.int64)


def test_state_dict_round_trip_and_detached_values() -> None:
    tg.manual_seed(0)
    a = Net()
    tg.manual_seed(1)
    b = Net()
    a(tg.randn(3, 1, 4, 4))  # moves a's running statistics
    state = a.state_dict()
    assert all(not v.requires_grad for v in state.values())
    assert state["head.1.weight"].data is a.head[1].weight.data  # detached, not copied
    result = b.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for (name, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=name)
    b.eval()
    a.eval()
    x = tg.randn(2, 1, 4, 4)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_lists_every_problem() -> None:
    lin = nn.Linear(3, 2)
    state = dict(lin.state_dict())
    state["weight"] = tg.zeros(2, 4)
    del state["bias"]
    state["extra"] = tg.zeros(1)
    message = (r"Error\(s\) in loading state_dict for Linear:\n\tMissing key\(s\) in "
               r'state_dict: "bias"\.\n\tUnexpected key\(s\) in state_dict: "extra"\.\n\tsize '
               r"mismatch for weight: copying a param with shape \(2, 4\) from checkpoint, the "
               r"shape in current model is \(2, 3\)\.")
    with pytest.raises(RuntimeError, match=message):
        lin.load_state_dict(state)
    before = lin.weight.numpy().copy()
    good = {"weight": tg.ones(2, 3), "extra": tg.zeros(1)}
    result = lin.load_state_dict(good, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["extra"]
    assert not np.array_equal(before, lin.weight.numpy())
    np.testing.assert_array_equal(lin.weight.numpy(), 1.0)
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        lin.load_state_dict({"weight": tg.ones(3, 3)}, strict=False)


def test_load_state_dict_from_torch_and_numpy_arrays() -> None:
    torch = pytest.importorskip("torch")
    ref = torch.nn.Linear(3, 2)
    lin = nn.Linear(3, 2)
    lin.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    np.testing.assert_array_equal(lin.weight.numpy(), ref.weight.detach().numpy())


def test_sequential_and_module_list_behave_like_lists() -> None:
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear)
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    head = seq[1:]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[1] is seq[2]
    with pytest.raises(IndexError, match="index 3 is out of range for Sequential of length 3"):
        seq[3]
    seq.append(nn.Sigmoid())
    assert seq(tg.randn(4, 2)).shape == (4, 1)
    from collections import OrderedDict

    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.Linear(2, 1))
    assert len(layers) == 4 and len(list(layers.parameters())) == 8
    assert [n for n, _ in layers.named_parameters()][-1] == "3.bias"
    del layers[0]
    assert len(layers) == 3 and [n for n, _ in layers.named_children()] == ["0", "1", "2"]
    with pytest.raises(NotImplementedError, match="ModuleList has no forward"):
        layers(tg.randn(1, 2))


def test_gradient_accumulation_over_micro_batches_equals_one_batch(
        rng: np.random.Generator) -> None:
    tg.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(tg.float64)
    x = tg.tensor(rng.standard_normal((8, 5)))
    y = tg.tensor(rng.integers(0, 3, 8))
    nn.functional.cross_entropy(net(x), y).backward()
    full = [p.grad.numpy().copy() for p in net.parameters()]
    net.zero_grad()
    for k in range(4):
        part = slice(2 * k, 2 * k + 2)
        (nn.functional.cross_entropy(net(x[part]), y[part]) / 4.0).backward()
    for p, g in zip(net.parameters(), full):
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-5, atol=1e-7)


# ---- init ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(300, 200), (64, 16, 3, 3)])
def test_init_distributions_follow_pytorch_formulas(shape: tuple[int, ...]) -> None:
    tg.manual_seed(0)
    w = tg.empty(*shape)
    fan_in = shape[1] * math.prod(shape[2:])
    fan_out = shape[0] * math.prod(shape[2:])
    init = nn.init
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(init.xavier_uniform_(w).numpy()).max() <= bound
    assert w.numpy().std() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert init.xavier_normal_(w, gain=2.0).numpy().std() == pytest.approx(
        2 * math.sqrt(2 / (fan_in + fan_out)), rel=0.05)
    bound = math.sqrt(2) * math.sqrt(3 / fan_in)
    assert np.abs(init.kaiming_uniform_(w, nonlinearity="relu").numpy()).max() <= bound
    assert init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu").numpy().std() == \
        pytest.approx(math.sqrt(2 / fan_out), rel=0.05)
    assert init.normal_(w, 3.0, 0.5).numpy().mean() == pytest.approx(3.0, abs=0.02)
    values = init.uniform_(w, -2.0, -1.0).numpy()
    assert values.min() >= -2.0 and values.max() < -1.0
    np.testing.assert_array_equal(init.zeros_(w).numpy(), 0.0)
    np.testing.assert_array_equal(init.ones_(w).numpy(), 1.0)


def test_init_gain_matches_torch_and_works_on_parameters() -> None:
    torch = pytest.importorskip("torch")
    for name, param in [("linear", None), ("relu", None), ("tanh", None),
                        ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]:
        assert nn.init.calculate_gain(name, param) == torch.nn.init.calculate_gain(name, param)
    p = nn.Linear(3, 3).weight
    nn.init.zeros_(p)  # a parameter that requires grad: init runs without recording
    assert p.requires_grad and p.is_leaf
    with pytest.raises(ValueError, match=r"at least 2 dims, got shape \(3,\)"):
        nn.init.xavier_uniform_(tg.empty(3))


# ---- utils --------------------------------------------------------------------------------
def _grads_like_torch(torch: object, rng: np.random.Generator) -> tuple[list, list]:
    shapes = [(3, 4), (4,), (2, 2)]
    grads = [rng.standard_normal(s) * 3 for s in shapes]
    ours = [tg.zeros(*s, dtype="float64", requires_grad=True) for s in shapes]
    theirs = [torch.zeros(*s, dtype=torch.float64, requires_grad=True) for s in shapes]
    for p, q, g in zip(ours, theirs, grads):
        p.grad = tg.tensor(g)
        q.grad = torch.from_numpy(g.copy())
    return ours, theirs


@pytest.mark.parametrize("max_norm, norm_type", [(1.0, 2.0), (100.0, 2.0), (2.0, math.inf),
                                                 (1.5, 1.0)])
def test_clip_grad_norm_matches_torch(max_norm: float, norm_type: float,
                                      rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    ours, theirs = _grads_like_torch(torch, rng)
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    ref = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert isinstance(total, tg.Tensor) and total.shape == ()
    assert total.item() == pytest.approx(ref.item(), rel=1e-12)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12)


def test_clip_grad_value_matches_torch(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    ours, theirs = _grads_like_torch(torch, rng)
    nn.utils.clip_grad_value_(ours, 0.5)
    torch.nn.utils.clip_grad_value_(theirs, 0.5)
    for p, q in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())


def test_grad_norms_per_named_parameter() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert nn.utils.grad_norms(net) == {}
    net(tg.randn(5, 3)).sum().backward()
    net[2].bias.grad = None  # parameters without a gradient are skipped
    norms = nn.utils.grad_norms(net)
    assert list(norms) == ["0.weight", "0.bias", "2.weight"]
    assert all(isinstance(v, float) for v in norms.values())
    assert norms["0.weight"] == pytest.approx(float(np.linalg.norm(net[0].weight.grad.numpy())))


def test_deepcopy_gives_an_independent_module_with_parameters() -> None:
    import copy

    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    net(tg.randn(4, 3)).sum().backward()
    twin = copy.deepcopy(net)
    assert isinstance(twin[0].weight, nn.Parameter) and twin[0].weight.requires_grad
    np.testing.assert_array_equal(twin[0].weight.grad.numpy(), net[0].weight.grad.numpy())
    with tg.no_grad():
        twin[0].weight.fill_(0.0)
    assert not np.array_equal(net[0].weight.numpy(), 0.0)
    np.testing.assert_array_equal(twin[1].running_mean.numpy(), net[1].running_mean.numpy())
    with pytest.raises(RuntimeError, match="only leaf tensors support deepcopy"):
        copy.deepcopy(net[0].weight * 2.0)


def test_to_names_an_argument_that_is_neither_device_nor_dtype() -> None:
    with pytest.raises(ValueError, match="'tpu' is neither a device .* nor a dtype"):
        nn.Linear(2, 2).to("tpu")
