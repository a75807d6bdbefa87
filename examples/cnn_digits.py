"""A small convolutional network on the 8x8 digits, seen as 1-channel 8x8 images.

    python examples/cnn_digits.py

Two blocks of Conv2d(3x3, padding 1) -> BatchNorm2d -> ReLU -> MaxPool2d(2) take the image from
1x8x8 to 16x4x4 to 32x2x2; a Linear layer maps the 128 features to 10 class scores. Adam,
cross-entropy, the same fixed 80/20 split as train_digits.py. Reports the test accuracy and
plots the curves next to test digits with their predicted labels: <out>/cnn_digits.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import _common
import numpy as np

import tensorgrad as tg
from tensorgrad import nn

SCRIPT = "cnn_digits"
SPLIT_SEED = 0  # the same test set as train_digits.py


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 10),
    )


@tg.no_grad()
def accuracy(model: nn.Module, x: tg.Tensor, y: tg.Tensor) -> tuple[float, np.ndarray]:
    """Accuracy in eval mode (BatchNorm uses its running statistics) and the predictions."""
    model.eval()
    predicted = model(x).argmax(dim=1)
    model.train()
    return (predicted == y).float().mean().item(), predicted.numpy()


def plot(losses: list[float], test_acc: list[float], images: np.ndarray, labels: np.ndarray,
         predicted: np.ndarray, path: Path) -> None:
    plt = _common.pyplot()
    fig = plt.figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1.1, 1])
    ax_loss, ax_acc = left.subplots(2, 1, sharex=True)
    epochs = range(1, len(losses) + 1)
    ax_loss.plot(epochs, losses)
    ax_loss.set(ylabel="train loss", yscale="log")
    ax_acc.plot(epochs, [100 * a for a in test_acc], color="C1")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    grid = right.subplots(4, 6)
    for ax, image, label, guess in zip(grid.ravel(), images, labels, predicted):
        ax.imshow(image, cmap="gray_r")
        wrong = guess != label
        ax.set_title(f"{guess} (not {label})" if wrong else f"{guess}", fontsize=9,
                     color="C3" if wrong else "C2")
        ax.axis("off")
    right.suptitle("test digits and predicted labels, mistakes first", fontsize=10)
    left.suptitle(f"CNN on the 8x8 digits: {100 * test_acc[-1]:.1f}% test accuracy", fontsize=10)
    _common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=15, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=64, help="samples per training step")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    args = p.parse_args(argv)
    if args.smoke:
        args.epochs = 1
    device, out = _common.setup(args, SCRIPT)

    x, y = tg.data.datasets.load_digits(device=device)
    images = x.reshape(-1, 1, 8, 8)
    order = tg.tensor(np.random.default_rng(SPLIT_SEED).permutation(x.shape[0]), device=device)
    n_train = int(0.8 * x.shape[0])
    train, test = order[:n_train], order[n_train:]
    x_train, y_train, x_test, y_test = images[train], y[train], images[test], y[test]
    print(f"data: {x_train.shape[0]} training and {x_test.shape[0]} test images of shape "
          f"{tuple(x_train.shape[1:])}")
    model = build_model().to(device)
    print(f"model: {model}")
    optimizer = tg.optim.Adam(model.parameters(), lr=args.lr)
    loader = tg.data.DataLoader(tg.data.TensorDataset(x_train, y_train),
                                batch_size=args.batch_size, shuffle=True, seed=args.seed)
    loss_fn = nn.CrossEntropyLoss()

    losses: list[float] = []
    test_acc: list[float] = []
    started = time.perf_counter()
    bar = _common.progress(range(args.epochs), desc="epochs")
    for _ in bar:
        epoch_losses = []
        for i, (xb, yb) in enumerate(loader):
            if args.smoke and i == 3:
                break
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            epoch_losses.append(loss.item())
        losses.append(float(np.mean(epoch_losses)))
        test_acc.append(accuracy(model, x_test, y_test)[0])
        bar.set_postfix(loss=f"{losses[-1]:.4f}", test_acc=f"{100 * test_acc[-1]:.2f}%",
                        refresh=False)
    elapsed = time.perf_counter() - started
    final, predicted = accuracy(model, x_test, y_test)
    print(f"test accuracy: {100 * final:.2f}% after {args.epochs} epochs ({elapsed:.1f}s)")
    labels = y_test.numpy()
    shown = np.argsort(predicted == labels, kind="stable")[:24]  # the mistakes first
    plot(losses, test_acc, x_test.numpy()[shown, 0], labels[shown], predicted[shown],
         out / "cnn_digits.png")


if __name__ == "__main__":
    main()
