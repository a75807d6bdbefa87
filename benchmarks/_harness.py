"""How one case is timed, and the random inputs the cases share.

`measure` times the first call apart (on CUDA it includes kernel compilation), warms up, picks
how many calls one timed round repeats so that a round outlasts the synchronization it ends
with, and hands the round to pytest-benchmark's `pedantic` with a number of rounds that fits
the mode's time budget. The report divides each round by `inner`, stored with the case, and
takes the fastest round; a case whose median round is more than config.NOISY_RATIO times its
fastest was disturbed by other work, and the run says so.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import config
from .impls import Impl


def measure(benchmark: Any, impl: Impl, fn: Callable[[], Any], *, workload: str, case: str,
            size: int | str, nbytes: float = 0.0, flops: float = 0.0, **info: Any) -> None:
    """Time fn() on impl's device and record what the report needs in extra_info.

    nbytes and flops are per call of fn; the report turns them into GB/s and TFLOP/s.
    """
    s = config.sizes(impl.device)
    sync = impl.synchronizer()
    first = _time_call(fn, sync)
    # The least of a few calls: one slowed down by another process must not shrink the run to
    # the minimum number of rounds.
    once = min(_time_call(fn, sync) for _ in range(1 if first > 1.0 else 3))
    once = max(once, 1e-7)
    inner = 1
    if once < s.inner_min_s:
        inner = min(1000, math.ceil(s.inner_min_s / once))
    rounds = int(s.budget_s / (once * inner))
    rounds = max(s.min_rounds, min(s.max_rounds, rounds))

    def timed() -> None:
        for _ in range(inner):
            fn()
        sync()

    benchmark.group = workload
    benchmark.extra_info.update(
        workload=workload, case=case, size=size, impl=impl.name, family=impl.family,
        device=impl.device, inner=inner, first_call_s=first, nbytes=nbytes, flops=flops,
        mode=config.mode(), **info)
    benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=1)
    fastest = benchmark.stats.stats.min / inner
    median = benchmark.stats.stats.median / inner
    noisy = median > config.NOISY_RATIO * fastest
    print(f"  {workload:<10} {case:<22} {str(size):>9} {impl.name:<16} "
          f"{_fmt_time(fastest):>10}  (median {_fmt_time(median)}, first call "
          f"{_fmt_time(first)}, {rounds}x{inner})"
          + ("  warning: rounds disagree by more than "
             f"{config.NOISY_RATIO:g}x, the machine is busy" if noisy else ""), flush=True)


def _time_call(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


@functools.lru_cache(maxsize=16)  # every activation input of a run stays cached
def _host_normal(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def normal(impl: Impl, shape: int | tuple[int, ...], seed: int = 0,
           requires_grad: bool = False) -> Any:
    """Standard normal float32 values, the same for every implementation, on impl's device."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return impl.array(_host_normal(shape, seed), requires_grad=requires_grad)


def labels(impl: Impl, n: int, classes: int, seed: int = 1) -> Any:
    """n int64 class labels in [0, classes), the same for every implementation."""
    host = np.random.default_rng(seed).integers(0, classes, n, dtype=np.int64)
    return impl.array(host)
