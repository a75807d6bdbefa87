"""Train an MLP on the 8x8 handwritten digits (bundled with scikit-learn, no download) with Adam.

    python examples/train_digits.py                      # ~98% test accuracy in seconds on a CPU
    python examples/train_digits.py --epochs 30 --stop-after 10   # "interrupted" after epoch 10
    python examples/train_digits.py --epochs 30 --resume          # ... continues to epoch 30
    python -m tensorgrad.distributed.run -n 2 examples/train_digits.py --distributed

A checkpoint (model, optimizer, epoch, data-loader position, curves so far) is written with
tg.save after every epoch to <out>/checkpoint.safetensors; --resume continues from it with nothing
lost: the resumed run ends with the same weights, bit for bit on the CPU, as one never interrupted
(a checkpoint.npz of the format before safetensors is converted once).
A new run refuses to replace an earlier run's checkpoint unless given --overwrite.
Loss and accuracy curves go to <out>/curves.png.

With --distributed, under the launcher, the ranks train one model data-parallel
(tg.nn.parallel.DistributedDataParallel over MPI, or NCCL on GPUs): each takes its share of
every batch (tg.data.DistributedSampler), so --batch-size stays the global batch; only rank 0
prints and writes the checkpoint, which has the same layout as a single process's.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import _common
import numpy as np

import tensorgrad as tg
import tensorgrad.distributed as dist
from tensorgrad import nn

SCRIPT = "train_digits"
SPLIT_SEED = 0  # the test set stays the same whatever --seed says (which changes init/shuffling)


def build_model(hidden: list[int]) -> nn.Module:
    """64 pixels -> hidden ReLU layers -> 10 class scores (logits)."""
    layers: list[nn.Module] = []
    width = 64
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def split(x: tg.Tensor, y: tg.Tensor) -> tuple[tg.Tensor, ...]:
    """The fixed 80/20 train/test split (a permutation seeded with SPLIT_SEED), with the pixels
    standardized by the training set's mean and standard deviation."""
    order = tg.tensor(np.random.default_rng(SPLIT_SEED).permutation(x.shape[0]),
                      device=x.device)
    n_train = int(0.8 * x.shape[0])
    train, test = order[:n_train], order[n_train:]
    x_train, x_test = x[train], x[test]
    # + 0.1: border pixels are almost always 0, and dividing by their tiny spread would turn
    # the rare stroke there into a huge input.
    mean, scale = x_train.mean(dim=0), x_train.std(dim=0) + 0.1
    return (x_train - mean) / scale, y[train], (x_test - mean) / scale, y[test]


