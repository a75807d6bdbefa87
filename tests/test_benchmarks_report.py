"""The benchmark report's defences against a busy machine: the fastest of several passes is
kept, and a target missed on noisy measurements reads "unsure", never "no"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.config import NOISY_RATIO
from benchmarks.report import Index, Record, Target, load, merge_passes, targets


def _record(time: float, median: float, pass_times: list[float] | None = None) -> Record:
    return Record(workload="mlp", case="mlp step", size="small", impl="tensorgrad-cpu",
                  device="cpu", time=time, median=median, first_call=time, rounds=5, inner=1,
                  pass_times=pass_times or [])


def test_a_record_is_noisy_when_rounds_or_passes_disagree_by_more_than_the_ratio() -> None:
    assert NOISY_RATIO == 2.0
    assert not _record(1e-3, 1.9e-3).noisy
    assert _record(1e-3, 2.1e-3).noisy
    assert not _record(1e-3, 1e-3, [1e-3, 1.5e-3, 1.2e-3]).noisy
    assert _record(1e-3, 1e-3, [1e-3, 86e-3, 1.1e-3]).noisy


def test_a_missed_target_on_noisy_records_is_unsure_never_no() -> None:
    quiet, noisy = _record(1e-3, 1.01e-3), _record(1e-3, 5e-3)
    missed = dict(what="t", measured=1.5, bound=1.1)
    assert Target(**missed, records=(quiet, quiet)).row()[3] == "**no**"
    verdict = Target(**missed, records=(quiet, noisy)).row()[3]
    assert verdict.startswith("unsure: rounds disagree by more than 2x")
    assert Target("t", 1.0, 1.1, records=(noisy, noisy)).row()[3] == "yes"
    assert Target("t", None, 1.1, records=(noisy,)).row()[3] == "not measured"


def test_a_miss_smaller_than_the_cases_variation_is_unsure() -> None:
    # The per-op chain of a quick run: 1% over the bound, passes 3% apart.
    tg = _record(643e-6, 661e-6, [645.5e-6, 643e-6, 657.2e-6])
    torch = _record(637e-6, 656e-6, [642.2e-6, 636.8e-6, 639.3e-6])
    assert tg.spread == pytest.approx(661 / 643)
    verdict = Target("chain", tg.time / torch.time, 1.0, records=(tg, torch)).row()[3]
    assert verdict == "unsure: missed by 0.9%, less than the 3.0% its measurements vary by"
    # The same spread does not excuse a miss larger than it, in either direction of bound.
    assert Target("chain", 1.05, 1.0, records=(tg, torch)).row()[3] == "**no**"
    assert Target("bw", 0.8, 0.9, higher_is_better=True, records=(tg,)).row()[3] == "**no**"
    assert Target("bw", 0.89, 0.9, higher_is_better=True, records=(tg,)).row()[3].startswith(
        "unsure: missed by 1.1%")


def _bench(name: str, minimum: float, inner: int) -> dict:
    return {"fullname": name, "stats": {"min": minimum * inner, "median": minimum * inner,
                                        "rounds": 5},
            "extra_info": {"workload": "mlp", "case": "mlp step", "size": "small",
                           "impl": name, "device": "cpu", "inner": inner, "first_call_s": 0.1}}


def test_passes_merge_to_each_cases_fastest_pass(tmp_path: Path) -> None:
    # The run: a quick pass gave 86 ms for a 1 ms step; another pass did not.
    passes = [[_bench("tg", 86e-3, 1), _bench("torch", 1.0e-3, 2)],
              [_bench("tg", 1.04e-3, 3), _bench("torch", 1.2e-3, 1)],
              [_bench("tg", 1.1e-3, 1), _bench("torch", 0.9e-3, 4)]]
    paths = []
    for k, benches in enumerate(passes):
        paths.append(tmp_path / f"pass{k}.json")
        paths[-1].write_text(json.dumps({"machine_info": {"k": k}, "benchmarks": benches}))
    merge_passes(paths, tmp_path / "benchmark.json")
    records, machine = load(tmp_path / "benchmark.json")
    assert machine == {"k": 0}
    by_impl = {r.impl: r for r in records}
    assert [r.impl for r in records] == ["tg", "torch"]
    assert by_impl["tg"].time == 1.04e-3 and by_impl["tg"].inner == 3
    assert by_impl["tg"].pass_times == [86e-3, 1.04e-3, 1.1e-3] and by_impl["tg"].noisy
    assert by_impl["torch"].time == 0.9e-3 and not by_impl["torch"].noisy


def test_count_targets_hold_tensorgrad_to_1_1x_the_hand_steps_launches_and_bytes() -> None:
    counts = [{"size": "small", "impl": "tensorgrad-cuda", "launches": 50, "bytes": 2**20},
              {"size": "small", "impl": "hand-cupy", "launches": 45, "bytes": 2**21}]
    rows = {t.what: t.row() for t in targets(Index([]), counts) if "(issue 11)" in t.what}
    step = "emulated CUDA MLP step {}, {}, tensorgrad / hand-cupy (issue 11)"
    assert rows[step.format("small", "launches")][1:] == ["1.11x", "<= 1.1x", "**no**",
                                                          "50 vs 45"]
    assert rows[step.format("small", "bytes read + written")][1:] == [
        "0.5x", "<= 1.1x", "yes", "1.00 MiB vs 2.00 MiB"]
    assert rows[step.format("medium", "launches")][3] == "not measured"
