"""Turn pytest-benchmark's JSON into the report: Markdown tables with ratios and targets, a CSV
of every case, and PNG plots (one line per implementation).

`python -m benchmarks.report RESULTS_DIR` rebuilds the report from RESULTS_DIR/benchmark.json
without measuring again.

Times are the minimum over rounds divided by the calls per round: on a machine shared with
other work the other rounds measure that work, not the code (the advice of Python's timeit).
The CSV also has the median. A run in several passes (quick mode) is merged first, keeping each
case's fastest pass. A target missed by less than its cases' rounds or passes vary by, or on a
case whose measurements disagree by more than config.NOISY_RATIO (noisy), reads "unsure",
never "no": the miss may be the other work's.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import CHAIN_OPS, GPT_SHAPES, MLP_SHAPES, NOISY_RATIO

DEVICE_IMPLS = {
    "cpu": ("tensorgrad-cpu", "hand-numpy", "torch-cpu"),
    "cuda": ("tensorgrad-cuda", "hand-cupy", "torch-cuda"),
}
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "softplus")
NOT_MEASURED = "not measured"
# (color, line) per plotted label: tensorgrad solid, references dashed, the same in every plot.
LINE_STYLE = {
    "tensorgrad-cpu": ("tab:blue", "-"), "tensorgrad-cpu kernel": ("tab:cyan", "-"),
    "hand-numpy": ("tab:orange", "--"), "torch-cpu": ("tab:green", "--"),
    "hand-numpy copy": ("tab:gray", ":"),
    "tensorgrad-cuda": ("tab:red", "-"), "tensorgrad-cuda kernel": ("tab:pink", "-"),
    "hand-cupy": ("tab:brown", "--"), "torch-cuda": ("tab:olive", "--"),
    "hand-cupy copy": ("black", ":"),
}


@dataclass
class Record:
    """One measured case: per-call times and what the case moved or computed."""

    workload: str
    case: str
    size: Any
    impl: str
    device: str
    time: float  # seconds per call, minimum over rounds
    median: float
    first_call: float
    rounds: int
    inner: int
    nbytes: float = 0.0
    flops: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    pass_times: list[float] = field(default_factory=list)  # per-call minimum of each pass

    @property
    def spread(self) -> float:
        """How far apart repeated measurements of this case are: the median round over the
        fastest, or the slowest pass over the fastest, whichever is larger."""
        passes = max(self.pass_times) / min(self.pass_times) if self.pass_times else 1.0
        return max(self.median / self.time, passes)

    @property
    def noisy(self) -> bool:
        return self.spread > NOISY_RATIO

    @property
    def gbps(self) -> float:
        return self.nbytes / self.time / 1e9

    @property
    def tflops(self) -> float:
        return self.flops / self.time / 1e12


def load(path: Path) -> tuple[list[Record], dict[str, Any]]:
    """The records of a pytest-benchmark JSON file and its machine_info."""
    data = json.loads(path.read_text())
    records = []
    for bench in data["benchmarks"]:
        info = dict(bench["extra_info"])
        inner = int(info.pop("inner", 1))
        stats = bench["stats"]
        records.append(Record(
            workload=info.pop("workload"), case=info.pop("case"), size=info.pop("size"),
            impl=info.pop("impl"), device=info.pop("device"),
            time=stats["min"] / inner, median=stats["median"] / inner,
            first_call=info.pop("first_call_s"), rounds=int(stats["rounds"]), inner=inner,
            nbytes=info.pop("nbytes", 0.0), flops=info.pop("flops", 0.0),
            pass_times=info.pop("pass_times", []), extra=info))
    return records, data.get("machine_info", {})


def merge_passes(paths: list[Path], out: Path) -> None:
    """One pytest-benchmark JSON from several passes of the suite: for each case the pass with
    the fastest round, every pass's per-call minimum kept in its extra_info["pass_times"]."""
    runs = [json.loads(p.read_text()) for p in paths]
    best: dict[str, tuple[float, dict[str, Any]]] = {}
    times: dict[str, list[float]] = {}
    for run in runs:
        for bench in run["benchmarks"]:
            key = bench["fullname"]
            per_call = bench["stats"]["min"] / bench["extra_info"].get("inner", 1)
            times.setdefault(key, []).append(per_call)
            if key not in best or per_call < best[key][0]:
                best[key] = (per_call, bench)
    for key, (_, bench) in best.items():
        bench["extra_info"]["pass_times"] = times[key]
    out.write_text(json.dumps(dict(runs[0], benchmarks=[b for _, b in best.values()])))


