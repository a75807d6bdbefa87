"""Launcher: `python -m tensorgrad.distributed.run -n N [--hosts a,b] script.py [args...]`.

A thin wrapper over the installed MPI launcher (`mpiexec`, as the mpich wheel of the `[mpi]`
extra puts next to this Python): it starts N copies of `python script.py args...`, one per
rank, and passes every argument after the script through. `-m module` runs a module instead of
a script. With --hosts (MPICH's -hosts, a comma-separated list), the ranks are spread over
several machines, which need the same Python environment and passwordless ssh between them.
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


def command(argv: list[str]) -> list[str]:
    """The mpiexec command line for the launcher's arguments."""
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
    return cmd + options.args


def main(argv: list[str] | None = None) -> None:
    cmd = command(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)  # mpiexec takes over: signals and the exit status are its own


if __name__ == "__main__":
    main()
