"""Attention: scaled_dot_product_attention, MultiheadAttention, TransformerEncoderLayer and
TransformerEncoder against PyTorch with copied weights (forward and every gradient, through a
random-weighted sum), float64 gradchecks of attention (first and second order) and of a whole
encoder layer, state dicts in PyTorch's layout both ways, and tril / triu / ModuleDict."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import nn
from tensorgrad.nn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOL = {"float32": dict(rtol=2e-4, atol=2e-5), "float64": dict(rtol=1e-9, atol=1e-11)}


def _pair(a: np.ndarray, requires_grad: bool = True, device: str = "cpu"
          ) -> tuple[tg.Tensor, torch.Tensor]:
    grad = requires_grad and a.dtype != np.bool_
    return tg.tensor(a, requires_grad=grad, device=device), torch.tensor(a, requires_grad=grad)


def _close(got: tg.Tensor | None, want: torch.Tensor | None, dtype: str, what: str) -> None:
    assert (got is None) == (want is None), what
    if got is not None:
        np.testing.assert_allclose(got.numpy(), want.detach().numpy(), err_msg=what,
                                   **TOL[dtype])


def _backward_both(ours: tg.Tensor, theirs: torch.Tensor, rng: np.random.Generator) -> None:
    """Backpropagate the same random-weighted sum through both (never all-ones)."""
    w = rng.standard_normal(tuple(theirs.shape))
    (ours * tg.tensor(w, dtype=ours.dtype, device=ours.device)).sum().backward()
    (theirs * torch.tensor(w, dtype=theirs.dtype)).sum().backward()


def _copy_into(module: nn.Module, reference: torch.nn.Module) -> None:
    """PyTorch's weights into ours through state dicts (same keys, same shapes)."""
    state = {k: tg.tensor(v.detach().numpy()) for k, v in reference.state_dict().items()}
    module.load_state_dict(state)


# ---- scaled_dot_product_attention -----------------------------------------------------------
SDPA_CASES = {
    # name: (q shape, k shape, v shape, mask kind, is_causal)
    "one_head": ((2, 1, 4, 8), (2, 1, 6, 8), (2, 1, 6, 5), None, False),
    "heads": ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5), None, False),
    "3d": ((3, 5, 4), (3, 7, 4), (3, 7, 2), None, False),
    "broadcast_kv": ((2, 3, 4, 8), (1, 1, 6, 8), (1, 1, 6, 5), None, False),
    "bool_mask": ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5), "bool", False),
    "bool_mask_batched": ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5), "bool_batched", False),
    "float_mask": ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5), "float", False),
    "float_mask_batched": ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5), "float_batched", False),
    "causal_square": ((2, 3, 5, 8), (2, 3, 5, 8), (2, 3, 5, 4), None, True),
    "causal_short_query": ((2, 2, 3, 8), (2, 2, 6, 8), (2, 2, 6, 4), None, True),
    "causal_long_query": ((2, 2, 6, 8), (2, 2, 3, 8), (2, 2, 3, 4), None, True),
}


def _mask(kind: str | None, q: tuple[int, ...], k: tuple[int, ...], rng: np.random.Generator,
          dtype: str) -> np.ndarray | None:
    if kind is None:
        return None
    shape = (q[-2], k[-2]) if not kind.endswith("batched") else (q[0], 1, q[-2], k[-2])
    if kind.startswith("bool"):
        mask = rng.random(shape) > 0.3
        mask[..., 0] = True  # every row keeps a key (rows with none are tested apart)
        return mask
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale", [None, 0.3])
@pytest.mark.parametrize("case", sorted(SDPA_CASES))
def test_sdpa_matches_torch(case, scale, dtype, device, rng):
    qs, ks, vs, kind, causal = SDPA_CASES[case]
    (q, tq), (k, tk), (v, tv) = (_pair(rng.standard_normal(s).astype(dtype), device=device)
                                 for s in (qs, ks, vs))
    mask = _mask(kind, qs, ks, rng, dtype)
    m, tm = _pair(mask, device=device) if mask is not None else (None, None)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=causal, scale=scale)
    ty = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, is_causal=causal,
                                         scale=scale)
    assert y.dtype.name == dtype and y.shape == tuple(ty.shape)
    _close(y, ty, dtype, "output")
    _backward_both(y, ty, rng)
    for name, ours, theirs in (("q", q, tq), ("k", k, tk), ("v", v, tv), ("mask", m, tm)):
        if ours is not None and ours.requires_grad:
            _close(ours.grad, theirs.grad, dtype, f"gradient of {name}")