class Index:
    """Records looked up by (workload, case, size, impl)."""

    def __init__(self, records: Iterable[Record]) -> None:
        self.records = list(records)
        self._by = {(r.workload, r.case, r.size, r.impl): r for r in self.records}

    def get(self, workload: str, case: str, size: Any, impl: str) -> Record | None:
        return self._by.get((workload, case, size, impl))

    def sizes(self, workload: str, case: str, device: str) -> list[Any]:
        found = {r.size for r in self.records
                 if r.workload == workload and r.case == case and r.device == device}
        return sorted(found, key=_size_key)

    def devices(self, workload: str) -> list[str]:
        found = {r.device for r in self.records if r.workload == workload}
        return [d for d in ("cpu", "cuda") if d in found]


def _size_key(size: Any) -> tuple[int, Any]:
    if isinstance(size, str) and size in MLP_SHAPES:
        return (0, list(MLP_SHAPES).index(size))
    return (1, size) if isinstance(size, (int, float)) else (2, str(size))


# ---- formatting -----------------------------------------------------------------------------

def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def fmt_num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def fmt_size(size: Any, pow2: bool = True) -> str:
    """A size for a table: element counts as powers of two (pow2), MLP keys with their shape."""
    if pow2 and isinstance(size, int) and size >= 1024 and (size & (size - 1)) == 0:
        return f"2^{size.bit_length() - 1}"
    if isinstance(size, str) and size in MLP_SHAPES:
        widths, batch = MLP_SHAPES[size]
        return f"{size} ({'-'.join(map(str, widths))}, batch {batch})"
    if isinstance(size, str) and size in GPT_SHAPES:
        d, layers, heads, context, batch = GPT_SHAPES[size]
        return f"{size} (d {d}, {layers} layers, {heads} heads, context {context}, batch {batch})"
    return str(size)


