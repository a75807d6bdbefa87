"""Sampled mutation testing: does the test suite notice a small change to the code?

Each mutant is one small change to one source file (an operator swapped, a constant changed, a
statement deleted, a returned value replaced by None). The script copies the tree to a temporary
folder (the working tree is never touched), checks that the file's tests pass there unchanged,
then writes each sampled mutant in turn into the copy and runs the same tests, stopping at the
first failure (-x). A mutant that fails a test (or runs past the timeout) is killed; one that
passes every test survives and is listed with its line and change.

    .venv/bin/python scripts/mutate.py core                      # the six core files
    .venv/bin/python scripts/mutate.py tensorgrad/optim/adam.py -n 80 --seed 1
    .venv/bin/python scripts/mutate.py tensorgrad/ops/loss.py --tests "tests/nn -k loss"

Not part of CI: a run takes minutes per file. Mutants are sampled with a seed, so a run is
repeatable for the same source.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import random
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy  # noqa: F401  (imported once here, before the forks; see run_tests)
import pytest

try:
    import torch  # noqa: F401
except ImportError:
    pass

ROOT = Path(__file__).resolve().parent.parent

# file -> the tests that exercise it, narrow enough that one mutant takes seconds; the most
# direct tests come first, so that -x stops early on a killed mutant.
TESTS: dict[str, list[str]] = {
    "tensorgrad/autograd/_engine.py": ["tests/test_engine.py", "tests/test_errors.py"],
    "tensorgrad/ops/reduction.py": [
        "tests/test_ops_index.py", "tests/test_ops_degenerate.py", "tests/test_errors.py",
        "tests/test_engine.py", "tests/test_ops_torch.py", "tests/test_ops_grad.py",
        "-k", "sum or mean or max or min or var or std or prod or logsumexp or softmax or arg"
              " or reduc",
    ],
    "tensorgrad/ops/loss.py": [
        "tests/nn/test_nn_losses.py", "tests/test_ops_degenerate.py", "tests/test_ops_torch.py",
        "tests/test_ops_grad.py", "-k", "loss or entropy",
    ],
    "tensorgrad/nn/functional.py": [
        "tests/nn/test_nn_losses.py", "tests/test_ops_degenerate.py", "tests/test_ops_torch.py",
        "tests/test_ops_grad.py", "tests/nn/test_nn_layers.py",
    ],
    "tensorgrad/ops/activation.py": [
        "tests/test_ops_degenerate.py", "tests/test_ops_torch.py", "tests/test_engine.py",
        "tests/test_errors.py", "tests/test_tensor.py", "tests/test_kernels_cpu.py",
        "tests/test_ops_grad.py",
        "-k", "relu or elu or gelu or silu or sigmoid or tanh or softplus or softmax"
              " or activation or fused or linear_ or node or name or non_tensor",
    ],
    "tensorgrad/optim/adam.py": ["tests/optim/test_optimizers.py", "-k", "adam or Adam or bad"],
    "tensorgrad/backend/_cpu_kernels.py": [
        "tests/test_kernels_cpu.py", "tests/test_softmax_kernels.py", "tests/test_engine.py",
        "tests/test_ops_degenerate.py", "tests/test_ops_torch.py",
        "tests/optim/test_optimizers.py", "tests/nn/test_nn_losses.py",
    ],
}
# A file may be narrowed to some of its top-level functions or classes: FILE:NAME,NAME.
CORE = ["tensorgrad/autograd/_engine.py", "tensorgrad/ops/reduction.py", "tensorgrad/ops/loss.py",
        "tensorgrad/nn/functional.py:_check_reduction,_reduce,mse_loss,_class_layout,"
        "cross_entropy,nll_loss,_check_classes,_check_same_shape,binary_cross_entropy,"
        "binary_cross_entropy_with_logits",
        "tensorgrad/ops/activation.py", "tensorgrad/optim/adam.py",
        "tensorgrad/backend/_cpu_kernels.py"]

_BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
               ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
               ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.MatMult: ast.Mult}
_CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
             ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
             ast.In: ast.NotIn, ast.NotIn: ast.In}


@dataclass(frozen=True)
class Mutant:
    index: int        # position of the node in ast.walk order, so a mutant can be rebuilt
    kind: str
    line: int
    before: str
    after: str


_NO_MUTATION = object()


def _new_constant(value: object) -> object:
    """The changed constant; strings, None and the like are left alone."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 if value else 1.0
    return _NO_MUTATION


