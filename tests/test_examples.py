"""The example scripts run end to end: each in --smoke mode on the CPU, the digits MLP to its
accuracy, and an interrupted-then-resumed digits run to the same weights as an uninterrupted one.

Each script runs in a subprocess from the repository root, as a user runs it, with
PYTHONPATH pointing at the source tree and its output folder in tmp_path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from checkpoint_v1 import save_v1

import tensorgrad as tg

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

pytest.importorskip("matplotlib", reason="the examples plot with matplotlib")
pytest.importorskip("sklearn", reason="the digits come from scikit-learn's bundled copy")


def start_example(script: str, out: Path | None, *args: str,
                  cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run examples/<script> on the CPU (into out, or its default folder under cwd when out is
    None) and return what it did."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    # The examples' matrices are small: BLAS threads would only fight over a 2-core CI runner.
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    where = [] if out is None else ["--out", str(out)]
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--device", "cpu", *where, *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def checkpoint_name() -> str:
    """The file name examples give their checkpoint (examples/_common.py says)."""
    text = (EXAMPLES / "_common.py").read_text(encoding="utf-8")
    return re.search(r'^CHECKPOINT = "([^"]+)"', text, re.M).group(1)


def run_example(script: str, out: Path | None, *args: str, cwd: Path = ROOT) -> str:
    """Run examples/<script> on the CPU; returns its stdout, failing with its output."""
    done = start_example(script, out, *args, cwd=cwd)
    assert done.returncode == 0, (f"{script} {' '.join(args)} exited with {done.returncode}\n"
                                  f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done.stdout


@pytest.mark.parametrize("script, images", [
    ("train_digits.py", ["curves.png"]),
    ("linear_regression_gd.py", ["regression.png"]),
    ("vanishing_gradients.py", ["learning_speed.png"]),
    ("spirals.py", ["spirals.png"]),
    ("cnn_digits.py", ["cnn_digits.png"]),
    ("tiny_gpt.py", ["loss.png", "attention.png"]),
])
def test_smoke(script: str, images: list[str], tmp_path: Path) -> None:
    run_example(script, tmp_path, "--smoke")
    for name in images:
        path = tmp_path / name
        assert path.is_file() and path.read_bytes().startswith(b"\x89PNG"), path


def test_circuit_prints_the_lecture_values(tmp_path: Path) -> None:
    out = run_example("circuit.py", tmp_path, "--smoke")
    assert re.search(r"q = x \+ y\s+3\.00\s+-4\.00", out)
    assert re.search(r"f = q \* z\s+-12\.00\s+1\.00", out)
    assert re.search(r"z = input\s+-4\.00\s+3\.00", out)
    # The sigmoid neuron: forward 0.73, dx = (0.39, -0.59), dw = (-0.20, -0.39, 0.20).
    assert re.search(r"f = 1 / h\s+0\.73\s+1\.00", out)
    assert "dx = (0.39, -0.59)   dw = (-0.20, -0.39, 0.20)" in out
    for name in ("circuit_add_mul", "circuit_neuron"):
        assert "digraph" in (tmp_path / f"{name}.dot").read_text()
        if shutil.which("dot"):
            assert (tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")


def test_progress_without_tqdm(monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed
    import _common

    bar = _common.progress(range(20), desc="steps")
    seen = []
    for i in bar:
        seen.append(i)
        bar.set_postfix(loss=f"{1 / (i + 1):.2f}", refresh=False)
    assert seen == list(range(20))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("steps: 20/20 [")
    assert lines[-1].endswith("loss=0.05")


def _assert_same(a: object, b: object, where: str = "checkpoint") -> None:
    """Two loaded checkpoints hold exactly the same values (arrays bitwise)."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, tg.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=where, strict=True)
    else:
        assert a == b, where


def test_train_digits_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    common = ["--epochs", "3", "--hidden", "32"]
    run_example("train_digits.py", tmp_path / "straight", *common)
    out = run_example("train_digits.py", tmp_path / "resumed", *common, "--stop-after", "1")
    assert "stopping after epoch 1" in out
    partial = tg.load(tmp_path / "resumed" / checkpoint_name())
    assert partial["epoch"] == 1
    out = run_example("train_digits.py", tmp_path / "resumed", *common, "--resume")
    assert "resumed from" in out and "1 epochs done" in out
    straight = tg.load(tmp_path / "straight" / checkpoint_name())
    resumed = tg.load(tmp_path / "resumed" / checkpoint_name())
    assert resumed["epoch"] == 3
    _assert_same(straight, resumed)
    # Resuming with other hyperparameters would silently mix two runs: refused.
    done = start_example("train_digits.py", tmp_path / "resumed", "--epochs", "3", "--hidden",
                         "16", "--resume")
    assert done.returncode != 0 and "use the same options" in done.stderr
    # Resuming a finished run says so instead of "training for epochs 4..3".
    out = run_example("train_digits.py", tmp_path / "resumed", *common, "--resume")
    assert "already complete: 3 of 3 epochs done" in out and "training for" not in out