def fmt_bytes(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


def ratio(a: Record | None, b: Record | None) -> float | None:
    """Time of a over time of b (below 1: a is faster)."""
    return None if a is None or b is None else a.time / b.time


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---- targets --------------------------------------------------------------------------------

@dataclass
class Target:
    what: str
    measured: float | None  # the ratio or value compared with the bound
    bound: float
    higher_is_better: bool = False
    unit: str = "x"
    note: str = ""
    records: tuple[Record | None, ...] = ()  # what the measured value was computed from

    def row(self) -> list[str]:
        op = ">=" if self.higher_is_better else "<="
        if self.measured is None:
            return [self.what, NOT_MEASURED, f"{op} {self.bound:g}{self.unit}", NOT_MEASURED,
                    self.note]
        met = (self.measured >= self.bound if self.higher_is_better
               else self.measured <= self.bound)
        verdict = "yes" if met else "**no**"
        spread = max((r.spread for r in self.records if r is not None), default=1.0)
        miss = self.bound / self.measured if self.higher_is_better else self.measured / self.bound
        if not met and spread > NOISY_RATIO:
            verdict = (f"unsure: rounds disagree by more than {NOISY_RATIO:g}x (a busy "
                       "machine); rerun, or see a full run")
        elif not met and miss <= spread:
            verdict = (f"unsure: missed by {100 * (miss - 1):.1f}%, less than the "
                       f"{100 * (spread - 1):.1f}% its measurements vary by")
        return [self.what, f"{self.measured:.3g}{self.unit}", f"{op} {self.bound:g}{self.unit}",
                verdict, self.note]


def targets(ix: Index, counts: list[dict[str, Any]] | None = None) -> list[Target]:
    """The speed targets of issues 2 to 5 and 7, each a ratio measured in this run, and the
    emulated launch and byte counts of issue 11."""
    out = []
    tg, torch = ix.get("overhead", f"{CHAIN_OPS}-op chain fwd+bwd", 1, "tensorgrad-cpu"), \
        ix.get("overhead", f"{CHAIN_OPS}-op chain fwd+bwd", 1, "torch-cpu")
    out.append(Target("per-op overhead, tensorgrad-cpu / torch-cpu (issue 2)", ratio(tg, torch),
                      1.0, note=_pair_note(tg, torch, per=CHAIN_OPS),
                      records=(tg, torch)))
    for size in ("small", "medium"):
        tg, torch = (ix.get("mlp", "mlp step", size, i) for i in ("tensorgrad-cpu", "torch-cpu"))
        out.append(Target(f"CPU MLP step {size}, tensorgrad-numpy / torch-cpu (issues 4, 5)",
                          ratio(tg, torch), 1.1, note=_pair_note(tg, torch),
                          records=(tg, torch)))
    for size, bound in (("small", 1.3), ("medium", 1.0), ("large", 1.0)):
        tg, torch = (ix.get("mlp", "mlp step", size, i) for i in ("tensorgrad-cuda", "torch-cuda"))
        out.append(Target(f"GPU MLP step {size}, tensorgrad-cupy / torch-cuda eager (issue 5)",
                          ratio(tg, torch), bound, note=_pair_note(tg, torch),
                          records=(tg, torch)))
    for size in ("small", "medium", "large"):
        tg, torch = (ix.get("mlp", "mlp step", size, i) for i in ("tensorgrad-cuda", "torch-cuda"))
        mem = None
        if tg and torch and "peak_bytes" in tg.extra and "peak_bytes" in torch.extra:
            mem = tg.extra["peak_bytes"] / torch.extra["peak_bytes"]
        out.append(Target(f"GPU peak memory of an MLP step {size}, tensorgrad / torch (issue 5)",
                          mem, 1.1))  # memory is not timed: never noisy
    big = 2**26
    copy = ix.get("activation", "copy", big, "hand-cupy")
    for act in ACTIVATIONS:
        kernel = ix.get("activation", f"{act} bwd-kernel", big, "tensorgrad-cuda")
        frac = kernel.gbps / copy.gbps if kernel and copy else None
        out.append(Target(f"fused {act} backward at 2^26, fraction of copy bandwidth (issue 3)",
                          frac, 0.9, higher_is_better=True, records=(kernel, copy)))
    kernel = ix.get("activation", "sigmoid bwd-kernel", big, "tensorgrad-cuda")
    chain = ix.get("activation", "sigmoid bwd", big, "hand-cupy")
    out.append(Target("fused sigmoid backward / unfused CuPy chain at 2^26 (issue 3)",
                      ratio(kernel, chain), 1.0, note=_pair_note(kernel, chain),
                      records=(kernel, chain)))
    for device, bound in (("cpu", 1.15), ("cuda", 1.0)):
        for size in GPT_SHAPES:
            tg, torch = (ix.get("gpt", "gpt step", size, f"{family}-{device}")
                         for family in ("tensorgrad", "torch"))
            out.append(Target(f"tiny GPT step {size} on {device}, tensorgrad / torch eager "
                              "(issue 15)", ratio(tg, torch), bound, note=_pair_note(tg, torch),
                              records=(tg, torch)))
    tg, torch = (ix.get("adam", "adam step", 10_000_000, i) for i in ("tensorgrad-cuda",
                                                                      "torch-cuda"))
    out.append(Target("Adam step, 10M params, tensorgrad-cupy / torch fused (issue 3)",
                      ratio(tg, torch), 1.1, note=_pair_note(tg, torch),
                      records=(tg, torch)))
    small = ix.get("mlp", "mlp step captured", "small", "tensorgrad-cuda")
    medium = ix.get("mlp", "mlp step captured", "medium", "tensorgrad-cuda")
    torch_graph = ix.get("mlp", "mlp step captured", "small", "torch-cuda")
    out.append(Target("captured small MLP step (issue 7)", small.time * 1e3 if small else None,
                      0.08, unit=" ms", records=(small,)))
    out.append(Target("captured small MLP step / torch CUDA-graph replay (issue 7)",
                      ratio(small, torch_graph), 1.0, note=_pair_note(small, torch_graph),
                      records=(small, torch_graph)))
    out.append(Target("captured medium MLP step (issue 7)", medium.time * 1e3 if medium else None,
                      0.26, unit=" ms", records=(medium,)))
    for workload, case, size, against, bound in (
            ("mlp", "mlp step", "small", "hand-numpy", 1.05),
            ("mlp", "mlp step", "small", "torch-cpu", 0.85),
            ("mlp", "mlp step", "medium", "torch-cpu", 1.0),
            ("cnn", "cnn step", None, "torch-cpu", 1.0)):
        size = size or next(iter(ix.sizes(workload, case, "cpu")), None)
        captured = ix.get(workload, f"{case} captured", size, "tensorgrad-cpu")
        other = ix.get(workload, case, size, against)
        note = _pair_note(captured, other)
        if against.startswith("hand") and captured and other:
            note += f"; {(captured.time - other.time) * 1e6:.0f} us per step over the hand step"
        out.append(Target(f"captured {case} {size} on cpu / {against} (issue 17)",
                          ratio(captured, other), bound, note=note, records=(captured, other)))
    for case, what in (("state dict save", "tg.save / torch.save"),
                       ("state dict load", "tg.load / torch.load(weights_only=True)")):
        sizes = ix.sizes("checkpoint", case, "cpu")
        tg, torch = (ix.get("checkpoint", case, sizes[-1] if sizes else None, i)
                     for i in ("tensorgrad-cpu", "torch-cpu"))
        out.append(Target(f"{what}, float32 state dict of {sizes[-1] if sizes else '-'} MiB "
                          "(issue 18)", ratio(tg, torch), 1.0, note=_pair_note(tg, torch),
                          records=(tg, torch)))
    by = {(c["size"], c["impl"]): c for c in counts or ()}
    for size in ("small", "medium"):
        tg, hand = by.get((size, "tensorgrad-cuda")), by.get((size, "hand-cupy"))
        for key, what in (("launches", "launches"), ("bytes", "bytes read + written")):
            # Counts are exact, not timed: never noisy.
            out.append(Target(f"emulated CUDA MLP step {size}, {what}, tensorgrad / hand-cupy "
                              "(issue 11)", tg[key] / hand[key] if tg and hand else None, 1.1,
                              note=f"{_count(tg[key], key)} vs {_count(hand[key], key)}"
                              if tg and hand else ""))
    return out


def _count(value: int, key: str) -> str:
    return f"{value / 2**20:.2f} MiB" if key == "bytes" else str(value)


def _pair_note(a: Record | None, b: Record | None, per: int = 1) -> str:
    if a is None or b is None:
        return ""
    return f"{fmt_time(a.time / per)} vs {fmt_time(b.time / per)}" + (" per op" if per > 1 else "")


# ---- sections -------------------------------------------------------------------------------

def section_overhead(ix: Index) -> str:
    case = f"{CHAIN_OPS}-op chain fwd+bwd"
    torch = {d: ix.get("overhead", case, 1, f"torch-{d}") for d in ("cpu", "cuda")}
    rows = []
    for r in ix.records:
        if r.workload != "overhead":
            continue
        rows.append([r.impl, fmt_time(r.time), f"{r.time / CHAIN_OPS * 1e6:.2f}",
                     fmt_num(ratio(r, torch[r.device])), fmt_time(r.median),
                     fmt_time(r.first_call)])
    return (f"### Per-op overhead ({CHAIN_OPS} mul/add ops on a 1-element tensor, forward + "
            "backward)\n\n" + table(["implementation", "chain", "us/op", "/ torch (same device)",
                                    "median chain", "first call"], rows))


def section_activations(ix: Index, device: str) -> str:
    tg, hand, torch = DEVICE_IMPLS[device]
    rows = []
    for act in ACTIVATIONS:
        for direction in ("fwd", "bwd"):
            case = f"{act} {direction}"
            for size in ix.sizes("activation", case, device):
                a, h, t = (ix.get("activation", case, size, i) for i in (tg, hand, torch))
                k = ix.get("activation", f"{act} bwd-kernel", size, tg)
                if direction == "fwd":
                    k = None
                copy = ix.get("activation", "copy", size, hand)
                rows.append([act, direction, fmt_size(size)]
                            + [fmt_num(r.gbps if r else None) for r in (a, k, h, t)]
                            + [fmt_num(r.gbps / copy.gbps if r and copy else None, 2)
                               for r in (a, k)]
                            + [fmt_num(ratio(a, t)), fmt_num(ratio(a, h)), fmt_num(ratio(k, h)),
                               fmt_time(a.first_call if a else None)])
    copy_rows = [[fmt_size(s)] + [fmt_num(r.gbps if r else None) for r in
                                  (ix.get("activation", "copy", s, i) for i in (hand, torch))]
                 for s in ix.sizes("activation", "copy", device)]
    return (f"### Activations on {device} (GB/s; fractions of the {hand} copy bandwidth at the "
            "same size)\n\nCopy bandwidth measured in this run:\n\n"
            + table(["size", f"{hand} copy GB/s", f"{torch} copy GB/s"], copy_rows)
            + "\n\n`tg` is the autograd path (forward with the tape recording; backward as "
            "`tg.grad` of the recorded output), `tg kernel` the fused backward kernel "
            f"alone, `hand` the one-op-at-a-time {hand} formula. Ratios are times "
            "(below 1: tensorgrad is faster).\n\n"
            + table(["act", "dir", "size", "tg GB/s", "tg kernel GB/s", "hand GB/s",
                     "torch GB/s", "tg / copy", "kernel / copy", "tg / torch", "tg / hand",
                     "kernel / hand", "tg first call"], rows))


def section_simple(ix: Index, workload: str, case: str, title: str, device: str,
                   metric: str = "time") -> str:
    """One row per size: each implementation's time (or TFLOP/s, GB/s) and the ratios."""
    tg, hand, torch = DEVICE_IMPLS[device]
    captured = case == "mlp step"
    cpu_captured = device == "cpu" and case in ("mlp step", "cnn step")
    rows = []
    for size in ix.sizes(workload, case, device):
        a, h, t = (ix.get(workload, case, size, i) for i in (tg, hand, torch))
        row = [fmt_size(size, pow2=False)] + [fmt_time(r.time if r else None) for r in (a, h, t)]
        if metric == "tflops":
            row += [fmt_num(r.tflops if r else None) for r in (a, h, t)]
        if metric == "gbps":
            row += [fmt_num(r.gbps if r else None) for r in (a, h, t)]
        row += [fmt_num(ratio(a, t)), fmt_num(ratio(a, h)), fmt_time(a.first_call if a else None)]
        if captured and device == "cuda":
            ca, ct = (ix.get(workload, "mlp step captured", size, i) for i in (tg, torch))
            row += [fmt_time(ca.time if ca else None), fmt_time(ct.time if ct else None)]
            row += [fmt_bytes(r.extra.get("peak_bytes") if r else None) for r in (a, h, t)]
            peak = [r.extra.get("peak_bytes") if r else None for r in (a, t)]
            row += [fmt_num(peak[0] / peak[1] if None not in peak else None)]
        if cpu_captured:
            ca = ix.get(workload, f"{case} captured", size, tg)
            row += [fmt_time(ca.time if ca else None), fmt_num(ratio(ca, h)),
                    fmt_num(ratio(ca, t))]
        rows.append(row)
    header = ["size", "tensorgrad", "hand", "torch"]
    if metric == "tflops":
        header += ["tg TFLOP/s", "hand TFLOP/s", "torch TFLOP/s"]
    if metric == "gbps":
        header += ["tg GB/s", "hand GB/s", "torch GB/s"]
    header += ["tg / torch", "tg / hand", "tg first call"]
    if captured and device == "cuda":
        header += ["tg captured", "torch CUDA graph", "tg peak mem", "hand peak mem",
                   "torch peak mem", "tg / torch mem"]
    if cpu_captured:
        header += ["tg captured", "captured / hand", "captured / torch"]
    return f"### {title} on {device} ({tg}, {hand}, {torch})\n\n" + table(header, rows)


def section_counts(counts: list[dict[str, Any]]) -> str:
    """Launches and bytes per MLP step on the emulated CUDA, tensorgrad against hand-cupy."""
    by = {(c["size"], c["impl"]): c for c in counts}
    rows = []
    for size in sorted({c["size"] for c in counts}, key=_size_key):
        tg, hand = by.get((size, "tensorgrad-cuda")), by.get((size, "hand-cupy"))
        row = [fmt_size(size, pow2=False)]
        for key in ("launches", "gemms", "bytes"):
            row += [_count(c[key], key) if c else "-" for c in (tg, hand)]
            if key != "gemms":
                row.append(fmt_num(tg[key] / hand[key] if tg and hand else None))
        rows.append(row)
    return ("### Launches and bytes per MLP step (emulated CUDA)\n\n"
            "One SGD step (its second call) on the emulated CuPy of tests/cuda_emulator: "
            "kernel launches (GEMMs among them) and bytes read + written by all of them. "
            "Hardware-independent counts, not GPU timings.\n\n"
            + table(["size", "tg launches", "hand launches", "tg / hand", "tg GEMMs",
                     "hand GEMMs", "tg bytes", "hand bytes", "tg / hand"], rows))


def render(records: list[Record], env: dict[str, str], mode: str, elapsed: float | None,
           counts: list[dict[str, Any]] | None = None) -> str:
    ix = Index(records)
    parts = ["# tensorgrad benchmark report", ""]
    parts.append(table(["", ""], [[k, v] for k, v in env.items()]
                       + [["mode", mode]]
                       + ([["wall time", f"{elapsed:.0f} s"]] if elapsed else [])))
    parts += ["", "Times are per call, the minimum over rounds (the median is in results.csv). "
              "Ratios are tensorgrad's time over the reference's: below 1, tensorgrad is faster. "
              "`hand` is the hand-written NumPy/CuPy code with no autodiff.", ""]
    noisy = [r for r in records if r.noisy]
    if noisy:
        parts += [f"**{len(noisy)} of {len(records)} cases were noisy**: their rounds or passes "
                  f"disagree by more than {NOISY_RATIO:g}x, so other work shared the machine "
                  "(the `noisy` column of results.csv). A target missed on such a case reads "
                  "\"unsure\", not \"no\".", ""]
    parts += ["## Targets", "", table(["target", "measured", "target", "met?", "times"],
                                      [t.row() for t in targets(ix, counts)]), ""]
    parts += ["## Results", "", section_overhead(ix), ""]
    for device in ix.devices("activation"):
        parts += [section_activations(ix, device), ""]
    for workload, case, title, metric in (
            ("matmul", "matmul", "Matmul n x n x n float32", "tflops"),
            ("mlp", "mlp step", "MLP training step (Linear/ReLU, cross-entropy, SGD)", "time"),
            ("cnn", "cnn step", "CNN training step (Conv3x3-ReLU-MaxPool2-Linear, SGD)", "time"),
            ("gpt", "gpt step", "Tiny GPT training step (examples/tiny_gpt.py, AdamW)", "time"),
            ("adam", "adam step", "Adam step (10 tensors)", "gbps"),
            ("checkpoint", "state dict save", "Saving a float32 state dict (MiB)", "gbps"),
            ("checkpoint", "state dict load", "Loading a float32 state dict (MiB)", "gbps"),
            ("checkpoint", "state dict load mmap", "Mapping a float32 state dict (MiB)",
             "time")):
        for device in ix.devices(workload):
            parts += [section_simple(ix, workload, case, title, device, metric), ""]
    if counts:
        parts += [section_counts(counts), ""]
    return "\n".join(parts)


# ---- CSV and plots --------------------------------------------------------------------------

def write_csv(records: list[Record], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "case", "size", "impl", "device", "min_s", "median_s",
                    "first_call_s", "rounds", "calls_per_round", "GB/s", "TFLOP/s",
                    "peak_bytes", "pass_min_s", "noisy"])
        for r in records:
            w.writerow([r.workload, r.case, r.size, r.impl, r.device, f"{r.time:.6g}",
                        f"{r.median:.6g}", f"{r.first_call:.6g}", r.rounds, r.inner,
                        f"{r.gbps:.4g}" if r.nbytes else "", f"{r.tflops:.4g}" if r.flops else "",
                        r.extra.get("peak_bytes", ""),
                        " ".join(f"{t:.6g}" for t in r.pass_times), "yes" if r.noisy else ""])


