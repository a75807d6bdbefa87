"""The tiny GPT training step (examples/tiny_gpt.py) against PyTorch, side by side in one run:

    PYTHONPATH=. python -m benchmarks.bench_transformer [--device cpu|cuda] [--threads 1]

Two sizes: the example's default (d_model 64, 2 layers, 4 heads, context 11, batch 128) and a
larger one (d_model 256, 4 layers, 4 heads, context 128, batch 32). Both frameworks train the
same model from the same weights on the same batches (AdamW, float32); a step is zero_grad,
forward, cross-entropy, backward and the update. Each step is timed on its own (synchronized
on CUDA), the two frameworks alternate step by step so a machine shared with other work slows
both alike, and the medians are compared.

It has no test functions, so `python -m benchmarks` does not collect it; `torch_twin` is also
what the tests use to compare a training trajectory with PyTorch's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# (d_model, layers, heads, context, batch): the example's default, and the larger model.
SIZES = {"example": (64, 2, 4, 11, 128), "larger": (256, 4, 4, 128, 32)}
VOCAB = 10


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


def _step_fns(size: str, device: str) -> tuple[Any, Any]:
    """One training step of each framework, same model, same weights, same batches."""
    import numpy as np
    import torch

    import tensorgrad as tg

    d, layers, heads, context, batch = SIZES[size]
    tg.manual_seed(0)
    model = tiny_gpt().GPT(VOCAB, context, d, layers, heads)
    twin = torch_twin(model).to(device)
    model = model.to(device)
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, VOCAB, (batch, context)), rng.integers(0, VOCAB, batch * context))
               for _ in range(4)]
    ours = [(tg.tensor(x, device=device), tg.tensor(y, device=device)) for x, y in batches]
    theirs = [(torch.tensor(x, device=device), torch.tensor(y, device=device))
              for x, y in batches]
    opt = tg.optim.AdamW(model.parameters(), lr=1e-3)
    topt = torch.optim.AdamW(twin.parameters(), lr=1e-3)
    count = [0, 0]

    def tg_step() -> None:
        x, y = ours[count[0] % len(ours)]
        count[0] += 1
        opt.zero_grad()
        loss = tg.nn.functional.cross_entropy(model(x).reshape(-1, VOCAB), y)
        loss.backward()
        opt.step()

    def torch_step() -> None:
        x, y = theirs[count[1] % len(theirs)]
        count[1] += 1
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(twin(x).reshape(-1, VOCAB), y)
        loss.backward()
        topt.step()

    return tg_step, torch_step


def _timer(device: str) -> Any:
    import torch

    import tensorgrad as tg

    def sync() -> None:
        if device == "cuda":
            tg.cuda.synchronize()
            torch.cuda.synchronize()

    def timed(fn: Any) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    return timed


def run(size: str, device: str, steps: int) -> tuple[float, float]:
    """Median step times (tensorgrad, PyTorch) in seconds, alternating step by step."""
    tg_step, torch_step = _step_fns(size, device)
    timed = _timer(device)
    for _ in range(2):  # warm-up: first-call costs (kernel builds, allocator growth)
        timed(tg_step)
        timed(torch_step)
    ours, theirs = [], []
    for _ in range(steps):
        ours.append(timed(tg_step))
        theirs.append(timed(torch_step))
    return statistics.median(ours), statistics.median(theirs)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS and PyTorch threads (1: steady ratios on a shared machine)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per framework and size (default 30 example, 6 larger)")
    p.add_argument("--sizes", default="example,larger")
    args = p.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy and PyTorch load BLAS
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    print(f"tiny GPT training step on {args.device}, {args.threads} thread(s); numpy "
          f"{np.__version__}, torch {torch.__version__}")
    print(f"{'size':<8} {'d, layers, heads, ctx, batch':<30} {'tensorgrad':>11} "
          f"{'PyTorch':>11} {'ratio':>6}")
    for size in args.sizes.split(","):
        steps = args.steps or (30 if size == "example" else 6)
        ours, theirs = run(size, args.device, steps)
        print(f"{size:<8} {str(SIZES[size]):<30} {ours * 1e3:>8.2f} ms {theirs * 1e3:>8.2f} ms "
              f"{ours / theirs:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
