"""A 2-layer network learns the three-arm spiral data set, which no linear classifier can.

    python examples/spirals.py

The CS231n spirals: 3 classes of 100 points, each an arm winding around the origin. A linear
softmax classifier gets about half of them right; one hidden layer of 100 ReLU units, trained
full batch with Adam on the cross-entropy, bends its decision boundary around the arms.
The plot shows both decision boundaries over the data: <out>/spirals.png.
"""

from __future__ import annotations

from pathlib import Path

import _common
import numpy as np

import tensorgrad as tg
from tensorgrad import nn

SCRIPT = "spirals"


def train(model: nn.Module, x: tg.Tensor, y: tg.Tensor, steps: int, lr: float,
          desc: str) -> float:
    """Full-batch Adam on the cross-entropy; returns the training accuracy."""
    optimizer = tg.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    bar = _common.progress(range(steps), desc=desc)
    for _ in bar:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    with tg.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


def decision_map(model: nn.Module, device: tg.Device, size: int = 300
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The predicted class on a size x size grid over [-1.1, 1.1]^2 (one batched forward)."""
    axis = np.linspace(-1.1, 1.1, size, dtype=np.float32)
    gx, gy = np.meshgrid(axis, axis)
    grid = tg.tensor(np.stack([gx.ravel(), gy.ravel()], axis=1), device=device)
    with tg.no_grad():
        labels = model(grid).argmax(dim=1).numpy()
    return gx, gy, labels.reshape(size, size)


def plot(panels: list[tuple[str, nn.Module]], x: np.ndarray, y: np.ndarray,
         device: tg.Device, path: Path) -> None:
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4),
                             layout="constrained")
    for ax, (title, model) in zip(axes, panels):
        gx, gy, labels = decision_map(model, device)
        ax.contourf(gx, gy, labels, levels=[-0.5, 0.5, 1.5, 2.5], colors=["C0", "C1", "C2"],
                    alpha=0.3)
        for k in np.unique(y):
            ax.scatter(x[y == k, 0], x[y == k, 1], color=f"C{k}", s=12, edgecolors="k",
                       linewidths=0.3, label=f"class {k}")
        ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$", xlim=(-1.1, 1.1), ylim=(-1.1, 1.1),
               aspect="equal")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center",
               title="class\n(shaded: where\nit is predicted)", fontsize=8, title_fontsize=8)
    fig.suptitle("Decision boundaries on the spirals (tensorgrad)")
    _common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=100, help="hidden ReLU units")
    p.add_argument("--steps", type=int, default=1000, help="full-batch training steps")
    p.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate")
    args = p.parse_args(argv)
    if args.smoke:
        args.steps = 5
    device, out = _common.setup(args, SCRIPT)

    x, y = tg.data.datasets.make_spirals(n=100, classes=3, seed=args.seed, device=device)
    print(f"data: {x.shape[0]} points in 3 spiral arms")
    linear = nn.Linear(2, 3).to(device)
    net = nn.Sequential(nn.Linear(2, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 3)).to(device)
    print(f"linear softmax classifier: {linear}")
    linear_acc = train(linear, x, y, args.steps, args.lr, "linear")
    print(f"  training accuracy {100 * linear_acc:.1f}%")
    print(f"2-layer network: {net}")
    net_acc = train(net, x, y, args.steps, args.lr, "2-layer")
    print(f"  training accuracy {100 * net_acc:.1f}%")
    plot([(f"linear: {100 * linear_acc:.0f}% correct", linear),
          (f"2-layer ReLU net: {100 * net_acc:.0f}% correct", net)],
         x.numpy(), y.numpy(), device, out / "spirals.png")


if __name__ == "__main__":
    main()
