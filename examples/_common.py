"""What every example shares: the command line (--device, --seed, --out, --smoke), seeding,
the output folder, checkpoints that a new run does not overwrite by accident, a progress bar
that works without tqdm, and matplotlib on the Agg backend.

Examples run as scripts (`python examples/train_digits.py`), so this module is imported as
`_common` from the examples folder, which Python puts first on sys.path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import tensorgrad as tg

os.environ.setdefault("MPLBACKEND", "Agg")  # before pyplot is imported anywhere: no display

_EXAMPLES = Path(__file__).resolve().parent


CHECKPOINT = "checkpoint.safetensors"  # an example's checkpoint in its --out folder
LEGACY_CHECKPOINT = "checkpoint.npz"  # its name in the format before safetensors


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: ...)" only where there is a default to show: not for flags, nor for
    options whose help already says what happens without them."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def parser(description: str) -> argparse.ArgumentParser:
    """An ArgumentParser with the options every example takes; add your own to it."""
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when usable, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for plots and checkpoints (default: runs/<script>/, "
                        "runs/<script>-smoke/ with --smoke)")
    p.add_argument("--smoke", action="store_true",
                   help="a few steps only, to check that the script runs (CI)")
    return p


def checkpoint_options(p: argparse.ArgumentParser) -> None:
    """--resume and --overwrite, for an example that keeps a checkpoint."""
    p.add_argument("--resume", action="store_true",
                   help=f"continue from the checkpoint in the output folder (<out>/{CHECKPOINT})")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh even where the output folder holds an earlier run's "
                        "checkpoint (it is replaced)")


def checkpoint(args: argparse.Namespace, out: Path, script: str) -> Path:
    """The checkpoint's path in out. A run that would replace a checkpoint it did not write
    stops here and says how to continue it or write elsewhere: a checkpoint may hold hours
    of training, and a quick try (--smoke, other options) must not wipe it."""
    path = out / CHECKPOINT
    legacy = out / LEGACY_CHECKPOINT
    if args.resume and legacy.exists() and not path.exists():
        # Once: the converted file is the one every later save and --resume uses.
        tg.save(tg.load(legacy, device="cpu"), path)
        print(f"converted {legacy} (the previous checkpoint format) to {path}")
    # The default smoke folder holds only smoke runs' throwaway results: no need to ask.
    own_smoke_folder = args.smoke and args.out is None
    if path.exists() and not (args.resume or args.overwrite or own_smoke_folder):
        sys.exit(f"{script}: {path} holds the checkpoint of an earlier run; this run would "
                 "replace it. Continue that run with --resume, write this one elsewhere with "
                 "--out DIR, or replace the checkpoint with --overwrite.")
    return path


def setup(args: argparse.Namespace, script: str) -> tuple[tg.Device, Path]:
    """Resolve the device (a clear exit when CUDA is asked for and unusable), seed tensorgrad's
    generators, create the output folder, and say what was chosen."""
    try:
        device = tg.Device(args.device)
    except ValueError as err:
        sys.exit(f"{script}: {err}")
    if device.type == "cuda" and not tg.cuda.is_available():
        try:
            tg.zeros(1, device=device)
        except tg.DeviceUnavailableError as err:
            sys.exit(f"{script}: {err}")
    tg.manual_seed(args.seed)
    if args.out is not None:
        out = args.out
    else:  # a smoke run has a folder of its own, so it never touches a real run's results
        out = Path("runs") / (f"{script}-smoke" if args.smoke else script)
    out.mkdir(parents=True, exist_ok=True)
    print(f"device: {device}   seed: {args.seed}   output folder: {out}"
          + ("   (smoke run: a few steps only)" if args.smoke else ""))
    return device, out


class _PlainProgress:
    """The part of tqdm's interface the examples use, printing a line now and then."""

    def __init__(self, iterable: Iterable[Any], total: int | None, desc: str) -> None:
        self.iterable = iterable
        self.total = total if total is not None else len(iterable)  # type: ignore[arg-type]
        self.desc = desc
        self.postfix = ""
        self.start = time.perf_counter()

    def __iter__(self) -> Iterator[Any]:
        every = max(1, self.total // 10)
        for i, item in enumerate(self.iterable, 1):
            yield item
            if i % every == 0 or i == self.total:
                elapsed = time.perf_counter() - self.start
                print(f"{self.desc}: {i}/{self.total} [{elapsed:.1f}s] {self.postfix}",
                      flush=True)

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    @staticmethod
    def write(text: str) -> None:
        print(text, flush=True)


def progress(iterable: Iterable[Any], desc: str, total: int | None = None) -> Any:
    """A tqdm progress bar over iterable on a terminal; elsewhere (a log file, CI, no tqdm)
    a line now and then on stdout, in order with the script's other output.
    Print with bar.write(...) while it runs; set_postfix(..., refresh=False) to show numbers."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress(iterable, total, desc)
    if not sys.stderr.isatty():  # tqdm's bar, redrawn on stderr, would interleave with prints
        return _PlainProgress(iterable, total, desc)
    return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True)


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (plots go to files only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Write a figure as PNG, close it, and say where it went."""
    fig.savefig(path, dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    print(f"wrote {path}")
