"""Workload 9, the tiny GPT training step of examples/tiny_gpt.py (issue 15), tensorgrad against
PyTorch at config.GPT_SHAPES' sizes: the example's default and a larger model.

Both frameworks train the same model from the same weights on the same batches (AdamW,
float32); a step is zero_grad, forward, cross-entropy, backward and the update, with no read of
the loss. There is no hand-written reference: a transformer's backward by hand is not a floor
worth keeping. `torch_twin` is also what the tests use to compare a training trajectory with
PyTorch's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from . import config
from ._harness import measure
from .config import GPT_SHAPES
from .impls import ALL, Impl, impl_param

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 10
BATCHES = 4  # distinct batches the steps cycle through


def tiny_gpt() -> Any:
    """The example's module (examples/ is not a package)."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import tiny_gpt as module
    finally:
        sys.path.remove(str(ROOT / "examples"))
    return module


def torch_twin(model: Any, dtype: Any = None) -> Any:
    """A PyTorch copy of a tensorgrad tiny GPT: same modules, same state-dict keys, the
    weights copied (in dtype, the model's own when None)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Attention(nn.Module):
        def __init__(self, d: int, heads: int) -> None:
            super().__init__()
            self.n_head = heads
            self.c_attn = nn.Linear(d, 3 * d)
            self.c_proj = nn.Linear(d, d)

        def forward(self, x: Any) -> Any:
            b, t, c = x.shape
            q, k, v = (z.reshape(b, t, self.n_head, c // self.n_head).transpose(1, 2)
                       for z in self.c_attn(x).chunk(3, dim=-1))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).reshape(b, t, c))

    class Block(nn.Module):
        def __init__(self, d: int, heads: int) -> None:
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(d), Attention(d, heads), \
                nn.LayerNorm(d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"),
                                     nn.Linear(4 * d, d))

        def forward(self, x: Any) -> Any:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self, vocab: int, block_size: int, d: int, layers: int,
                     heads: int) -> None:
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(block_size, d)
            self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
            self.ln_f = nn.LayerNorm(d)

        def forward(self, idx: Any) -> Any:
            t = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
            for block in self.blocks:
                x = block(x)
            return F.linear(self.ln_f(x), self.wte.weight)

    d = model.wte.weight.shape[1]
    twin = GPT(model.wte.weight.shape[0], model.block_size, d, len(model.blocks),
               model.blocks[0].attn.n_head)
    state = {k: torch.tensor(v.numpy()) for k, v in model.state_dict().items()}
    twin.load_state_dict(state)
    return twin.to(dtype=dtype or state["wte.weight"].dtype)


def _gpt_step(impl: Impl, size: str) -> Callable[[], None]:
    """One training step of impl's framework; the weights are tensorgrad's initialization,
    copied into the PyTorch twin, so both start from the same model."""
    import tensorgrad as tg

    d, layers, heads, context, batch = GPT_SHAPES[size]
    tg.manual_seed(0)
    model = tiny_gpt().GPT(VOCAB, context, d, layers, heads)
    rng = np.random.default_rng(0)
    host = [(rng.integers(0, VOCAB, (batch, context)), rng.integers(0, VOCAB, batch * context))
            for _ in range(BATCHES)]
    batches = [(impl.array(x), impl.array(y)) for x, y in host]
    if impl.family == "tensorgrad":
        lib, model = tg, model.to(impl.device)
    else:
        import torch

        lib, model = torch, torch_twin(model).to(impl.device)
    opt = lib.optim.AdamW(model.parameters(), lr=1e-3)
    count = [0]

    def step() -> None:
        x, y = batches[count[0] % BATCHES]
        count[0] += 1
        opt.zero_grad()
        loss = lib.nn.functional.cross_entropy(model(x).reshape(-1, VOCAB), y)
        loss.backward()
        opt.step()

    return step


def _gpt_cases() -> list[Any]:
    return [pytest.param(impl, size, id=f"{size}-{impl.name}", marks=impl_param(impl).marks)
            for impl in ALL if impl.family != "hand"
            for size in config.sizes(impl.device).gpt_sizes]


@pytest.mark.parametrize(("impl", "size"), _gpt_cases())
def test_gpt_step(benchmark: Any, impl: Impl, size: str) -> None:
    d, layers, heads, context, batch = GPT_SHAPES[size]
    measure(benchmark, impl, _gpt_step(impl, size), workload="gpt", case="gpt step",
            size=size, batch=batch, context=context)