@tg.no_grad()
def evaluate(model: nn.Module, x: tg.Tensor, y: tg.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a whole split, recording nothing on the tape."""
    model.eval()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    model.train()
    return loss, accuracy


def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    plt = _common.pyplot()
    epochs = range(1, len(history["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    ax_loss.plot(epochs, history["train_loss"], label="train")
    ax_loss.plot(epochs, history["test_loss"], label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="Loss")
    ax_acc.plot(epochs, [100 * a for a in history["train_acc"]], label="train")
    ax_acc.plot(epochs, [100 * a for a in history["test_acc"]], label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy", ylim=(80, 100.5))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("MLP on the 8x8 digits (tensorgrad)")
    _common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30,
                   help="epochs in all (a resumed run trains the ones left)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per training step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 128],
                   help="widths of the hidden layers")
    _common.checkpoint_options(p)
    p.add_argument("--stop-after", type=int, default=None, metavar="K",
                   help="stop once epoch K is done, as if interrupted (then use --resume)")
    p.add_argument("--capture", action="store_true",
                   help="record the training step once and replay it (tg.capture: a CUDA "
                        "graph on a GPU, a list of NumPy calls on the CPU); same weights as "
                        "without")
    p.add_argument("--distributed", action="store_true",
                   help="train data-parallel over the ranks started by `python -m "
                        "tensorgrad.distributed.run -n N` (MPI on the CPU, NCCL on GPUs)")
    args = p.parse_args(argv)
    ranks, rank = 1, 0
    if args.distributed:
        if args.capture:
            p.error("--capture and --distributed cannot be combined (a recorded step cannot hold "
                    "the collectives)")
        dist.init_process_group("nccl" if tg.Device(args.device).type == "cuda" else "mpi")
        ranks, rank = dist.get_world_size(), dist.get_rank()
        if args.batch_size % ranks:
            p.error(f"--batch-size {args.batch_size} must be a multiple of the {ranks} ranks")
        if rank != 0:
            sys.stdout = open(os.devnull, "w")  # only rank 0 reports
    if args.smoke:
        args.epochs = min(args.epochs, 2)
    device, out = _common.setup(args, SCRIPT)
    if args.distributed and device.type == "cuda" and ":" not in args.device:
        # One GPU per rank: the one its NCCL communicator is on.
        device = tg.Device(f"cuda:{dist.get_node_local_rank() % tg.cuda.device_count()}")
    ckpt_path = _common.checkpoint(args, out, SCRIPT)

    x, y = tg.data.datasets.load_digits(device=device)
    x_train, y_train, x_test, y_test = split(x, y)
    print(f"data: {x_train.shape[0]} training and {x_test.shape[0]} test digits of "
          f"{x.shape[1]} pixels, standardized with the training set's statistics")
    model = build_model(args.hidden).to(device)
    optimizer = tg.optim.Adam(model.parameters(), lr=args.lr)
    # The loader's order is a function of (seed, epoch) only, so saving its epoch counter is
    # all it takes to replay the rest of an interrupted run. With --capture the last partial
    # batch of each epoch has a recording of its own (tg.capture keys them by shape).
    train_set = tg.data.TensorDataset(x_train, y_train)
    if args.distributed:
        # Each rank takes its share of the epoch's order, set per epoch below.
        sampler = tg.data.DistributedSampler(train_set, seed=args.seed)
        loader = tg.data.DataLoader(train_set, batch_size=args.batch_size // ranks,
                                    sampler=sampler)
    else:
        loader = tg.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                    seed=args.seed)
    config = {"hidden": args.hidden, "lr": args.lr, "batch_size": args.batch_size,
              "seed": args.seed, "capture": args.capture}
    if args.distributed:
        config["ranks"] = ranks
    history: dict[str, list[float]] = {"train_loss": [], "test_loss": [], "train_acc": [],
                                       "test_acc": []}
    start_epoch = 0
    if args.resume:
        start_epoch, history = resume(ckpt_path, config, model, optimizer, loader)
    print(f"model: {model}")
    if start_epoch >= args.epochs:
        print(f"the run in {out} is already complete: {start_epoch} of {args.epochs} epochs "
              "done, nothing to train (a larger --epochs continues it)")
        return
    print(f"training for epochs {start_epoch + 1}..{args.epochs} with Adam(lr={args.lr}), "
          f"batch size {args.batch_size}")

    loss_fn = nn.CrossEntropyLoss()
    # DDP averages the gradients over the ranks in backward; `model` stays the plain module
    # for evaluation and checkpoints.
    net = nn.parallel.DistributedDataParallel(model) if args.distributed else model

    def train_step(xb: tg.Tensor, yb: tg.Tensor) -> tg.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(net(xb), yb)
        loss.backward()
        optimizer.step()
        return loss

    step = train_step
    if args.capture:
        step = tg.capture(train_step)
        print("training step: recorded by tg.capture after two eager calls, then replayed "
              f"({'as a CUDA graph' if device.type == 'cuda' else 'as a list of NumPy calls'})")

    started = time.perf_counter()
    bar = _common.progress(range(start_epoch, args.epochs), desc="epochs",
                           total=args.epochs - start_epoch)
    for epoch in bar:
        if args.distributed:
            sampler.set_epoch(epoch)
        losses = []
        for i, (xb, yb) in enumerate(loader):
            if args.smoke and i == 3:
                break
            losses.append(step(xb, yb).item())  # a float: keeps no graph alive
        train_loss = float(np.mean(losses))
        if args.distributed:  # the mean over every rank's batches
            mean = tg.tensor(train_loss, dtype=tg.float64, device=device)
            dist.all_reduce(mean, op=dist.ReduceOp.AVG)
            train_loss = mean.item()
        _, train_acc = evaluate(model, x_train, y_train)
        test_loss, test_acc = evaluate(model, x_test, y_test)
        for key, value in (("train_loss", train_loss), ("test_loss", test_loss),
                           ("train_acc", train_acc), ("test_acc", test_acc)):
            history[key].append(value)
        bar.set_postfix(loss=f"{train_loss:.4f}", test_acc=f"{100 * test_acc:.2f}%",
                        refresh=False)
        if rank == 0:  # one writer (atomic); every rank reads it on --resume
            tg.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "epoch": epoch + 1, "loader_epoch": loader.epoch, "config": config,
                     "history": history}, ckpt_path)
        if args.stop_after is not None and epoch + 1 >= args.stop_after:
            print(f"stopping after epoch {epoch + 1} as asked (--stop-after); continue with "
                  "--resume")
            break
    elapsed = time.perf_counter() - started
    print(f"checkpoint: {ckpt_path}")
    if history["test_acc"] and rank == 0:
        plot_curves(history, out / "curves.png")
        print(f"final test accuracy: {100 * history['test_acc'][-1]:.2f}% after "
              f"{len(history['test_acc'])} epochs ({elapsed:.1f}s of training in this run)")


def resume(path: Path, config: dict[str, Any], model: nn.Module, optimizer: Any,
           loader: tg.data.DataLoader) -> tuple[int, dict[str, list[float]]]:
    """Restore everything a checkpoint holds; returns (epochs done, curves so far)."""
    if not path.exists():
        raise SystemExit(f"{SCRIPT}: --resume: no checkpoint at {path}; run without --resume "
                         "first (or pass the same --out)")
    ckpt = tg.load(path, device=next(iter(model.parameters())).device)
    if ckpt["config"] != config:
        raise SystemExit(f"{SCRIPT}: --resume: {path} was written with {ckpt['config']}, this "
                         f"run asks for {config}; use the same options")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    loader.epoch = ckpt["loader_epoch"]
    print(f"resumed from {path}: {ckpt['epoch']} epochs done, test accuracy "
          f"{100 * ckpt['history']['test_acc'][-1]:.2f}%")
    return ckpt["epoch"], ckpt["history"]


if __name__ == "__main__":
    main()
