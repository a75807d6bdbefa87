"""pytest configuration of the benchmark suites: the run's environment in the header, a
scratch kernel cache so that CUDA compilation never writes to a read-only HOME, and the skip
reasons summed up at the end."""

from __future__ import annotations

import os
import tempfile
from typing import Any

os.environ.setdefault("CUPY_CACHE_DIR", os.path.join(tempfile.gettempdir(), "tg-cupy-cache"))


def pytest_report_header() -> list[str]:
    from . import config
    from .impls import environment

    lines = [f"benchmark mode: {config.mode()}"]
    lines += [f"{key}: {value}" for key, value in environment().items()]
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Why cases were skipped, one line per reason with the implementations it skipped and
    how many cases (pytest's -rs repeats the CuPy install hint once per test location).
    Printed by the first pass only."""
    if os.environ.get("TG_BENCH_PASS", "1") != "1":
        return
    from .impls import ALL

    names = {impl.name for impl in ALL}
    skipped: dict[str, dict[str, int]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        text = text.removeprefix("Skipped: ")
        impl, _, reason = text.partition(": ")
        if impl not in names:  # a skip of impl_param names its implementation first
            impl, reason = "", text
        counts = skipped.setdefault(reason, {})
        counts[impl] = counts.get(impl, 0) + 1
    if skipped:
        terminalreporter.section("skipped cases, by reason")
        for reason, counts in skipped.items():
            impls = ", ".join(i for i in sorted(counts) if i)
            terminalreporter.line(f"{sum(counts.values()):5d}  {reason}"
                                  + (f"  ({impls})" if impls else ""))