def _unmutated_ids(tree: ast.Module) -> set[int]:
    """Docstrings, `__all__` and annotations: text that no test should be expected to notice."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                and isinstance(first.value.value, str):
            skip.update(id(n) for n in ast.walk(first))
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            skip.update(id(n) for n in ast.walk(node))
        for ann in (getattr(node, "annotation", None), getattr(node, "returns", None)):
            if ann is not None:
                skip.update(id(n) for n in ast.walk(ann))
    return skip


def _mutate(node: ast.AST, kind: str) -> ast.AST:
    """A mutated copy of node (a statement deletion gives `pass`)."""
    new = copy.deepcopy(node)
    if kind in ("binop", "augassign"):
        new.op = _BINOP_SWAP[type(node.op)]()
    elif kind == "compare":
        new.ops = [_CMP_SWAP[type(node.ops[0])]()] + new.ops[1:]
    elif kind == "boolop":
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind in ("not", "neg"):
        return new.operand
    elif kind == "constant":
        new.value = _new_constant(node.value)
    elif kind == "return_none":
        new.value = ast.Constant(None)
    elif kind == "delete":
        return ast.Pass()
    return new


def _kinds(node: ast.AST, skip: set[int]) -> list[str]:
    if id(node) in skip:
        return []
    kinds = []
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
        kinds.append("binop")
    elif isinstance(node, ast.AugAssign) and type(node.op) in _BINOP_SWAP:
        kinds.append("augassign")
    elif isinstance(node, ast.Compare) and type(node.ops[0]) in _CMP_SWAP:
        kinds.append("compare")
    elif isinstance(node, ast.BoolOp):
        kinds.append("boolop")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        kinds.append("not")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
            and not isinstance(node.operand, ast.Constant):
        kinds.append("neg")
    elif isinstance(node, ast.Constant) and _new_constant(node.value) is not _NO_MUTATION:
        kinds.append("constant")
    if isinstance(node, ast.Return) and node.value is not None \
            and not (isinstance(node.value, ast.Constant) and node.value.value is None):
        kinds.append("return_none")
    if isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign, ast.Return, ast.Raise, ast.If,
                         ast.For, ast.With, ast.Try, ast.Delete)):
        kinds.append("delete")
    return kinds


def _in_type_checking(tree: ast.Module) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            skip.update(id(n) for n in ast.walk(node))
    return skip


def _outside(tree: ast.Module, names: set[str]) -> set[int]:
    """Nodes outside the top-level definitions named."""
    inside = {id(n) for top in tree.body if getattr(top, "name", None) in names
              for n in ast.walk(top)}
    return {id(n) for n in ast.walk(tree)} - inside


def enumerate_mutants(source: str, names: set[str] | None = None) -> list[Mutant]:
    tree = ast.parse(source)
    skip = _unmutated_ids(tree) | _in_type_checking(tree)
    if names:
        skip |= _outside(tree, names)
    mutants = []
    for index, node in enumerate(ast.walk(tree)):
        for kind in _kinds(node, skip):
            after = _mutate(node, kind)
            before_text = ast.unparse(node).split("\n")[0]
            after_text = ast.unparse(after).split("\n")[0]
            if kind == "delete":
                after_text = "(deleted)"
            mutants.append(Mutant(index, kind, node.lineno, before_text[:80], after_text[:80]))
    return mutants


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, kind: str) -> None:
        self.target, self.kind = target, kind

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return _mutate(node, self.kind)
        return self.generic_visit(node)


def mutant_source(source: str, mutant: Mutant) -> str:
    tree = ast.parse(source)
    target = list(ast.walk(tree))[mutant.index]
    tree = ast.fix_missing_locations(_Replace(target, mutant.kind).visit(tree))
    return ast.unparse(tree)


def copy_tree(dest: Path) -> None:
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "runs", "results", ".ruff_cache",
        ".pytest_cache", "docs"), dirs_exist_ok=True)


def run_tests(workdir: Path, tests: list[str], timeout: float) -> tuple[str, str]:
    """('pass' | 'fail' | 'timeout', the end of pytest's output).

    pytest runs in a forked child of this process, which has imported pytest, NumPy and torch
    but never tensorgrad: each mutant pays for importing tensorgrad and the tests, not for
    starting Python and importing torch (seconds each on a busy machine)."""
    log = workdir / ".mutate-pytest.log"
    args = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "-m", "not cuda", *tests]
    pid = os.fork()
    if pid == 0:  # the child: run pytest on the copy and exit with its status
        code = 70
        try:
            os.chdir(workdir)
            sys.path.insert(0, str(workdir))
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = int(pytest.main(args))
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", ""
        time.sleep(0.05)
    code = os.waitstatus_to_exitcode(status)
    tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-5:])
    if code == 0:
        return "pass", tail
    if code in (1, 2, 3):   # a test failed, or collecting/importing the mutant did
        return "fail", tail
    raise RuntimeError(f"pytest exited with {code}:\n{tail}")


def _drop_bytecode(path: Path) -> None:
    # A mutant of the same size written in the same second as the last could otherwise be
    # served from the stale .pyc.
    for pyc in path.parent.glob(f"__pycache__/{path.stem}.*.pyc"):
        pyc.unlink()


def mutate_file(rel: str, names: set[str] | None, tests: list[str], n: int, seed: int,
                timeout: float, workdir: Path, only: set[int] | None = None
                ) -> tuple[int, int, list[Mutant]]:
    """(killed, run, survivors) for n sampled mutants of one file (of the definitions named)."""
    path = workdir / rel
    source = path.read_text()
    started = time.monotonic()
    status, tail = run_tests(workdir, tests, timeout * 10)
    if status != "pass":
        raise SystemExit(f"{rel}: the tests fail before any mutation:\n{tail}")
    baseline = time.monotonic() - started
    mutants = enumerate_mutants(source, names)
    sample = random.Random(seed).sample(mutants, min(n, len(mutants)))
    if only:
        sample = [m for m in sample if m.index in only]
    print(f"{rel}: {len(mutants)} mutants, {len(sample)} sampled; tests pass unchanged in "
          f"{baseline:.1f} s", flush=True)
    killed, survivors = 0, []
    try:
        for i, m in enumerate(sample, 1):
            path.write_text(mutant_source(source, m))
            _drop_bytecode(path)
            status, _ = run_tests(workdir, tests, max(timeout, 3 * baseline))
            if status == "pass":
                survivors.append(m)
            else:
                killed += 1
            print(f"  [{i}/{len(sample)}] {status:7} #{m.index} {rel}:{m.line} {m.kind}: "
                  f"{m.before} -> {m.after}", flush=True)
    finally:
        path.write_text(source)
        _drop_bytecode(path)
    return killed, len(sample), survivors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="source files relative to the repository, or "
                        "'core' for " + ", ".join(CORE))
    parser.add_argument("-n", type=int, default=50, help="mutants sampled per file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds before a mutant's test run counts as killed (at least 3x "
                             "the unmutated run)")
    parser.add_argument("--tests", type=shlex.split, help="pytest arguments instead of the "
                        "file's entry in the table, as one string: 'tests/test_x.py -k y'")
    parser.add_argument("--only", type=lambda s: {int(i) for i in s.split(",")},
                        help="run only these mutants of the sample (the #numbers a run prints, "
                             "e.g. its survivors after new tests); one file at a time")
    args = parser.parse_args()
    files = [f for name in args.files for f in (CORE if name == "core" else [name])]
    for spec in files:
        rel = spec.partition(":")[0]
        if not (ROOT / rel).is_file():
            parser.error(f"no such file: {rel}")
        if args.tests is None and rel not in TESTS:
            parser.error(f"no tests listed for {rel} in scripts/mutate.py; pass --tests")
    # The forked runs share the copy's bytecode (only the mutated file's is dropped each time),
    # even where the environment turns writing it off.
    sys.dont_write_bytecode = False
    # A terminated run still removes its copy of the tree.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    results = []
    with tempfile.TemporaryDirectory(prefix="tg-mutate-") as tmp:
        workdir = Path(tmp)
        copy_tree(workdir)
        for spec in files:
            rel, _, names = spec.partition(":")
            tests = args.tests or TESTS[rel]
            results.append((rel, *mutate_file(rel, set(names.split(",")) if names else None,
                                              tests, args.n, args.seed, args.timeout, workdir,
                                              args.only)))
    print("\nscore (killed / sampled) and survivors:")
    for rel, killed, run, survivors in results:
        print(f"{rel}: {killed}/{run} = {100 * killed / max(run, 1):.0f}%")
        for m in survivors:
            print(f"    #{m.index} {rel}:{m.line} {m.kind}: {m.before} -> {m.after}")


if __name__ == "__main__":
    main()