def test_sdpa_row_with_every_key_masked_gives_zeros_as_torch(device, rng):
    (q, tq), (k, tk), (v, tv) = (_pair(rng.standard_normal(s), device=device) for s in
                                 ((1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 4)))
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=tg.tensor(mask, device=device))
    ty = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(mask))
    assert (y.numpy()[:, :, 1] == 0).all()
    _close(y, ty, "float64", "output")
    _backward_both(y, ty, rng)
    for ours, theirs in ((q, tq), (k, tk), (v, tv)):
        assert np.isfinite(ours.grad.numpy()).all()
        _close(ours.grad, theirs.grad, "float64", "gradient")


def test_sdpa_keeps_the_softmax_output_not_the_scores(rng):
    q, k, v = (tg.randn(2, 3, 4, 8, dtype=tg.float64, requires_grad=True) for _ in range(3))
    mask = tg.tensor(rng.random((4, 4)) > 0.5)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    kinds = [entry[0] for entry in y.grad_fn.saved]
    arrays = [entry[2] for entry in y.grad_fn.saved if entry[0] == "array"]
    # q, k, v and the mask are references to the inputs; the one array of its own is the
    # (2, 3, 4, 4) softmax output.
    assert kinds.count("in") == 4 and [a.shape for a in arrays] == [(2, 3, 4, 4)]


def test_sdpa_gradcheck_float64_first_and_second_order(device, rng):
    q, k, v = (tg.tensor(rng.standard_normal(s), requires_grad=True, device=device)
               for s in ((2, 3, 4), (2, 5, 4), (2, 5, 3)))
    mask = tg.tensor(rng.standard_normal((3, 5)), requires_grad=True, device=device)
    tg.autograd.gradcheck(lambda *a: F.scaled_dot_product_attention(*a), [q, k, v, mask])
    tg.autograd.gradcheck(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.7),
        [q, k, v])
    w = tg.tensor(rng.standard_normal((2, 3, 3)), device=device)

    def first_order(q, k, v, mask):
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return tg.grad([(y * w).sum()], [q, k, v, mask], create_graph=True)

    tg.autograd.gradcheck(first_order, [q, k, v, mask])


def test_sdpa_causal_second_order_matches_torch(rng):
    (q, tq), (k, tk), (v, tv) = (_pair(rng.standard_normal((1, 2, 4, 3))) for _ in range(3))
    w = rng.standard_normal((1, 2, 4, 3))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    (gq,) = tg.grad([(y * tg.tensor(w)).sum()], [q], create_graph=True)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):  # the fused CPU kernel has no second derivative
        ty = TF.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
        (tgq,) = torch.autograd.grad((ty * torch.tensor(w)).sum(), [tq], create_graph=True)
    _backward_both(gq, tgq, rng)
    for ours, theirs in ((q, tq), (k, tk), (v, tv)):
        _close(ours.grad, theirs.grad, "float64", "second-order gradient")


def test_sdpa_dropout_drops_weights_with_tensorgrad_generator():
    q, k = tg.randn(4, 2, 16, 8), tg.randn(4, 2, 16, 8)
    v = tg.eye(16).expand(4, 2, 16, 16)  # the output is then the dropped weights themselves
    tg.manual_seed(3)
    y = F.scaled_dot_product_attention(q, k, v, dropout_p=0.25)
    tg.manual_seed(3)
    again = F.scaled_dot_product_attention(q, k, v, dropout_p=0.25)
    np.testing.assert_array_equal(y.numpy(), again.numpy())
    zeros = (y.numpy() == 0).mean()
    assert abs(zeros - 0.25) < 3 * math.sqrt(0.25 * 0.75 / y.numel())
    plain = F.scaled_dot_product_attention(q, k, v).numpy()
    kept = y.numpy() != 0
    np.testing.assert_allclose(y.numpy()[kept], plain[kept] / 0.75, rtol=1e-6)


def test_sdpa_dropout_gradient_uses_the_forward_mask(rng):
    q, k, v = (tg.tensor(rng.standard_normal((2, 4, 3)), requires_grad=True) for _ in range(3))

    def dropped(q, k, v):
        tg.manual_seed(5)  # the same mask on every call, so central differences see one
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.4)

    tg.autograd.gradcheck(dropped, [q, k, v])


