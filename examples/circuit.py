"""The lecture's computational graphs, forward and backward, gate by gate.

    python examples/circuit.py

1. f(x, y, z) = (x + y) z at x = -2, y = 5, z = -4: q = x + y = 3, f = q z = -12; backward,
   df/dz = q = 3 and df/dq = z = -4, which the add gate hands unchanged to x and y.
2. The 2-D sigmoid neuron f(w, x) = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) at w = (2, -3, -3),
   x = (-1, -2): built from * + exp and 1/x gates (forward 0.73), then the same neuron with the
   sigmoid as one gate, whose local gradient is (1 - f) f = 0.2.

Every intermediate value and gradient is printed as the lecture's circuit diagrams show them
(gradients of intermediates are caught with register_hook). Each graph is drawn with
tg.viz.draw_graph: the Graphviz source goes to <out>/<name>.dot and, when Graphviz's `dot`
program is installed, the picture to <out>/<name>.png.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import _common

import tensorgrad as tg

SCRIPT = "circuit"


class Circuit:
    """Named scalar tensors of one computation, with the gradient each receives in backward."""

    def __init__(self, device: tg.Device) -> None:
        self.device = device
        self.values: dict[str, tg.Tensor] = {}
        self.grads: dict[str, float] = {}

    def input(self, name: str, value: float) -> tg.Tensor:
        t = tg.tensor(value, dtype=tg.float64, device=self.device, requires_grad=True)
        self.values[name] = t
        return t

    def node(self, name: str, t: tg.Tensor) -> tg.Tensor:
        """Record an intermediate value and hook its gradient (an intermediate's .grad is not
        kept, as in PyTorch)."""
        self.values[name] = t
        t.register_hook(lambda g: self.grads.__setitem__(name, g.item()))
        return t

    def backward(self, out: tg.Tensor) -> None:
        out.backward()
        for name, t in self.values.items():
            if t.is_leaf:
                self.grads[name] = t.grad.item()

    def show(self, rows: list[tuple[str, str]]) -> None:
        """One line per gate: what it computes, its forward value and the gradient of the
        output with respect to it."""
        print(f"    {'value':<28}{'forward':>10}{'gradient':>12}")
        for name, formula in rows:
            print(f"    {name + ' = ' + formula:<28}{self.values[name].item():>10.2f}"
                  f"{self.grads[name]:>12.2f}")


def draw(out_tensor: tg.Tensor, names: dict[str, tg.Tensor], path: Path) -> None:
    """The recorded graph as DOT source, and as a PNG when Graphviz can render it."""
    source = tg.viz.draw_graph(out_tensor, format="dot", path=path.with_suffix(".dot"), names=names)
    print(f"wrote {source.path} (Graphviz source, {len(source.source.splitlines())} lines)")
    if shutil.which("dot") is None:
        print("    Graphviz's `dot` program is not installed, so no picture was rendered "
              "(apt-get install graphviz / brew install graphviz)")
        return
    picture = tg.viz.draw_graph(out_tensor, format="png", path=path.with_suffix(".png"),
                                names=names)
    if picture.rendered is not None:
        print(f"wrote {picture.path}")


def add_multiply(device: tg.Device, out: Path) -> None:
    print("\n1. f(x, y, z) = (x + y) * z at x = -2, y = 5, z = -4")
    c = Circuit(device)
    x, y, z = c.input("x", -2.0), c.input("y", 5.0), c.input("z", -4.0)
    q = c.node("q", x + y)
    f = c.node("f", q * z)
    draw(f, {"x": x, "y": y, "z": z}, out / "circuit_add_mul")
    c.backward(f)
    c.show([("x", "input"), ("y", "input"), ("z", "input"), ("q", "x + y"), ("f", "q * z")])
    print("    chain rule: df/dx = df/dq * dq/dx = z * 1 = -4, df/dz = q = 3")


def neuron(device: tg.Device, out: Path) -> None:
    print("\n2. sigmoid neuron f = 1 / (1 + exp(-(w0*x0 + w1*x1 + w2))) at w = (2, -3, -3), "
          "x = (-1, -2)")
    c = Circuit(device)
    w0, x0 = c.input("w0", 2.0), c.input("x0", -1.0)
    w1, x1 = c.input("w1", -3.0), c.input("x1", -2.0)
    w2 = c.input("w2", -3.0)
    a = c.node("a", w0 * x0)
    b = c.node("b", w1 * x1)
    s = c.node("s", a + b)
    d = c.node("d", s + w2)
    e = c.node("e", d * -1.0)
    g = c.node("g", e.exp())
    h = c.node("h", g + 1.0)
    f = c.node("f", 1.0 / h)
    draw(f, {"w0": w0, "x0": x0, "w1": w1, "x1": x1, "w2": w2}, out / "circuit_neuron")
    c.backward(f)
    print("    gate by gate (local gradient times the gradient from above):")
    c.show([("w0", "input"), ("x0", "input"), ("w1", "input"), ("x1", "input"), ("w2", "input"),
            ("a", "w0 * x0"), ("b", "w1 * x1"), ("s", "a + b"), ("d", "s + w2"),
            ("e", "-d"), ("g", "exp(e)"), ("h", "g + 1"), ("f", "1 / h")])

    print("    the same neuron with sigmoid as one gate, df/dd = (1 - f) f:")
    n = Circuit(device)
    w = [n.input(f"w{i}", v) for i, v in enumerate((2.0, -3.0, -3.0))]
    xs = [n.input(f"x{i}", v) for i, v in enumerate((-1.0, -2.0))]
    dot = n.node("d", w[0] * xs[0] + w[1] * xs[1] + w[2])
    out_sigmoid = n.node("f", dot.sigmoid())
    n.backward(out_sigmoid)
    n.show([("d", "w0*x0 + w1*x1 + w2"), ("f", "sigmoid(d)")])
    f_value = out_sigmoid.item()
    print(f"    (1 - f) f = (1 - {f_value:.2f}) * {f_value:.2f} = {(1 - f_value) * f_value:.2f}")
    print("    dx = (" + ", ".join(f"{n.grads[f'x{i}']:.2f}" for i in range(2)) + ")   "
          "dw = (" + ", ".join(f"{n.grads[f'w{i}']:.2f}" for i in range(3)) + ")")


def main(argv: list[str] | None = None) -> None:
    p = _common.parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    device, out = _common.setup(args, SCRIPT)
    add_multiply(device, out)
    neuron(device, out)


if __name__ == "__main__":
    main()
