"""Train a tiny GPT from scratch to sort digits, and test it on sequences it never saw.

    python examples/tiny_gpt.py              # >= 99% exact match on held-out sequences, minutes
    python examples/tiny_gpt.py --steps 3000 --stop-after 1000   # "interrupted" at step 1000
    python examples/tiny_gpt.py --steps 3000 --resume            # ... continues to step 3000

The task (minGPT's sorting demo, with ten digits): the model reads LENGTH random digits and
writes them back in sorted order, one token at a time. A decoder-only transformer: token and
position embeddings, pre-norm blocks of causal self-attention and a GELU MLP, a final layer
norm and a head that shares the token embedding's weights. The loss counts only the sorted
half. A fixed set of sequences is held out: training never draws them, and the score is the
fraction of them sorted exactly right by greedy decoding.

Writes <out>/loss.png (the training loss), <out>/attention.png (what one head of the last
layer looks at while it sorts one held-out sequence) and <out>/checkpoint.safetensors (every
--eval-every steps; --resume continues from it with nothing lost). A new run refuses to
replace an earlier run's checkpoint unless given --overwrite.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import _common
import numpy as np

import tensorgrad as tg
from tensorgrad import nn
from tensorgrad.nn import functional as F

SCRIPT = "tiny_gpt"
DIGITS = 10
LENGTH = 6
IGNORE = -100  # the target of the input half: no loss there
TEST_SEED = 1234  # the held-out set is the same whatever --seed says


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions <= t only."""

    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(d_model, 3 * d_model)  # q, k and v in one product
        self.c_proj = nn.Linear(d_model, d_model)

    def heads(self, x: tg.Tensor) -> tuple[tg.Tensor, tg.Tensor, tg.Tensor]:
        """q, k, v of x (B, T, C), each (B, heads, T, C / heads)."""
        b, t, c = x.shape
        q, k, v = self.c_attn(x).chunk(3, dim=-1)
        return tuple(z.reshape(b, t, self.n_head, c // self.n_head).transpose(1, 2)
                     for z in (q, k, v))

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        b, t, c = x.shape
        q, k, v = self.heads(x)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))

    @tg.no_grad()
    def weights(self, x: tg.Tensor) -> tg.Tensor:
        """The attention weights (B, heads, T, T), written out for the plot."""
        q, k, _ = self.heads(x)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        t = x.shape[1]
        future = tg.triu(tg.ones(t, t, device=x.device), 1) > 0
        return scores.masked_fill(future, -math.inf).softmax(-1)


class Block(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x)): the pre-norm transformer block."""

    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * d_model, d_model))

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token + position embeddings, n_layer blocks, a final norm, and logits through the
    token embedding's own weights (weight tying: one matrix reads and writes tokens)."""

    def __init__(self, vocab: int, block_size: int, d_model: int, n_layer: int,
                 n_head: int) -> None:
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab, d_model)
        self.wpe = nn.Embedding(block_size, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        # GPT-2's initialization: N(0, 0.02), zero biases, and the projections that write
        # into the residual stream scaled down by sqrt(2 n_layer) so its variance stays put.
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:
                deep = name.endswith("attn.c_proj.weight") or name.endswith("mlp.2.weight")
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer) if deep else 0.02)

    def forward(self, idx: tg.Tensor) -> tg.Tensor:
        t = idx.shape[1]
        if t > self.block_size:
            raise ValueError(f"GPT: sequence of {t} tokens, the model takes at most "
                             f"{self.block_size}")
        x = self.wte(idx) + self.wpe(tg.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)


def sequences(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, DIGITS, size=(n, LENGTH))


def codes(digits: np.ndarray) -> np.ndarray:
    """Each sequence as one integer, to tell held-out sequences apart quickly."""
    return digits @ (DIGITS ** np.arange(LENGTH))


