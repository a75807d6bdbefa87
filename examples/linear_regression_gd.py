"""1-D least squares by plain gradient descent, stopping when ||w_(k+1) - w_k|| < eps.

    python examples/linear_regression_gd.py

The model is y_hat = w x + b, the loss L(w, b) = mean((y_hat - y)^2). Each step computes the
gradient with backward() and updates the parameters by hand, under tg.no_grad() so the update
itself is not recorded: w <- w - lr dL/dw (no optimizer object, the lecture's update rule).
Training stops when the step taken, ||(w, b)_(k+1) - (w, b)_k||, falls below --eps.
Plots: the loss per epoch and the fitted line at epochs 0, 10 and 100 -> <out>/regression.png.
"""

from __future__ import annotations

import math
from pathlib import Path

import _common
import numpy as np

import tensorgrad as tg

SCRIPT = "linear_regression_gd"
SNAPSHOTS = (0, 10, 100)


def plot(x: np.ndarray, y: np.ndarray, losses: list[float], lines: dict[int, tuple[float, float]],
         exact: tuple[float, float], stopped: int, path: Path) -> None:
    plt = _common.pyplot()
    fig, (ax_loss, ax_fit) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    colors = {epoch: f"C{k + 1}" for k, epoch in enumerate(lines)}
    ax_loss.plot(range(len(losses)), losses)
    for epoch in lines:
        ax_loss.plot(epoch, losses[epoch], "o", color=colors[epoch], label=f"epoch {epoch}")
    ax_loss.set(xlabel="epoch", ylabel="mean squared error", yscale="log",
                title=f"Loss (stopped at epoch {stopped})")
    ax_loss.legend()
    ax_fit.scatter(x, y, s=10, color="grey", alpha=0.6, label="data")
    grid = np.linspace(x.min(), x.max(), 2)
    for epoch, (w, b) in lines.items():
        ax_fit.plot(grid, w * grid + b, color=colors[epoch],
                    label=f"epoch {epoch}: y = {w:.2f} x + {b:.2f}")
    w, b = exact
    ax_fit.plot(grid, w * grid + b, "k--", lw=1, label=f"least squares: y = {w:.2f} x + {b:.2f}")
    ax_fit.set(xlabel="x", ylabel="y", title="Fitted line")
    ax_fit.legend(fontsize=7)
    for ax in (ax_loss, ax_fit):
        ax.grid(alpha=0.3)
    fig.suptitle("Linear regression by gradient descent (tensorgrad)")
    _common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="number of data points")
    p.add_argument("--lr", type=float, default=0.1, help="gradient descent step size")
    p.add_argument("--eps", type=float, default=1e-5, help="stop when the step is below this")
    p.add_argument("--max-epochs", type=int, default=2000,
                   help="stop here if the step never gets below --eps")
    args = p.parse_args(argv)
    if args.smoke:
        args.max_epochs = 12
    device, out = _common.setup(args, SCRIPT)

    x, y = tg.data.datasets.make_regression(n=args.n, w=2.0, b=1.0, noise=0.3, seed=args.seed,
                                            device=device)
    print(f"data: {args.n} points on y = 2 x + 1 plus noise; model y_hat = w x + b")
    # Start from a line that is visibly wrong, so the plot shows it turning into place.
    w = tg.tensor(-1.0, device=device, requires_grad=True)
    b = tg.tensor(0.0, device=device, requires_grad=True)
    print(f"gradient descent: lr = {args.lr}, stop when ||(w, b)_(k+1) - (w, b)_k|| < {args.eps}")

    losses: list[float] = []
    lines: dict[int, tuple[float, float]] = {}
    stopped = args.max_epochs
    bar = _common.progress(range(args.max_epochs), desc="gradient descent")
    for epoch in bar:
        if epoch in SNAPSHOTS:
            lines[epoch] = (w.item(), b.item())
        loss = ((w * x + b - y) ** 2).mean()
        loss.backward()
        losses.append(loss.item())
        with tg.no_grad():
            w -= args.lr * w.grad
            b -= args.lr * b.grad
        step = args.lr * math.hypot(w.grad.item(), b.grad.item())
        w.grad = None
        b.grad = None
        if epoch in SNAPSHOTS:
            bar.write(f"  epoch {epoch:4d}: loss {losses[-1]:.5f}, w = {lines[epoch][0]:.4f}, "
                  f"b = {lines[epoch][1]:.4f}")
        bar.set_postfix(loss=f"{losses[-1]:.5f}", step=f"{step:.1e}", refresh=False)
        if step < args.eps:
            stopped = epoch + 1
            break
    print(f"stopped after {stopped} steps (last step {step:.2e}"
          + (f" < eps = {args.eps})" if step < args.eps else ", max epochs reached)"))

    xn, yn = x.numpy()[:, 0].astype(np.float64), y.numpy()[:, 0].astype(np.float64)
    exact_w, exact_b = np.polyfit(xn, yn, 1)
    print(f"gradient descent: y = {w.item():.4f} x + {b.item():.4f}")
    print(f"closed form     : y = {exact_w:.4f} x + {exact_b:.4f}  (np.polyfit, for comparison)")
    plot(xn, yn, losses, lines, (exact_w, exact_b), stopped, out / "regression.png")


if __name__ == "__main__":
    main()
