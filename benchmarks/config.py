"""Every size and time budget of the benchmark suite, in one place.

A mode is a set of sizes per device kind ("cpu", "cuda") and a number of passes: `full` is the
default (the published tables), `quick` the CI smoke run, made robust to a busy machine by
more rounds and by running the whole suite in several passes, keeping each case's fastest
pass (so the implementations of a case are measured interleaved, at several moments). The GPU
budget is the one that matters: `full` must finish in under 8 minutes on an H100 with the CPU
cases of the same run included, and `quick` in under 2 minutes on a 2-core CPU.
`python -m benchmarks` sets the mode through TG_BENCH_MODE before pytest collects the suites,
because the sizes are test parameters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """The sizes of each workload and the timing budget for one device kind."""

    activation_sizes: tuple[int, ...]  # elements, float32
    matmul_sizes: tuple[int, ...]  # n of an n x n x n product
    mlp_sizes: tuple[str, ...]  # keys of MLP_SHAPES
    cnn_batch: int
    cnn_image: int  # square input side; the CNN is Conv3x3-ReLU-MaxPool2-Linear
    adam_params: int
    budget_s: float  # measured time per case, first call and warm-up not included
    min_rounds: int
    max_rounds: int
    inner_min_s: float  # repeat a call inside one timed round until a round lasts this long
    gpt_sizes: tuple[str, ...] = ("example", "larger")  # keys of GPT_SHAPES


# (layer widths, batch) of the MLP training step of issues 4 and 5.
MLP_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "small": ((784, 256, 256, 10), 64),
    "medium": ((784, 1024, 1024, 10), 512),
    "large": ((4096, 4096, 4096, 4096, 10), 4096),
}

# (d_model, layers, heads, context, batch) of the tiny GPT training step of issue 15: the
# default of examples/tiny_gpt.py, and a larger model.
GPT_SHAPES: dict[str, tuple[int, int, int, int, int]] = {
    "example": (64, 2, 4, 11, 128),
    "larger": (256, 4, 4, 128, 32),
}

# The per-op chain: this many ops (alternating mul and add) on a 1-element tensor.
CHAIN_OPS = 100

MODES: dict[str, dict[str, Sizes]] = {
    "full": {
        "cpu": Sizes(
            activation_sizes=(2**10, 2**16, 2**20, 2**22),
            matmul_sizes=(256, 512, 1024),
            mlp_sizes=("small", "medium"),
            cnn_batch=64, cnn_image=28,
            adam_params=10_000_000,
            budget_s=0.25, min_rounds=5, max_rounds=200, inner_min_s=0.0005),
        "cuda": Sizes(
            activation_sizes=(2**10, 2**16, 2**20, 2**24, 2**26),
            matmul_sizes=(1024, 2048, 4096, 8192),
            mlp_sizes=("small", "medium", "large"),
            cnn_batch=256, cnn_image=28,
            adam_params=10_000_000,
            budget_s=0.15, min_rounds=5, max_rounds=300, inner_min_s=0.002),
    },
    "quick": {
        "cpu": Sizes(
            activation_sizes=(2**10, 2**16, 2**18),
            matmul_sizes=(256, 512),
            mlp_sizes=("small", "medium"),
            cnn_batch=32, cnn_image=8,
            adam_params=1_000_000,
            budget_s=0.02, min_rounds=5, max_rounds=50, inner_min_s=0.0002,
            gpt_sizes=("example",)),
        "cuda": Sizes(
            activation_sizes=(2**10, 2**20, 2**24),
            matmul_sizes=(1024, 2048),
            mlp_sizes=("small", "medium"),
            cnn_batch=64, cnn_image=28,
            adam_params=1_000_000,
            budget_s=0.02, min_rounds=5, max_rounds=50, inner_min_s=0.001,
            gpt_sizes=("example",)),
    },
}


# MLP sizes whose launches and bytes per step are counted on the emulated CUDA, in every mode
# (counts do not depend on the machine; the emulator's host GEMM makes "large" take minutes).
COUNTED_MLP_SIZES = ("small", "medium")

# Passes of the whole suite per mode; the report keeps each case's fastest pass.
PASSES = {"full": 1, "quick": 3}

# Rounds (or passes) of one case that disagree by more than this factor were disturbed by
# other work: the run warns, and a target judged on them is "unsure", never "no".
NOISY_RATIO = 2.0


def mode() -> str:
    """The mode chosen by TG_BENCH_MODE ("full" when unset)."""
    name = os.environ.get("TG_BENCH_MODE", "full")
    if name not in MODES:
        raise ValueError(f"TG_BENCH_MODE={name!r}: expected one of {sorted(MODES)}")
    return name


def sizes(device: str) -> Sizes:
    """The sizes of the current mode for a device kind ("cpu" or "cuda")."""
    return MODES[mode()][device]
