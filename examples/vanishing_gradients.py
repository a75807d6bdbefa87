"""Vanishing and exploding gradients, layer by layer, and the lecture's remedies.

    python examples/vanishing_gradients.py

Deep narrow networks (64 -> 30 -> 30 -> 30 -> 30 -> 10: four hidden layers) are trained on the
8x8 digits with plain SGD. After every backward pass, tg.nn.utils.grad_norms gives the gradient
norm of each hidden layer's weights: how fast that layer learns. With weights drawn from
N(0, 1), sigmoid and tanh units saturate and each layer passes back a fraction of the gradient
it receives, so the earliest layers learn far slower than the last (vanishing gradients);
ReLU units with the same weights amplify it instead (exploding gradients). Then the remedies:
Xavier/Kaiming initialization, ReLU, gradient clipping and batch normalization, each on the same
plot. Printed for every setting: the ratio of the first hidden layer's gradient norm to the
last one's (1 = every layer learns at the same speed). Plot: <out>/learning_speed.png.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import _common
import tensorgrad as tg
from tensorgrad import nn

SCRIPT = "vanishing_gradients"
HIDDEN = [30, 30, 30, 30]


@dataclass
class Setting:
    title: str
    activation: Callable[[], nn.Module]
    init: Callable[[tg.Tensor], object]
    batch_norm: bool = False
    clip: float | None = None


def standard_normal(weight: tg.Tensor) -> None:
    nn.init.normal_(weight, 0.0, 1.0)


SETTINGS = [
    Setting("sigmoid, N(0, 1) weights", nn.Sigmoid, standard_normal),
    Setting("tanh, N(0, 1) weights", nn.Tanh, standard_normal),
    Setting("ReLU, N(0, 1) weights", nn.ReLU, standard_normal),
    Setting("remedy: sigmoid, Xavier init", nn.Sigmoid, nn.init.xavier_normal_),
    Setting("remedy: ReLU, Kaiming init", nn.ReLU,
            lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")),
    Setting("remedy: ReLU, N(0, 1), clip norm 1", nn.ReLU, standard_normal, clip=1.0),
    Setting("remedy: sigmoid, N(0, 1), batch norm", nn.Sigmoid, standard_normal,
            batch_norm=True),
]


def build(setting: Setting, device: tg.Device) -> tuple[nn.Module, list[str]]:
    """The network, and the names of the weights that feed each hidden layer."""
    layers: list[nn.Module] = []
    names = []
    width = 64
    for h in HIDDEN:
        linear = nn.Linear(width, h)
        setting.init(linear.weight)
        nn.init.zeros_(linear.bias)
        names.append(f"{len(layers)}.weight")
        layers.append(linear)
        if setting.batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(setting.activation())
        width = h
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers).to(device), names


def train(setting: Setting, loader: tg.data.DataLoader, device: tg.Device, steps: int,
          lr: float) -> np.ndarray:
    """SGD for `steps` steps; returns the gradient norm of each hidden layer at every step,
    shape (steps, hidden layers). With clipping, the norms after clipping (what SGD uses)."""
    model, names = build(setting, device)
    optimizer = tg.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    norms = []
    bar = _common.progress(range(steps), desc=setting.title)
    batches = iter(())
    for _ in bar:
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(loader)
            xb, yb = next(batches)
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        if setting.clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), setting.clip)
        layer_norms = nn.utils.grad_norms(model)
        norms.append([layer_norms[name] for name in names])
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return np.array(norms)


def plot(results: dict[str, np.ndarray], steps_per_epoch: int, path: Path) -> None:
    plt = _common.pyplot()
    cols = 4
    rows = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), sharex=True,
                             sharey=True, layout="constrained")
    axes = axes.ravel()
    for ax, (title, norms) in zip(axes, results.items()):
        epochs = np.arange(1, len(norms) + 1) / steps_per_epoch
        for layer in range(norms.shape[1]):
            ax.plot(epochs, norms[:, layer], lw=1, label=f"hidden layer {layer + 1}")
        ratio = _ratio(norms)
        ax.set_title(f"{title}\nfirst/last = {ratio:.2g}", fontsize=9)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in axes[len(results):]:
        ax.axis("off")
    axes[0].legend(fontsize=7)
    for ax in axes[(rows - 1) * cols:]:
        ax.set_xlabel("epoch")
    for ax in axes[::cols]:
        ax.set_ylabel("||dL/dW|| (learning speed)")
    fig.suptitle("Learning speed per hidden layer (tensorgrad, 8x8 digits, SGD)")
    _common.save_figure(fig, path)


def _ratio(norms: np.ndarray) -> float:
    """First hidden layer's gradient norm over the last's, as a geometric mean over steps."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.exp(np.nanmean(np.log(norms[:, 0] / norms[:, -1]))))


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    args = p.parse_args(argv)
    device, out = _common.setup(args, SCRIPT)

    x, y = tg.data.datasets.load_digits(device=device)
    loader = tg.data.DataLoader(tg.data.TensorDataset(x, y), batch_size=args.batch_size,
                                shuffle=True, seed=args.seed, drop_last=True)
    steps = 5 if args.smoke else args.epochs * len(loader)
    print(f"networks 64 -> {' -> '.join(map(str, HIDDEN))} -> 10, SGD(lr={args.lr}), "
          f"{steps} steps of batch {args.batch_size} on the digits")
    results = {}
    for setting in SETTINGS:
        tg.manual_seed(args.seed)  # every setting starts from the same random draws
        results[setting.title] = train(setting, loader, device, steps, args.lr)
    print("\ngradient norm of the first hidden layer / the last (geometric mean over steps):")
    for title, norms in results.items():
        mean = norms.mean(axis=0)
        print(f"  {title:<40} {_ratio(norms):>9.3g}   per layer: "
              + "  ".join(f"{v:.2e}" for v in mean))
    print("  (clipping scales every layer by the same factor: it bounds the step, "
          "not the ratio between layers)")
    plot(results, len(loader), out / "learning_speed.png")


if __name__ == "__main__":
    main()
