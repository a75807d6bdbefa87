"""Vanishing and exploding gradients, layer by layer, and the lecture's remedies.

    python examples/vanishing_gradients.py

Deep narrow networks (64 -> 30 -> 30 -> 30 -> 30 -> 10: four hidden layers) are trained on the
8x8 digits with plain SGD. After every backward pass, tg.nn.utils.grad_norms gives the gradient
norm of each hidden layer's weights: how fast that layer learns.

With small weights (PyTorch's default initialization) each sigmoid layer passes back at most a
quarter of the gradient it receives (sigmoid' <= 1/4), so the earliest layers learn far slower
than the last: vanishing gradients. ReLU units with large N(0, 1) weights amplify it instead:
exploding gradients, after which the units die. Then the lecture's remedies, each on the same
plot: better initialization (Xavier, Kaiming), ReLU, gradient clipping, batch normalization.
Printed for every setting: the ratio of the first hidden layer's gradient norm to the last
one's (1 = every layer learns at the same speed). Plot: <out>/learning_speed.png.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _common
import numpy as np

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


def default_init(weight: tg.Tensor) -> None:
    """Keep Linear's own initialization, PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""


def standard_normal(weight: tg.Tensor) -> None:
    nn.init.normal_(weight, 0.0, 1.0)


def xavier_sigmoid(weight: tg.Tensor) -> None:
    """Xavier with gain 4: sigmoid'(0) = 1/4, so Glorot and Bengio scale the weights by 4 to
    keep the variance of the backpropagated gradient the same from layer to layer."""
    nn.init.xavier_normal_(weight, gain=4.0)


def kaiming_relu(weight: tg.Tensor) -> None:
    nn.init.kaiming_normal_(weight, nonlinearity="relu")


# The first row shows the problems, the second row a remedy each.
SETTINGS = [
    Setting("vanishing: sigmoid, default init", nn.Sigmoid, default_init),
    Setting("tanh, default init", nn.Tanh, default_init),
    Setting("ReLU, default init", nn.ReLU, default_init),
    Setting("exploding: ReLU, N(0, 1) weights", nn.ReLU, standard_normal),
    Setting("remedy: sigmoid, Xavier init (gain 4)", nn.Sigmoid, xavier_sigmoid),
    Setting("remedy: ReLU, Kaiming init", nn.ReLU, kaiming_relu),
    # These weights give gradient norms of 1e2 to 1e4: a bound of 10 stops the blow-up yet
    # leaves steps large enough to learn (a bound of 1 learns too slowly to beat the first row).
    Setting("remedy: ReLU, N(0, 1), clip norm to 10", nn.ReLU, standard_normal, clip=10.0),
    Setting("remedy: sigmoid, default init, batch norm", nn.Sigmoid, default_init,
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
          lr: float) -> tuple[np.ndarray, float]:
    """SGD for `steps` steps; returns the gradient norm of each hidden layer at every step,
    shape (steps, hidden layers), and the last loss. With clipping, the norms after clipping
    (what SGD uses)."""
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
        last_loss = loss.item()
        bar.set_postfix(loss=f"{last_loss:.3f}", refresh=False)
    return np.array(norms), last_loss


def plot(results: dict[str, tuple[np.ndarray, float]], steps_per_epoch: int,
         path: Path) -> None:
    plt = _common.pyplot()
    cols = 4
    rows = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), sharex=True,
                             sharey=True, layout="constrained")
    axes = axes.ravel()
    for ax, (title, (norms, last_loss)) in zip(axes, results.items()):
        epochs = np.arange(1, len(norms) + 1) / steps_per_epoch
        for layer in range(norms.shape[1]):
            ax.plot(epochs, norms[:, layer], lw=1, label=f"hidden layer {layer + 1}")
        ax.set_title(f"{title}\nfirst/last = {_ratio(norms):.2g}, last loss {last_loss:.2g}",
                     fontsize=9)
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
    p.add_argument("--epochs", type=int, default=10,
                   help="passes over the digits for each setting")
    p.add_argument("--batch-size", type=int, default=64, help="samples per SGD step")
    p.add_argument("--lr", type=float, default=0.05, help="SGD's learning rate")
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
    for title, (norms, _) in results.items():
        mean = norms.mean(axis=0)
        print(f"  {title:<42} {_ratio(norms):>9.3g}   mean per layer: "
              + "  ".join(f"{v:.1e}" for v in mean)
              + ("   (all units dead by the end)" if not norms[-1].any() else ""))
    print("  (clipping scales every layer by the same factor: it bounds the step, "
          "not the ratio between layers)")
    plot(results, len(loader), out / "learning_speed.png")


if __name__ == "__main__":
    main()
