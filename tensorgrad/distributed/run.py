"""Launcher: `python -m tensorgrad.distributed.run -n N [--hosts a,b] script.py [args...]`.

A thin wrapper over the installed MPI launcher (`mpiexec`, as the mpich wheel of the `[mpi]`
extra puts next to this Python): it starts N copies of `python script.py args...`, one per
rank, and passes every argument after the script through. `-m module` runs a module instead of
a script. With --hosts (MPICH's -hosts, a comma-separated list), the ranks are spread over
several machines, which need the same Python environment and passwordless ssh between them.

Unless OMP_NUM_THREADS is set, each rank gets an equal share of the machine's cores for its
BLAS threads (as torchrun sets it): N ranks each starting a thread per core would fight over
the cores, which made a small MLP's step 30x slower on 2 ranks of a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def find_mpiexec() -> str | None:
    """The mpiexec next to this Python (a virtual environment's, from the mpich wheel), else the
    one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("mpiexec")


def _threads_per_rank(ranks: int, hosts: str | None) -> int:
    machines = len(hosts.split(",")) if hosts else 1
    per_machine = -(-ranks // machines)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // per_machine)


def command(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The mpiexec command line for the launcher's arguments, and the environment to add."""
    parser = argparse.ArgumentParser(
        prog="python -m tensorgrad.distributed.run",
        description="Start N ranks of a tensorgrad script through mpiexec; every argument "
                    "after the script is passed to it.")
    parser.add_argument("-n", "--nproc", type=int, required=True,
                        help="number of ranks (processes) to start")
    parser.add_argument("--hosts", help="comma-separated machines to spread the ranks over "
                        "(MPICH's -hosts); default: this machine only")
    parser.add_argument("-m", dest="module", action="store_true",
                        help="the target is a module to run as `python -m`, not a script")
    parser.add_argument("target", help="the script (or with -m, the module) to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    options = parser.parse_args(argv)
    if options.nproc < 1:
        parser.error(f"-n must be at least 1, got {options.nproc}")
    mpiexec = find_mpiexec()
    if mpiexec is None:
        parser.error("no mpiexec found next to this Python or on PATH: pip install "
                     "'tensorgrad-engine[mpi]' (mpi4py and the mpich wheel, which brings "
                     "mpiexec)")
    cmd = [mpiexec, "-n", str(options.nproc)]
    if options.hosts:
        cmd += ["-hosts", options.hosts]
    cmd += [sys.executable] + (["-m"] if options.module else []) + [options.target]
    env = {}
    if "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(_threads_per_rank(options.nproc, options.hosts))
    return cmd + options.args, env


def main(argv: list[str] | None = None) -> None:
    cmd, env = command(sys.argv[1:] if argv is None else argv)
    for key, value in env.items():
        print(f"tensorgrad.distributed.run: {key}={value} for each rank (set it to choose)",
              file=sys.stderr, flush=True)
    sys.stdout.flush()
    # mpiexec takes over this process: signals and the exit status are its own.
    os.execve(cmd[0], cmd, {**os.environ, **env})


if __name__ == "__main__":
    main()