def write_plots(records: list[Record], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ix = Index(records)
    written = []
    impls = [i for d in ("cpu", "cuda") for i in DEVICE_IMPLS[d]]

    def lines(ax: Any, workload: str, case: str, value: str, impl_list: Iterable[str],
              label_suffix: str = "") -> None:
        for impl in impl_list:
            pts = sorted(((r.size, getattr(r, value)) for r in ix.records
                          if r.workload == workload and r.case == case and r.impl == impl),
                         key=lambda p: p[0])
            if pts:
                label = impl + label_suffix
                color, line = LINE_STYLE.get(label, ("gray", ":"))
                ax.plot(*zip(*pts), line, color=color, marker="o", label=label)

    if any(r.workload == "activation" for r in records):
        fig, axes = plt.subplots(4, 4, figsize=(16, 13))
        for k, act in enumerate(ACTIVATIONS):
            for j, direction in enumerate(("fwd", "bwd")):
                ax = axes[(2 * k + j) // 4][(2 * k + j) % 4]
                lines(ax, "activation", f"{act} {direction}", "gbps", impls)
                if direction == "bwd":
                    lines(ax, "activation", f"{act} bwd-kernel", "gbps",
                          ("tensorgrad-cpu", "tensorgrad-cuda"), " kernel")
                lines(ax, "activation", "copy", "gbps", ("hand-numpy", "hand-cupy"), " copy")
                ax.set(xscale="log", yscale="log", title=f"{act} {direction}",
                       xlabel="elements (float32)", ylabel="GB/s")
                ax.grid(True, which="both", alpha=0.3)
        handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=6)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        written.append(_save(fig, out / "activations.png", plt))

    if any(r.workload == "matmul" for r in records):
        fig, ax = plt.subplots(figsize=(7, 5))
        lines(ax, "matmul", "matmul", "tflops", impls)
        ax.set(xscale="log", yscale="log", title="matmul n x n x n (float32)", xlabel="n",
               ylabel="TFLOP/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save(fig, out / "matmul.png", plt))

    bars = [(w, c) for w, c in (("overhead", f"{CHAIN_OPS}-op chain fwd+bwd"),
                                ("mlp", "mlp step"), ("mlp", "mlp step captured"),
                                ("cnn", "cnn step"), ("adam", "adam step"))
            if any(r.workload == w and r.case == c for r in records)]
    if bars:
        fig, axes = plt.subplots(1, len(bars), figsize=(5 * len(bars), 5), squeeze=False)
        for ax, (workload, case) in zip(axes[0], bars):
            sizes = sorted({r.size for r in records if r.workload == workload and r.case == case},
                           key=_size_key)
            present = [i for i in impls if any(r.impl == i and r.case == case for r in records)]
            width = 0.8 / max(len(present), 1)
            for j, impl in enumerate(present):
                ys = [(ix.get(workload, case, s, impl) or _NAN).time * 1e3 for s in sizes]
                ax.bar([x + j * width for x in range(len(sizes))], ys, width, label=impl,
                       color=LINE_STYLE[impl][0])
            ax.set_xticks([x + 0.4 - width / 2 for x in range(len(sizes))],
                          [str(s) for s in sizes])
            ax.set(yscale="log", title=case, ylabel="ms per call")
            shown = [r.time * 1e3 for r in records if r.workload == workload and r.case == case]
            ax.set_ylim(bottom=min(shown) / 3)  # a log axis must not start just under a bar
            ax.grid(True, axis="y", which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(_save(fig, out / "training.png", plt))
    return written


class _Missing:
    time = float("nan")


_NAN = _Missing()


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def write_report(json_path: Path, out: Path, env: dict[str, str], mode: str,
                 elapsed: float | None = None) -> list[Path]:
    """Write report.md, results.csv and the plots next to json_path (with the emulated counts
    of counts.json there, if any; json_path may be missing where only counts were run);
    return their paths."""
    records = load(json_path)[0] if json_path.exists() else []  # a run of counts only
    counts_path = json_path.parent / "counts.json"
    counts = json.loads(counts_path.read_text()) if counts_path.exists() else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(render(records, env, mode, elapsed, counts) + "\n")
    (out / "environment.json").write_text(json.dumps(dict(env, mode=mode), indent=1) + "\n")
    write_csv(records, out / "results.csv")
    return [out / "report.md", out / "results.csv", *write_plots(records, out)]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.report RESULTS_DIR (holding benchmark.json)")
        return 2
    out = Path(args[0])
    saved = out / "environment.json"
    env = json.loads(saved.read_text()) if saved.exists() else {}
    mode = env.pop("mode", "unknown")
    for path in write_report(out / "benchmark.json", out, env, mode):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