def test_sdpa_refuses_bad_input():
    q = tg.randn(2, 4, 8)
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=tg.ones(4, 4, dtype=tg.bool),
                                       is_causal=True)
    with pytest.raises(ValueError, match=r"\(2, 4, 8\), \(2, 4, 7\)"):
        F.scaled_dot_product_attention(q, tg.randn(2, 4, 7), q)
    with pytest.raises(TypeError, match="bool or of the query's dtype float32, got int64"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=tg.zeros(4, 4, dtype=tg.int64))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 4\) does not broadcast"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=tg.zeros(3, 4))
    with pytest.raises(TypeError, match="one floating-point dtype"):
        F.scaled_dot_product_attention(q, q, q.double())


# ---- MultiheadAttention ---------------------------------------------------------------------
MHA_CASES = {
    # name: (constructor kwargs, forward kwargs builder, self-attention)
    "plain": ({}, {}, True),
    "batch_first": ({"batch_first": True}, {}, True),
    "no_bias": ({"bias": False}, {}, True),
    "cross_kdim_vdim": ({"kdim": 3, "vdim": 5}, {}, False),
    "cross_same_dims": ({}, {}, False),
    "per_head_weights": ({}, {"average_attn_weights": False}, True),
    "no_weights": ({}, {"need_weights": False}, True),
    "key_padding_mask": ({}, {"key_padding_mask": "bool"}, True),
    "float_key_padding_mask": ({}, {"key_padding_mask": "float"}, True),
    "attn_mask_bool": ({}, {"attn_mask": "bool"}, True),
    "attn_mask_float": ({}, {"attn_mask": "float"}, True),
    "attn_mask_per_head": ({}, {"attn_mask": "bool3d"}, True),
    "both_masks": ({"batch_first": True}, {"attn_mask": "bool", "key_padding_mask": "bool"},
                   True),
    "causal_hint": ({}, {"attn_mask": "causal", "is_causal": True, "need_weights": False}, True),
    "causal_hint_with_weights": ({}, {"attn_mask": "causal", "is_causal": True}, True),
}


def _mha_masks(spec: dict, n: int, heads: int, length: int, rng: np.random.Generator) -> dict:
    out = {}
    for name, kind in spec.items():
        if name in ("key_padding_mask", "attn_mask"):
            if kind == "causal":
                mask = np.triu(np.ones((length, length), dtype=bool), 1)
            elif name == "key_padding_mask":
                mask = rng.random((n, length)) < 0.3
                mask[:, 0] = False
                if kind == "float":
                    mask = np.where(mask, -np.inf, rng.standard_normal(mask.shape))
            else:
                shape = (n * heads, length, length) if kind == "bool3d" else (length, length)
                mask = rng.random(shape) < 0.3
                mask[..., 0] = False
                if kind == "float":
                    mask = rng.standard_normal(shape)
            out[name] = mask
        else:
            out[name] = kind
    return out


@pytest.mark.parametrize("case", sorted(MHA_CASES))
def test_multihead_attention_matches_torch(case, device, rng):
    ctor, fwd, self_attention = MHA_CASES[case]
    e, heads, n, length = 6, 2, 3, 4
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(e, heads, dtype=torch.float64, **ctor)
    ours = nn.MultiheadAttention(e, heads, dtype=tg.float64, **ctor)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _copy_into(ours, theirs)
    ours.to(device)
    if not ctor.get("bias", True):
        assert ours.in_proj_bias is None and ours.out_proj.bias is None
    batch_first = ctor.get("batch_first", False)

    def inputs(features):
        shape = (n, length, features) if batch_first else (length, n, features)
        return _pair(rng.standard_normal(shape), device=device)

    q, tq = inputs(e)
    if self_attention:
        (k, tk), (v, tv) = (q, tq), (q, tq)
    else:
        (k, tk), (v, tv) = inputs(ctor.get("kdim", e)), inputs(ctor.get("vdim", e))
    masks = _mha_masks(fwd, n, heads, length, rng)
    kw = {name: tg.tensor(m, device=device) if isinstance(m, np.ndarray) else m
          for name, m in masks.items()}
    tkw = {name: torch.tensor(m) if isinstance(m, np.ndarray) else m
           for name, m in masks.items()}
    y, w = ours(q, k, v, **kw)
    ty, tw = theirs(tq, tk, tv, **tkw)
    _close(y, ty, "float64", "output")
    _close(w, tw, "float64", "attention weights")
    _backward_both(y if w is None else y + w.sum() * 0.5, ty if tw is None else ty + tw.sum() * 0.5,
                   rng)
    for name, p in theirs.named_parameters():
        _close(dict(ours.named_parameters())[name].grad, p.grad, "float64", f"gradient of {name}")
    for ours_in, theirs_in in ((q, tq), (k, tk), (v, tv)):
        _close(ours_in.grad, theirs_in.grad, "float64", "gradient of an input")