def held_out(n: int) -> np.ndarray:
    """n distinct sequences that training never sees."""
    rng = np.random.default_rng(TEST_SEED)
    _, first = np.unique(codes(sequences(rng, 2 * n)), return_index=True)
    return sequences(np.random.default_rng(TEST_SEED), 2 * n)[np.sort(first)[:n]]


def batch(seed: int, step: int, size: int, test_codes: np.ndarray) -> tuple[np.ndarray, ...]:
    """The training batch of one step: a function of (seed, step) alone, so a resumed run
    sees the same batches as one never interrupted. Held-out sequences are drawn again."""
    rng = np.random.default_rng([seed, step])
    digits = sequences(rng, size)
    while (seen := np.isin(codes(digits), test_codes)).any():
        digits[seen] = sequences(rng, int(seen.sum()))
    ordered = np.sort(digits, axis=1)
    x = np.concatenate([digits, ordered[:, :-1]], axis=1)
    y = np.concatenate([np.full((size, LENGTH - 1), IGNORE), ordered], axis=1)
    return x, y


@tg.no_grad()
def sort_greedy(model: GPT, digits: np.ndarray, device: Any) -> np.ndarray:
    """The model's sorted version of each row, one greedy token at a time."""
    model.eval()
    idx = tg.tensor(digits, device=device)
    for _ in range(LENGTH):
        nxt = model(idx)[:, -1].argmax(dim=-1, keepdim=True)
        idx = tg.cat([idx, nxt], dim=1)
    model.train()
    return idx.numpy()[:, LENGTH:]


def exact_match(model: GPT, digits: np.ndarray, device: Any) -> float:
    return float((sort_greedy(model, digits, device) == np.sort(digits, axis=1)).all(1).mean())


def plot_loss(history: dict[str, list[float]], path: Path) -> None:
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.plot(np.arange(1, len(history["loss"]) + 1), history["loss"], lw=0.8)
    ax.set(xlabel="step", ylabel="cross-entropy (sorted half)", yscale="log",
           title="Tiny GPT learning to sort digits")
    ax.grid(alpha=0.3)
    _common.save_figure(fig, path)