def test_train_digits_resumes_once_from_a_checkpoint_of_the_previous_format(
        tmp_path: Path) -> None:
    """Runs that checkpointed before the safetensors format continue where they stopped."""
    common = ["--epochs", "2", "--hidden", "16"]
    run_example("train_digits.py", tmp_path / "straight", *common)
    run_example("train_digits.py", tmp_path / "old", *common, "--stop-after", "1")
    path = tmp_path / "old" / checkpoint_name()
    save_v1(tg.load(path), tmp_path / "old" / "checkpoint.npz")
    path.unlink()
    out = run_example("train_digits.py", tmp_path / "old", *common, "--resume")
    assert "(the previous checkpoint format) to" in out and "1 epochs done" in out
    _assert_same(tg.load(tmp_path / "straight" / checkpoint_name()), tg.load(path))


def test_a_new_run_refuses_to_replace_an_earlier_runs_checkpoint(tmp_path: Path) -> None:
    args = ["--epochs", "1", "--hidden", "8"]
    run_example("train_digits.py", tmp_path, *args)
    path = tmp_path / checkpoint_name()
    before = path.read_bytes()
    done = start_example("train_digits.py", tmp_path, *args, "--smoke")
    assert done.returncode != 0
    assert re.search(r"holds the checkpoint of an earlier run.*--resume.*--out DIR.*--overwrite",
                     done.stderr), done.stderr
    assert path.read_bytes() == before
    out = run_example("train_digits.py", tmp_path, "--epochs", "2", "--hidden", "8",
                      "--overwrite")
    assert "training for epochs 1..2" in out and tg.load(path)["epoch"] == 2


def test_smoke_runs_write_to_their_own_folder(tmp_path: Path) -> None:
    out = run_example("circuit.py", None, "--smoke", cwd=tmp_path)
    assert f"output folder: {Path('runs') / 'circuit-smoke'}" in out
    assert (tmp_path / "runs" / "circuit-smoke" / "circuit_neuron.dot").is_file()
    assert not (tmp_path / "runs" / "circuit").exists()
    # A smoke run replaces an earlier smoke run's checkpoint in that folder without asking.
    for _ in range(2):
        run_example("train_digits.py", None, "--smoke", "--hidden", "8", cwd=tmp_path)
    assert (tmp_path / "runs" / "train_digits-smoke" / checkpoint_name()).is_file()
    assert not (tmp_path / "runs" / "train_digits").exists()


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("[a-z]*.py")))
def test_help_explains_every_option(script: str) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    # argparse puts an option's help after it on its line or indented on the next line.
    lines = done.stdout.split("options:", 1)[1].splitlines()
    bare = [line.strip() for line, after in zip(lines, lines[1:] + [""])
            if line.startswith("  -") and not re.search(r"\S\s{2,}\S", line.strip())
            and not re.match(r"\s{8,}\S", after)]
    assert not bare, f"options without help in {script}: {bare}"


def test_progress_is_plain_lines_in_order_when_not_on_a_terminal(tmp_path: Path) -> None:
    done = start_example("linear_regression_gd.py", tmp_path, "--smoke")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no tqdm bar redrawn on stderr
    lines = done.stdout.splitlines()
    snapshot = next(i for i, line in enumerate(lines) if line.startswith("  epoch   10:"))
    assert lines[snapshot + 1].startswith("gradient descent: 11/12 [")


@pytest.mark.slow
def test_train_digits_reaches_97_percent(tmp_path: Path) -> None:
    out = run_example("train_digits.py", tmp_path)
    accuracy = float(re.search(r"final test accuracy: ([\d.]+)%", out).group(1))
    assert accuracy >= 97.0, out


def test_tiny_gpt_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    common = ["--steps", "12", "--eval-every", "4", "--d-model", "16", "--heads", "2",
              "--test-size", "20"]
    run_example("tiny_gpt.py", tmp_path / "straight", *common)
    out = run_example("tiny_gpt.py", tmp_path / "resumed", *common, "--stop-after", "4")
    assert "stopping after step 4" in out
    out = run_example("tiny_gpt.py", tmp_path / "resumed", *common, "--resume")
    assert "resumed from" in out and "4 steps done" in out
    straight = tg.load(tmp_path / "straight" / checkpoint_name())
    resumed = tg.load(tmp_path / "resumed" / checkpoint_name())
    assert resumed["step"] == 12
    _assert_same(straight, resumed)


@pytest.mark.slow
@pytest.mark.host_only
def test_tiny_gpt_sorts_99_percent_of_held_out_sequences(tmp_path: Path) -> None:
    out = run_example("tiny_gpt.py", tmp_path)
    exact = float(re.search(r"held-out exact match: ([\d.]+)%", out).group(1))
    assert exact >= 99.0, out