def test_multihead_attention_unbatched_matches_torch(rng):
    torch.manual_seed(1)
    theirs = torch.nn.MultiheadAttention(4, 2, dtype=torch.float64)
    ours = nn.MultiheadAttention(4, 2, dtype=tg.float64)
    _copy_into(ours, theirs)
    x, tx = _pair(rng.standard_normal((5, 4)))
    pad = np.array([False, False, True, False, True])
    y, w = ours(x, x, x, key_padding_mask=tg.tensor(pad), average_attn_weights=False)
    ty, tw = theirs(tx, tx, tx, key_padding_mask=torch.tensor(pad), average_attn_weights=False)
    assert y.shape == (5, 4) and w.shape == (2, 5, 5)
    _close(y, ty, "float64", "output")
    _close(w, tw, "float64", "weights")


def test_multihead_attention_dropout_only_while_training():
    mha = nn.MultiheadAttention(8, 2, dropout=0.5)
    x = tg.randn(5, 2, 8)
    mha.eval()
    a, b = mha(x, x, x)[0], mha(x, x, x)[0]
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    mha.train()
    _, w = mha(x, x, x, average_attn_weights=False)
    assert (w.numpy() == 0).mean() > 0.3  # weights after dropout, as PyTorch returns them


def test_multihead_attention_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"embed_dim \(6\) must be a positive multiple of "
                                         r"num_heads \(4\)"):
        nn.MultiheadAttention(6, 4)
    mha = nn.MultiheadAttention(4, 2)
    x = tg.randn(3, 2, 4)
    with pytest.raises(ValueError, match="pass attn_mask as well"):
        mha(x, x, x, is_causal=True)
    with pytest.raises(ValueError, match=r"expected query with 4 features, got shape"):
        mha(tg.randn(3, 2, 5), x, x)


def test_multihead_attention_state_dict_goes_to_torch(rng):
    ours = nn.MultiheadAttention(6, 3, kdim=2, vdim=4, dtype=tg.float64)
    theirs = torch.nn.MultiheadAttention(6, 3, kdim=2, vdim=4, dtype=torch.float64)
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    (q, tq), (k, tk), (v, tv) = (_pair(rng.standard_normal((3, 2, f)), False) for f in (6, 2, 4))
    _close(ours(q, k, v)[0], theirs(tq, tk, tv)[0], "float64", "output")


# ---- TransformerEncoderLayer / TransformerEncoder -------------------------------------------
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_encoder_layer_matches_torch(norm_first, activation, batch_first, device, rng):
    torch.manual_seed(0)
    kw = dict(dim_feedforward=10, dropout=0.0, activation=activation, batch_first=batch_first,
              norm_first=norm_first)
    theirs = torch.nn.TransformerEncoderLayer(8, 2, dtype=torch.float64, **kw)
    ours = nn.TransformerEncoderLayer(8, 2, dtype=tg.float64, **kw)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    _copy_into(ours, theirs)
    ours.to(device)
    shape = (3, 5, 8) if batch_first else (5, 3, 8)
    x, tx = _pair(rng.standard_normal(shape), device=device)
    causal = np.triu(np.ones((5, 5), dtype=bool), 1)
    pad = np.zeros((3, 5), dtype=bool)
    pad[1, 3:] = True
    y = ours(x, src_mask=tg.tensor(causal, device=device),
             src_key_padding_mask=tg.tensor(pad, device=device))
    ty = theirs(tx, src_mask=torch.tensor(causal), src_key_padding_mask=torch.tensor(pad))
    _close(y, ty, "float64", "output")
    _backward_both(y, ty, rng)
    _close(x.grad, tx.grad, "float64", "gradient of the input")
    ours_params = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        _close(ours_params[name].grad, p.grad, "float64", f"gradient of {name}")


