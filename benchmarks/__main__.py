"""`python -m benchmarks [--quick] [--out DIR] [--devices cpu,cuda,emulated] [--threads N]
[-k EXPR]`: run the suites with pytest-benchmark, count the launches and bytes of an MLP step
on the emulated CUDA (device kind `emulated`, see counts.py), then write the report (report.md,
results.csv, PNG plots, the raw benchmark.json and counts.json) under DIR/<device name>/ (DIR
defaults to benchmarks/results, or benchmarks/results/quick in quick mode so a smoke run never
overwrites the published tables).

Quick mode is built for a busy machine: one CPU thread unless --threads says otherwise, and
config.PASSES[mode] passes of the whole suite, each a pytest process of its own, merged by
keeping each case's fastest pass.

Runs from the source tree (`PYTHONPATH=. python -m benchmarks`); nothing needs installing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and short budgets (the CI smoke run)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the results (a subfolder per device is made)")
    parser.add_argument("--devices", default=None,
                        help="comma-separated device kinds to run (cpu,cuda,emulated; "
                             "emulated: launch and byte counts on tests/cuda_emulator); "
                             "default: all")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of BLAS, OpenMP and PyTorch (default: 1 with --quick, "
                             "else the libraries' own choice); 1 gives steady ratios on a "
                             "machine shared with other work, where a multi-threaded call waits "
                             "for its slowest thread")
    parser.add_argument("-k", dest="keyword", default=None,
                        help="run only the cases matching this pytest -k expression")
    args = parser.parse_args(argv)

    # Sizes are test parameters: the mode must be set before pytest collects the suites.
    mode = "quick" if args.quick else "full"
    os.environ["TG_BENCH_MODE"] = mode
    if args.threads is None and args.quick:
        args.threads = 1
    if args.threads:
        # Read by OpenBLAS, MKL and OpenMP when they load: set before NumPy or torch import.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    if args.devices:
        os.environ["TG_BENCH_DEVICES"] = args.devices
    os.environ.setdefault("CUPY_CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp"))
                                                / "tg-cupy-cache"))

    from .config import COUNTED_MLP_SIZES, PASSES
    from .counts import emulated_counts
    from .impls import device_slug, environment
    from .report import merge_passes, write_report

    env = environment()
    env["cpu threads"] = str(args.threads) if args.threads else "library defaults"
    base = args.out or (HERE / "results" / ("quick" if args.quick else ""))
    out = base / (device_slug(env) + (f"-{args.threads}-threads" if args.threads else ""))
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "benchmark.json"
    print(f"tensorgrad benchmarks, mode {mode}, results to {out}", flush=True)
    for key, value in env.items():
        print(f"  {key}: {value}", flush=True)

    pytest_args = [
        sys.executable, "-m", "pytest", str(HERE), "-o", "python_files=bench_*.py",
        "-p", "no:cacheprovider", "-W", "default", "-q", "-s", "--benchmark-quiet",
    ]
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    # The passes' own processes find this package and tensorgrad as this one does.
    child_env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    passes = PASSES[mode]
    pass_paths = [json_path] if passes == 1 else [out / f"benchmark-pass{k}.json"
                                                   for k in range(1, passes + 1)]
    start = time.perf_counter()
    code = 0
    kinds = args.devices.split(",") if args.devices else ["cpu", "cuda", "emulated"]
    counts_path = out / "counts.json"
    counts_path.unlink(missing_ok=True)
    if "emulated" in kinds:
        print("launches and bytes per MLP step on the emulated CUDA (counts, not timings)",
              flush=True)
        code = emulated_counts(counts_path, COUNTED_MLP_SIZES)
    json_path.unlink(missing_ok=True)
    for k, path in enumerate(pass_paths if {"cpu", "cuda"} & set(kinds) else [], 1):
        path.unlink(missing_ok=True)
        if passes > 1:
            print(f"pass {k} of {passes}", flush=True)
        child_env["TG_BENCH_PASS"] = str(k)
        returncode = subprocess.run([*pytest_args, f"--benchmark-json={path}"],
                                    env=child_env).returncode
        code = code or returncode
    elapsed = time.perf_counter() - start
    ran = [p for p in pass_paths if p.exists()]
    if not ran and not counts_path.exists():
        print("no benchmark ran; no report written", file=sys.stderr)
        return code or 1
    if passes > 1 and ran:
        merge_passes(ran, json_path)
        for path in ran:
            path.unlink()
    for path in write_report(json_path, out, env, mode, elapsed):
        print(f"wrote {path}", flush=True)
    print(f"done in {elapsed:.0f} s", flush=True)
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())
