"""tg.viz.draw_graph: the recorded graph behind a tensor as Graphviz DOT, rendered when possible.

The walk over grad_fn nodes is iterative (a 50k-op chain draws without RecursionError). Data
flows top to bottom: leaf tensors that require grad (blue), the ops that consumed them (grey,
named as their grad_fn, e.g. MulBackward, with the output shape) and the tensor drawn (green).
Inputs that need no gradient are not recorded on the tape, so they do not appear. Rendering
needs Graphviz's `dot` program; without it draw_graph says so on stderr and returns the source.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._dtype import DType, from_numpy_dtype
from ._tensor import Tensor

_FORMATS = ("svg", "png", "pdf", "dot")


@dataclass
class Graph:
    """What draw_graph returns: `source` (DOT text, always), `rendered` (the bytes of the
    SVG/PNG/PDF, or None), `path` (the file written, or None) and `note` (why nothing was
    rendered, or None)."""

    source: str
    format: str
    rendered: bytes | None = None
    path: str | None = None
    note: str | None = None

    def __str__(self) -> str:
        return self.source

    def _repr_svg_(self) -> str | None:
        """Jupyter shows a rendered SVG inline."""
        if self.format == "svg" and self.rendered is not None:
            return self.rendered.decode("utf-8")
        return None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _describe(shape: Any, dtype: Any) -> str:
    # The tape records NumPy dtypes; their .name is slow enough to matter on a 50k-op graph.
    name = dtype.name if isinstance(dtype, DType) else from_numpy_dtype(dtype).name
    return f"{tuple(shape)} {name}"


def to_dot(t: Tensor, names: Mapping[str, Tensor] | None = None) -> str:
    """The DOT source of the graph that produced t (see draw_graph)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"draw_graph expects a Tensor, got {type(t).__name__}")
    leaf_names = {id(v): k for k, v in (names or {}).items()}
    ids: dict[int, str] = {}
    keep: list[Any] = []  # holds every node seen, so no id() is reused during the walk
    lines = ["digraph tensorgrad {", '  node [fontname="Helvetica" fontsize=10];',
             '  edge [fontname="Helvetica" fontsize=9];']

    def node_id(obj: Any) -> tuple[str, bool]:
        key = id(obj)
        if key in ids:
            return ids[key], False
        ids[key] = f"n{len(ids)}"
        keep.append(obj)
        return ids[key], True

    def leaf_line(name: str, leaf: Tensor) -> str:
        title = leaf_names.get(id(leaf), "leaf")
        label = f"{title}\n{_describe(leaf.shape, leaf.dtype)}\nrequires_grad=True"
        return f"  {name} [label={_quote(label)} shape=box style=filled fillcolor=lightblue];"

    out_label = (f"output\n{_describe(t.shape, t.dtype)}\n"
                 f"requires_grad={t.requires_grad}")
    lines.append(f"  out [label={_quote(out_label)} shape=box style=filled "
                 "fillcolor=darkolivegreen1];")
    if t.grad_fn is None:
        if t.requires_grad:
            lines[-1] = leaf_line("out", t)
        lines.append("}")
        return "\n".join(lines) + "\n"

    root, _ = node_id(t.grad_fn)
    lines.append(f"  {root} -> out;")
    out_shapes = {id(t.grad_fn): [(t._out_idx, t.shape, t.dtype)]}
    stack = [t.grad_fn]
    ops = []
    while stack:
        node = stack.pop()
        ops.append(node)
        name = ids[id(node)]
        for i, parent in enumerate(node.parents):
            if parent is None:
                continue
            parent_name, new = node_id(parent)
            shape, dtype = node.in_meta[i]
            if isinstance(parent, Tensor):
                if new:
                    lines.append(leaf_line(parent_name, parent))
                lines.append(f"  {parent_name} -> {name};")
                continue
            if new:
                stack.append(parent)
            index = node.parent_idx[i]
            out_shapes.setdefault(id(parent), []).append((index, shape, dtype))
            multi = parent.out_meta is not None
            label = f" [label={_quote(f'out {index}')}]" if multi else ""
            lines.append(f"  {parent_name} -> {name}{label};")
    for node in ops:
        label = node.name()
        if node.out_meta is not None:
            label += "".join(f"\n{k}: {_describe(s, d)}" for k, (s, d) in enumerate(node.out_meta))
        else:
            _, shape, dtype = out_shapes[id(node)][0]
            label += f"\n{_describe(shape, dtype)}"
        lines.append(f"  {ids[id(node)]} [label={_quote(label)} shape=box style=\"rounded,filled\" "
                     "fillcolor=lightgrey];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_graph(t: Tensor, format: str = "svg", path: str | os.PathLike[str] | None = None,
               names: Mapping[str, Tensor] | None = None) -> Graph:
    """Draw the recorded graph behind t, as torchviz's make_dot.

    Args:
        format: "svg", "png" or "pdf" to render with Graphviz's `dot`; "dot" for the source only.
        path: where to write the rendering; when `dot` is missing, the DOT source is written
            next to it with the suffix ".dot" instead.
        names: labels for leaf tensors, e.g. dict(model.named_parameters()).
    """
    if format not in _FORMATS:
        raise ValueError(f"draw_graph: format must be one of {', '.join(_FORMATS)}, "
                         f"got {format!r}")
    graph = Graph(source=to_dot(t, names), format=format)
    if format == "dot":
        if path is not None:
            graph.path = _write(path, graph.source.encode("utf-8"))
        return graph
    dot = shutil.which("dot")
    if dot is None:
        graph.note = ("Graphviz's `dot` program is not on PATH, so the graph was not rendered "
                      "(install it: apt-get install graphviz, brew install graphviz or "
                      "conda install graphviz); returning the DOT source")
    else:
        graph.rendered, graph.note = _render(dot, graph.source, format)
    if graph.rendered is None:
        print(f"tg.viz.draw_graph: {graph.note}", file=sys.stderr)
        if path is not None:
            graph.path = _write(os.path.splitext(os.fspath(path))[0] + ".dot",
                                graph.source.encode("utf-8"))
    elif path is not None:
        graph.path = _write(path, graph.rendered)
    return graph


def _render(dot: str, source: str, format: str) -> tuple[bytes | None, str | None]:
    """Run dot through the graphviz package when it is installed, else directly."""
    try:
        import graphviz
    except ImportError:
        graphviz = None
    try:
        if graphviz is not None:
            return graphviz.Source(source).pipe(format=format), None
        done = subprocess.run([dot, f"-T{format}"], input=source.encode("utf-8"),
                              capture_output=True, check=True)
        return done.stdout, None
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        # A failing dot (a broken install) must not lose the source the caller asked for; the
        # graphviz package raises RuntimeError subclasses and CalledProcessError.
        return None, f"Graphviz's dot failed ({type(err).__name__}: {err}); returning the source"


def _write(path: str | os.PathLike[str], content: bytes) -> str:
    path = os.fspath(path)
    with open(path, "wb") as f:
        f.write(content)
    return path


__all__ = ["Graph", "draw_graph", "to_dot"]
