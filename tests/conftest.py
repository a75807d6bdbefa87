"""Shared fixtures: the device parametrization (CUDA skipped with the reason where unusable)
a seeded random generator, and tensorgrad's own generators seeded before every test."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from collections.abc import Iterator

import numpy as np
import pytest

# Compiled CUDA kernels go to a scratch folder, never to a possibly read-only HOME.
os.environ.setdefault("CUPY_CACHE_DIR", os.path.join(tempfile.gettempdir(), "tg-cupy-cache"))

import tensorgrad as tg  # noqa: E402


@functools.cache
def cuda_unusable_reason() -> str | None:
    try:
        tg.backend.get_backend(tg.Device("cuda"))
    except tg.DeviceUnavailableError as err:
        return str(err)
    return None


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request: pytest.FixtureRequest) -> str:
    if request.param == "cuda" and (reason := cuda_unusable_reason()):
        pytest.skip(f"CUDA not usable here: {reason}")
    return request.param


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Each test starts from the same random state, so none passes or fails by the order the
    suite ran in (a dead ReLU layer or an all-dropped batch is possible at some seeds)."""
    tg.manual_seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True, scope="module")
def _torch_on_one_thread() -> Iterator[None]:
    """PyTorch, the reference in many tests, on one thread: its default thread pool spins
    against the engine under test on a small CI machine (20 tiny optimizer steps took a
    second). Tests that never import torch pay nothing."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _emulated() -> bool:
    """Whether the cupy this process imports is the emulator of tests/cuda_emulator."""
    try:
        import cupy
    except ImportError:
        return False
    return cupy.__version__.endswith("+emulator")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the emulated pass, skip the tests marked host_only: they run on the CPU in
    subprocesses of their own, so their work is the first pass's again, minutes of it."""
    marked = [item for item in items if item.get_closest_marker("host_only")]
    if marked and _emulated():
        skip = pytest.mark.skip(reason="host-only work, identical in the CPU pass")
        for item in marked:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Why tests were skipped: one line per reason with its count (pytest's -rs prints a line
    per test location, hundreds of them for the CUDA cases on a machine without a GPU)."""
    counts: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        counts[reason] = counts.get(reason, 0) + 1
    if counts:
        terminalreporter.section("skipped tests, by reason")
        for reason, n in sorted(counts.items(), key=lambda item: -item[1]):
            terminalreporter.line(f"{n:5d}  {reason}")
