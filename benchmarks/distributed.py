"""Data-parallel scaling on the CPU: `PYTHONPATH=. python -m benchmarks.distributed`.

The medium MLP (784-1024-1024-10, global batch 512, SGD) one step at a time: one process
without DDP, then 2 ranks under mpiexec with one thread each, for tensorgrad's DDP over MPI and
PyTorch's DDP over gloo in the same run. The implementations and rank counts take turns,
--repeats times, and each case keeps its fastest repeat (the box is shared: the minimum is the
least disturbed). Prints a Markdown table for RESULTS.md: time per step, speed-up over one
process, and scaling efficiency (speed-up / ranks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from tensorgrad.distributed.run import find_mpiexec

HERE = Path(__file__).parent


def run(impl: str, ranks: int, args: argparse.Namespace, port: int) -> float:
    worker = [sys.executable, str(HERE / "ddp_worker.py"), "--impl", impl,
              "--bucket-cap-mb", str(args.bucket_cap_mb), "--steps", str(args.steps),
              "--rounds", str(args.rounds), "--port", str(port)]
    if ranks == 1:
        cmd = worker + ["--plain"]
    else:
        cmd = [find_mpiexec(), "-n", str(ranks)] + worker
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["ms_per_step"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=5, help="rounds per run (median taken)")
    p.add_argument("--bucket-cap-mb", type=float, default=25.0)
    p.add_argument("--impls", nargs="+", default=["tensorgrad", "torch"])
    args = p.parse_args()
    if find_mpiexec() is None:
        raise SystemExit("no mpiexec: pip install 'tensorgrad-engine[mpi]'")
    best: dict[tuple[str, int], float] = {}
    port = 29600
    for _ in range(args.repeats):
        for impl in args.impls:
            for ranks in (1, args.ranks):
                port += 1
                ms = run(impl, ranks, args, port)
                best[impl, ranks] = min(ms, best.get((impl, ranks), float("inf")))
    print(f"medium MLP 784-1024-1024-10, global batch 512, SGD, float32, one thread per rank, "
          f"bucket_cap_mb={args.bucket_cap_mb:g}, best of {args.repeats} interleaved runs\n")
    print(f"| implementation | 1 process (ms/step) | {args.ranks} ranks (ms/step) | speed-up | "
          "scaling efficiency |")
    print("|---|---|---|---|---|")
    for impl in args.impls:
        one, many = best[impl, 1], best[impl, args.ranks]
        name = "tensorgrad DDP (MPI)" if impl == "tensorgrad" else "PyTorch DDP (gloo)"
        print(f"| {name} | {one:.1f} | {many:.1f} | {one / many:.2f} | "
              f"{one / many / args.ranks:.2f} |")
    if "torch" in args.impls and "tensorgrad" in args.impls:
        ratio = best["tensorgrad", args.ranks] / best["torch", args.ranks]
        print(f"\ntensorgrad / PyTorch time per step on {args.ranks} ranks: {ratio:.2f}x")


if __name__ == "__main__":
    main()
