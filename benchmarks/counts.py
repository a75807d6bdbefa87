"""Launches and bytes per MLP training step on the emulated CUDA of tests/cuda_emulator, for
tensorgrad and the hand-written CuPy step: hardware-independent figures of GPU efficiency
(kernel launches, GEMMs among them, and bytes read + written by all of them), never timings.

The emulator is a test-only CuPy that must not be imported unless it is first on the path, so
`emulated_counts` runs `python -m benchmarks.counts OUT.json SIZE...` in a process of its own
with tests/cuda_emulator first on PYTHONPATH. Each step is called once (kernels compile, lazy
state is made) and the second call is counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EMULATOR = ROOT / "tests" / "cuda_emulator"
FAMILIES = ("tensorgrad", "hand")


def count_step(step: Callable[[], None]) -> dict[str, Any]:
    """What the second call of step launches on the emulated device."""
    import cupy

    step()
    with cupy._emulator.counting() as counts:
        step()
    return {"launches": counts.launches, "gemms": counts.gemms, "bytes": counts.bytes,
            "host_copies": counts.host_copies, "by_name": dict(sorted(counts.by_name.items()))}


def count_mlp_steps(sizes: list[str]) -> list[dict[str, Any]]:
    """One row per (size, family): the counts of one SGD training step of the MLP."""
    from .bench_training import _mlp_setup
    from .impls import Impl

    rows = []
    for size in sizes:
        for family in FAMILIES:
            impl = Impl(family, "cuda")
            reason = impl.unavailable()
            if reason is not None:
                raise RuntimeError(f"{impl.name} does not run on the emulated CuPy: {reason}")
            step, _, _ = _mlp_setup(impl, size)
            rows.append({"case": "mlp step", "size": size, "impl": impl.name,
                         **count_step(step)})
            row = rows[-1]
            print(f"  counts     mlp step {size:>9} {impl.name:<16} {row['launches']:4d} "
                  f"launches ({row['gemms']} GEMMs), {row['bytes'] / 2**20:8.2f} MiB",
                  flush=True)
    return rows


def emulated_counts(path: Path, sizes: tuple[str, ...]) -> int:
    """Write the counts of the MLP sizes to path (JSON) from a process running on the emulated
    CuPy; its exit status (a message and 1 where this tree has no emulator)."""
    if not (EMULATOR / "cupy").is_dir():
        print(f"no emulated CuPy at {EMULATOR}: launch and byte counts not measured",
              file=sys.stderr)
        return 1
    env = {k: v for k, v in os.environ.items() if k != "TG_BENCH_DEVICES"}
    env["PYTHONPATH"] = os.pathsep.join([str(EMULATOR), str(ROOT),
                                         *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "benchmarks.counts", str(path), *sizes],
                          env=env).returncode


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: PYTHONPATH=tests/cuda_emulator:. python -m benchmarks.counts OUT.json "
              "SIZE...", file=sys.stderr)
        return 2
    import cupy

    if not hasattr(cupy, "_emulator"):
        print(f"cupy at {cupy.__file__} is not the emulated CuPy of tests/cuda_emulator: "
              "the counts are the emulator's", file=sys.stderr)
        return 2
    rows = count_mlp_steps(args[1:])
    Path(args[0]).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