def plot_attention(model: GPT, digits: np.ndarray, device: Any, path: Path) -> None:
    """Head 0 of the last block on one held-out sequence and the model's own answer."""
    answer = sort_greedy(model, digits[None], device)[0]
    tokens = np.concatenate([digits, answer[:-1]])
    model.eval()
    with tg.no_grad():
        x = model.wte(tg.tensor(tokens[None], device=device))
        x = x + model.wpe(tg.arange(len(tokens), device=device))
        for block in model.blocks[:-1]:
            x = block(x)
        last = model.blocks[-1]
        weights = last.attn.weights(last.ln_1(x))[0, 0].numpy()
    model.train()
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
    ax.imshow(weights, cmap="viridis")
    labels = [str(t) for t in tokens]
    ax.set_xticks(range(len(tokens)), labels)
    ax.set_yticks(range(len(tokens)), labels)
    ax.set(xlabel="attends to (key)", ylabel="position (query)",
           title=f"last block, head 0: {''.join(map(str, digits))} -> "
                 f"{''.join(map(str, answer))}")
    _common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500, help="training steps (one batch each)")
    p.add_argument("--batch-size", type=int, default=128, help="sequences per batch")
    p.add_argument("--lr", type=float, default=2e-3,
                   help="peak AdamW learning rate (linear warm-up, then cosine decay)")
    p.add_argument("--d-model", type=int, default=64, help="width of the residual stream")
    p.add_argument("--layers", type=int, default=2, help="transformer blocks")
    p.add_argument("--heads", type=int, default=4, help="attention heads per block")
    p.add_argument("--test-size", type=int, default=1000,
                   help="held-out sequences, never drawn for training")
    p.add_argument("--eval-every", type=int, default=500,
                   help="steps between held-out evaluations (and checkpoints)")
    _common.checkpoint_options(p)
    p.add_argument("--stop-after", type=int, default=None, metavar="K",
                   help="stop at step K, as if interrupted (then use --resume)")
    args = p.parse_args(argv)
    if args.smoke:
        args.steps, args.eval_every, args.test_size = 6, 3, 50
    device, out = _common.setup(args, SCRIPT)
    ckpt_path = _common.checkpoint(args, out, SCRIPT)

    test = held_out(args.test_size)
    test_codes = codes(test)
    model = GPT(DIGITS, 2 * LENGTH - 1, args.d_model, args.layers, args.heads).to(device)
    decay = [q for name, q in model.named_parameters() if q.ndim == 2]
    no_decay = [q for name, q in model.named_parameters() if q.ndim < 2]
    optimizer = tg.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                {"params": no_decay, "weight_decay": 0.0}],
                               lr=args.lr, betas=(0.9, 0.98))
    warmup = max(1, args.steps // 20)

    def schedule(step: int) -> float:  # linear warm-up, then cosine decay to a tenth
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))

    scheduler = tg.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    config = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "d_model", "layers",
                                            "heads", "seed", "test_size")}
    history: dict[str, list[float]] = {"loss": [], "eval_step": [], "exact": []}
    start = 0
    if args.resume:
        start, history = resume(ckpt_path, config, model, optimizer, scheduler)
    n_params = sum(q.numel() for q in model.parameters())
    print(f"model: {args.layers} blocks, {args.heads} heads, d_model {args.d_model}, "
          f"{n_params} parameters; task: sort {LENGTH} digits; {len(test)} held-out sequences")

    started = time.perf_counter()
    bar = _common.progress(range(start, args.steps), desc="steps", total=args.steps - start)
    for step in bar:
        x, y = batch(args.seed, step, args.batch_size, test_codes)
        logits = model(tg.tensor(x, device=device))
        loss = F.cross_entropy(logits.reshape(-1, DIGITS), tg.tensor(y.reshape(-1),
                                                                     device=device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        history["loss"].append(loss.item())  # a float: keeps no graph alive
        done = step + 1
        if done % args.eval_every == 0 or done == args.steps:
            exact = exact_match(model, test, device)
            history["eval_step"].append(done)
            history["exact"].append(exact)
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", held_out=f"{100 * exact:.1f}%",
                            refresh=False)
            tg.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "step": done, "config": config,
                     "history": history}, ckpt_path)
            if args.stop_after is not None and done >= args.stop_after:
                print(f"stopping after step {done} as asked (--stop-after); continue with "
                      "--resume")
                break
    elapsed = time.perf_counter() - started
    print(f"checkpoint: {ckpt_path}")
    if history["loss"]:
        plot_loss(history, out / "loss.png")
    plot_attention(model, test[0], device, out / "attention.png")
    answers = sort_greedy(model, test[:5], device)
    for digits, answer in zip(test[:5], answers):
        mark = "ok" if (answer == np.sort(digits)).all() else "WRONG"
        print(f"  {''.join(map(str, digits))} -> {''.join(map(str, answer))}  {mark}")
    if history["exact"]:
        print(f"held-out exact match: {100 * history['exact'][-1]:.2f}% of {len(test)} "
              f"sequences after {history['eval_step'][-1]} steps ({elapsed:.1f}s of training "
              f"in this run)")


def resume(path: Path, config: dict[str, Any], model: GPT, optimizer: Any,
           scheduler: Any) -> tuple[int, dict[str, list[float]]]:
    """Restore a checkpoint; returns (steps done, history so far)."""
    if not path.exists():
        raise SystemExit(f"{SCRIPT}: --resume: no checkpoint at {path}; run without --resume "
                         "first (or pass the same --out)")
    ckpt = tg.load(path, device=next(iter(model.parameters())).device)
    if ckpt["config"] != config:
        raise SystemExit(f"{SCRIPT}: --resume: {path} was written with {ckpt['config']}, this "
                         f"run asks for {config}; use the same options")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    print(f"resumed from {path}: {ckpt['step']} steps done")
    return ckpt["step"], ckpt["history"]


if __name__ == "__main__":
    main()
