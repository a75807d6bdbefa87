"""tg.viz.draw_graph: DOT source of the recorded graph, rendering with and without `dot`."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import tensorgrad as tg
from tensorgrad import viz
from tensorgrad.autograd._op import Op

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz's `dot` is not installed (apt-get install "
                                      "graphviz): rendering not tested")


def _nodes(source: str) -> dict[str, str]:
    """node id -> label, from the DOT text."""
    return {m[1]: m[2].replace("\\n", "\n")
            for m in re.finditer(r'^\s+(\w+) \[label="((?:[^"\\]|\\.)*)"', source, re.MULTILINE)}


def _edges(source: str) -> list[tuple[str, str]]:
    return re.findall(r"^\s+(\w+) -> (\w+)", source, re.MULTILINE)


def test_circuit_graph_has_ops_shapes_and_leaves(device):
    """The lecture's f = (x + y) * z: two ops, three leaves, data flowing to the output."""
    x = tg.tensor([-2.0, 1.0], device=device, requires_grad=True)
    y = tg.tensor([5.0, 2.0], device=device, requires_grad=True)
    z = tg.tensor(-4.0, device=device, requires_grad=True)
    f = (x + y) * z
    source = viz.draw_graph(f, format="dot", names={"x": x, "y": y, "z": z}).source
    labels = _nodes(source)
    by_text = {label.split("\n")[0]: node for node, label in labels.items()}
    assert set(by_text) == {"output", "AddBackward", "MulBackward", "x", "y", "z"}
    assert labels[by_text["x"]] == "x\n(2,) float32\nrequires_grad=True"
    assert labels[by_text["z"]] == "z\n() float32\nrequires_grad=True"
    assert labels[by_text["AddBackward"]] == "AddBackward\n(2,) float32"
    assert labels[by_text["MulBackward"]] == "MulBackward\n(2,) float32"
    edges = set(_edges(source))
    assert edges == {(by_text["x"], by_text["AddBackward"]),
                     (by_text["y"], by_text["AddBackward"]),
                     (by_text["AddBackward"], by_text["MulBackward"]),
                     (by_text["z"], by_text["MulBackward"]),
                     (by_text["MulBackward"], by_text["output"])}
    assert source.startswith("digraph") and source.rstrip().endswith("}")


def test_constants_are_left_out_and_reused_nodes_appear_once():
    w = tg.ones(3, requires_grad=True)
    c = tg.ones(3)  # needs no grad: not on the tape
    h = w * c
    out = (h + h).sum()
    source = viz.draw_graph(out, format="dot").source
    labels = list(_nodes(source).values())
    assert sum(label.startswith("leaf") for label in labels) == 1
    assert sum(label.startswith("MulBackward") for label in labels) == 1
    mul = next(n for n, label in _nodes(source).items() if label.startswith("MulBackward"))
    add = next(n for n, label in _nodes(source).items() if label.startswith("AddBackward"))
    assert _edges(source).count((mul, add)) == 2  # h feeds both operands of h + h
    assert "SumBackward\n() float32" in labels


def test_leaf_and_non_grad_tensor_draw_as_a_single_node():
    leaf = tg.zeros(2, 3, dtype=tg.float64, requires_grad=True)
    assert list(_nodes(viz.to_dot(leaf)).values()) == ["leaf\n(2, 3) float64\nrequires_grad=True"]
    plain = tg.zeros(4, dtype=tg.int64)
    assert list(_nodes(viz.to_dot(plain)).values()) == ["output\n(4,) int64\nrequires_grad=False"]


class _Twice(Op):
    """(2x, 3x): an op with two outputs."""

    @staticmethod
    def forward(ctx, x):
        return x * 2, x * 3

    @staticmethod
    def backward(ctx, g2, g3):
        return g2 * 2 + g3 * 3


def test_multi_output_ops_label_each_output():
    x = tg.ones(4, 2, requires_grad=True)
    double, triple = _Twice.apply(x)
    out = (triple * 2.0 + double).sum()
    out.backward()
    assert x.grad.tolist() == [[8.0, 8.0]] * 4
    source = viz.to_dot(out)
    labels = _nodes(source)
    (node,) = [n for n, v in labels.items() if v.startswith("_TwiceBackward")]
    assert labels[node] == "_TwiceBackward\n0: (4, 2) float32\n1: (4, 2) float32"
    assert f'{node} -> ' in source and '[label="out 1"]' in source and '[label="out 0"]' in source


def test_quotes_in_names_are_escaped():
    w = tg.ones(1, requires_grad=True)
    source = viz.to_dot(w * 2, names={'say "hi" \\o/': w})
    assert r'say \"hi\" \\o/' in source


def test_fifty_thousand_op_chain_draws_without_recursion_error():
    x = tg.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(50_000):
        y = y * 1.0
    source = viz.draw_graph(y, format="dot").source
    assert source.count("MulBackward") == 50_000
    assert len(_edges(source)) == 50_001


def test_without_dot_it_says_so_and_returns_the_source(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    x = tg.ones(2, requires_grad=True)
    graph = viz.draw_graph(x * 3, format="svg", path=tmp_path / "g.svg")
    assert graph.rendered is None and "MulBackward" in graph.source
    assert "`dot` program is not on PATH" in graph.note and "apt-get install graphviz" in graph.note
    assert "`dot` program is not on PATH" in capsys.readouterr().err
    assert graph.path == str(tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text() == graph.source
    assert not (tmp_path / "g.svg").exists()


@needs_dot
@pytest.mark.parametrize("fmt, magic", [("svg", b"<svg"), ("png", b"\x89PNG")])
def test_renders_with_dot(tmp_path, fmt, magic, capsys):
    x = tg.ones(2, 2, requires_grad=True)
    graph = viz.draw_graph(tg.tanh(x @ x).sum(), format=fmt, path=tmp_path / f"g.{fmt}")
    assert graph.note is None and magic in graph.rendered[:500]
    assert (tmp_path / f"g.{fmt}").read_bytes() == graph.rendered
    if fmt == "svg":
        assert "TanhBackward" in graph._repr_svg_()
    assert capsys.readouterr().err == ""


@needs_dot
def test_renders_through_subprocess_without_the_graphviz_package(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_graphviz(name, *args, **kwargs):
        if name == "graphviz":
            raise ImportError("No module named 'graphviz'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_graphviz)
    graph = viz.draw_graph(tg.ones(1, requires_grad=True) * 2, format="svg")
    assert graph.note is None and b"MulBackward" in graph.rendered


def test_a_failing_dot_is_reported_and_the_source_returned(monkeypatch, capsys):
    graphviz = pytest.importorskip("graphviz")
    monkeypatch.setattr(viz.shutil, "which", lambda name: "/usr/bin/dot")

    def broken(self, format):
        raise subprocess.CalledProcessError(1, ["dot", f"-T{format}"])

    monkeypatch.setattr(graphviz.Source, "pipe", broken)
    graph = viz.draw_graph(tg.ones(1, requires_grad=True) * 2, format="png")
    assert graph.rendered is None and "MulBackward" in graph.source
    assert graph.note.startswith("Graphviz's dot failed (CalledProcessError")
    assert "dot failed" in capsys.readouterr().err


def test_bad_arguments():
    with pytest.raises(ValueError, match="format must be one of svg, png, pdf, dot, got 'jpg'"):
        viz.draw_graph(tg.ones(1), format="jpg")
    with pytest.raises(TypeError, match="expects a Tensor, got list"):
        viz.draw_graph([1, 2])
