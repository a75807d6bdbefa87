"""pytest configuration of the benchmark suites: the run's environment in the header, and a
scratch kernel cache so that CUDA compilation never writes to a read-only HOME."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("CUPY_CACHE_DIR", os.path.join(tempfile.gettempdir(), "tg-cupy-cache"))


def pytest_report_header() -> list[str]:
    from . import config
    from .impls import environment

    lines = [f"benchmark mode: {config.mode()}"]
    lines += [f"{key}: {value}" for key, value in environment().items()]
    return lines