def test_encoder_stack_matches_torch_and_shares_no_weights(rng):
    torch.manual_seed(0)
    layer_t = torch.nn.TransformerEncoderLayer(8, 4, 16, 0.0, "gelu", batch_first=True,
                                               norm_first=True, dtype=torch.float64)
    theirs = torch.nn.TransformerEncoder(layer_t, 2, norm=torch.nn.LayerNorm(
        8, dtype=torch.float64), enable_nested_tensor=False)
    layer = nn.TransformerEncoderLayer(8, 4, 16, 0.0, "gelu", batch_first=True,
                                       norm_first=True, dtype=tg.float64)
    ours = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(8, dtype=tg.float64))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours.layers[0].linear1.weight is not ours.layers[1].linear1.weight
    _copy_into(ours, theirs)
    x, tx = _pair(rng.standard_normal((2, 6, 8)))
    mask = np.triu(np.full((6, 6), -np.inf), 1)
    y = ours(x, mask=tg.tensor(mask), is_causal=True)
    ty = theirs(tx, mask=torch.tensor(mask), is_causal=True)
    _close(y, ty, "float64", "output")
    _backward_both(y, ty, rng)
    _close(x.grad, tx.grad, "float64", "gradient of the input")
    ours_params = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        _close(ours_params[name].grad, p.grad, "float64", f"gradient of {name}")


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_gradcheck_float64(norm_first, rng):
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=norm_first,
                                       dtype=tg.float64)
    x = tg.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    mask = tg.tensor(np.triu(np.ones((3, 3), dtype=bool), 1))
    params = list(layer.parameters())
    # gradcheck perturbs its inputs in place, so the parameters can be inputs the function
    # reaches through the layer.
    tg.autograd.gradcheck(lambda x, *_: layer(x, src_mask=mask), [x, *params])


# ---- tril / triu / ModuleDict ---------------------------------------------------------------
@pytest.mark.parametrize("fn", ["tril", "triu"])
@pytest.mark.parametrize("diagonal", [-1, 0, 2])
def test_tril_triu_match_torch(fn, diagonal, rng):
    x, tx = _pair(rng.standard_normal((2, 3, 4)))
    y, ty = getattr(tg, fn)(x, diagonal), getattr(torch, fn)(tx, diagonal)
    _close(y, ty, "float64", fn)
    _backward_both(y, ty, rng)
    _close(x.grad, tx.grad, "float64", f"gradient of {fn}")
    with pytest.raises(ValueError, match=rf"{fn}: input needs at least 2 dims, got shape \(3,\)"):
        getattr(tg, fn)(tg.zeros(3))


def test_module_dict_registers_its_modules():
    d = nn.ModuleDict({"a": nn.Linear(2, 3)})
    d["b"] = nn.Linear(3, 1)
    assert list(d) == ["a", "b"] and len(d) == 2 and "b" in d
    assert list(d.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert sum(p.numel() for p in d.parameters()) == 13
    d.pop("a")
    assert list(d.keys()) == ["b"] and list(d.state_dict()) == ["b.weight", "b.bias"]


# ---- the tiny GPT of examples/tiny_gpt.py ---------------------------------------------------
def test_tiny_gpt_training_trajectory_equals_pytorch(monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parents[2]))
    from benchmarks.bench_transformer import tiny_gpt, torch_twin

    gpt = tiny_gpt()
    model = gpt.GPT(gpt.DIGITS, 2 * gpt.LENGTH - 1, 16, 2, 2).to(dtype=tg.float64)
    twin = torch_twin(model)
    assert list(twin.state_dict()) == list(model.state_dict())
    opt = tg.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    topt = torch.optim.AdamW(twin.parameters(), lr=3e-3, weight_decay=0.1)
    held_out = gpt.codes(gpt.held_out(20))
    losses, torch_losses = [], []
    for step in range(20):
        x, y = gpt.batch(0, step, 16, held_out)
        loss = F.cross_entropy(model(tg.tensor(x)).reshape(-1, gpt.DIGITS), tg.tensor(y.ravel()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        tloss = TF.cross_entropy(twin(torch.tensor(x)).reshape(-1, gpt.DIGITS),
                                 torch.tensor(y.ravel()))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        losses.append(loss.item())
        torch_losses.append(tloss.item())
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-10)
    assert losses[-1] < 0.9 * losses[0]  # it learned something in 20 steps
    params = dict(model.named_parameters())
    for name, p in twin.named_parameters():
        np.testing.assert_allclose(params[name].numpy(), p.detach().numpy(), rtol=1e-8,
                                   atol=1e-12, err_msg=name)


def test_masked_fill_and_where_broadcast_as_torch(rng):
    x, tx = _pair(rng.standard_normal((2, 3, 4)))
    mask = rng.random((3, 1)) > 0.5
    y = x.masked_fill(tg.tensor(mask), -1e9) + tg.where(tg.tensor(mask[None, :, :1] < 1), x, 0.0)
    ty = tx.masked_fill(torch.tensor(mask), -1e9) + torch.where(
        torch.tensor(mask[None, :, :1] < 1), tx, 0.0)
    _close(y, ty, "float64", "output")
    _backward_both(y, ty, rng)
    _close(x.grad, tx.grad, "float64", "gradient")
