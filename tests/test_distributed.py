"""tg.distributed, DistributedDataParallel and DistributedSampler.

The multi-rank tests run the scripts in tests/distributed/ through the real mpiexec (the
`[mpi]` extra: mpi4py and the mpich wheel) in a subprocess with a timeout, so a hang fails the
test instead of the suite; they skip, saying why, where mpiexec or mpi4py is missing. MPI is
never initialized in the pytest process itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tensorgrad as tg
import tensorgrad.distributed as dist
from tensorgrad.data import DataLoader, DistributedSampler, TensorDataset
from tensorgrad.distributed.run import command, find_mpiexec
from tensorgrad.nn.parallel import DistributedDataParallel

SCRIPTS = Path(__file__).parent / "distributed"
ROOT = Path(__file__).parent.parent


def _mpi_reason() -> str | None:
    if find_mpiexec() is None:
        return "no mpiexec next to this Python or on PATH: pip install 'tensorgrad-engine[mpi]'"
    try:
        import mpi4py  # noqa: F401  (the package only: MPI.Init happens on importing mpi4py.MPI)
    except ImportError:
        return "mpi4py is not installed: pip install 'tensorgrad-engine[mpi]'"
    return None


def _run(argv: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess:
    reason = _mpi_reason()
    if reason:
        pytest.skip(reason)
    environ = {k: v for k, v in os.environ.items() if k != "TENSORGRAD_DISTRIBUTED_DEBUG"}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    environ.update(env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=environ,
                          cwd=ROOT)


def _mpiexec(n: int, script: str, *args: str, timeout: float = 60, **env: str
             ) -> subprocess.CompletedProcess:
    return _run([str(find_mpiexec()), "-n", str(n), sys.executable, str(SCRIPTS / script),
                 *args], timeout, **env)


# ---- collectives and DDP over real ranks ---------------------------------------------------
@pytest.mark.parametrize("ranks", [2, 3])
def test_collectives_values_dtypes_layouts_and_work_handles(ranks: int) -> None:
    proc = _mpiexec(ranks, "collectives.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split("\n").count(f"ok collectives {ranks}") == 1, proc.stdout


def test_one_rank_runs_without_a_launcher() -> None:
    proc = _run([sys.executable, str(SCRIPTS / "collectives.py")], 60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok collectives 1" in proc.stdout


def test_ddp_on_two_ranks_matches_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    """SGD with momentum, Adam, no_sync accumulation and a layer used twice to 1e-12 in
    float64; BatchNorm
    buffers from rank 0 and parameters equal on the ranks; unused parameters; the first
    bucket's all-reduce starts before backward reaches the first layer; a resumed run equals
    an uninterrupted one bit for bit."""
    proc = _mpiexec(2, "ddp_equivalence.py", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    done = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("ok ")]
    assert done == ["sgd-momentum", "adam", "no_sync", "shared", "batchnorm", "unused",
                    "overlap", "dropped", "resume"], proc.stdout + proc.stderr


EMULATOR = ROOT / "tests" / "cuda_emulator"


@pytest.mark.parametrize("script, device", [("collectives.py", "cuda"),
                                            ("ddp_equivalence.py", "cuda"),
                                            ("collectives.py", "cuda-mpi")])
def test_cuda_tensors_on_two_ranks_under_the_emulated_cuda(script: str, device: str,
                                                            tmp_path: Path) -> None:
    """The nccl path (CuPy's NcclCommunicator, its streams and events) with the emulated CuPy
    and its NCCL stand-in, which carries the collectives over MPI: init_process_group()
    picks NCCL because every rank has a (emulated) GPU. And CUDA tensors over MPI."""
    if not (EMULATOR / "cupy" / "cuda" / "nccl.py").is_file():
        pytest.skip("the emulated CuPy (tests/cuda_emulator) is not in this checkout")
    args = [str(tmp_path), device] if script == "ddp_equivalence.py" else [device]
    path = os.pathsep.join([str(EMULATOR), str(ROOT)])
    # Two emulated GPUs: each rank on its own, as on a real machine.
    proc = _mpiexec(2, script, *args, timeout=120, PYTHONPATH=path,
                    CUPY_EMULATOR_DEVICE_COUNT="2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = (["ok collectives 2"] if script == "collectives.py" else
                [f"ok {case}" for case in ("sgd-momentum", "adam", "no_sync", "shared",
                                           "batchnorm", "unused", "overlap", "dropped",
                                           "resume")])
    assert [line for line in proc.stdout.splitlines() if line.startswith("ok ")] == expected


@pytest.mark.cuda
@pytest.mark.parametrize("script", ["collectives.py", "ddp_equivalence.py"])
def test_nccl_backend_on_this_machines_gpu(script: str, tmp_path: Path) -> None:
    """The nccl path on the CUDA this test run has (a real GPU, or the emulated one when the
    run puts it on PYTHONPATH), with one rank: NCCL refuses two ranks on one GPU."""
    if not tg.cuda.is_available():
        pytest.skip("CUDA not usable here")
    args = [str(tmp_path), "cuda"] if script == "ddp_equivalence.py" else ["cuda"]
    proc = _mpiexec(1, script, *args, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok " in proc.stdout


@pytest.mark.parametrize("mode, message", [
    ("mismatch", r"the ranks hold different models: rank 1 has parameter '0\.weight' of shape "
                 r"\(5, 3\) and dtype float32 where rank 0 has parameter '0\.weight' of shape "
                 r"\(4, 3\)"),
    ("raise", r"RuntimeError: rank 1 fails on purpose\n(.|\n)*rank 1 of 2 stopped on this "
              r"RuntimeError; aborting every rank"),
    ("kill", r"Killed \(signal 9\)"),
    ("timeout", r"rank 0: all_reduce\(sum\) of float32 \(3,\) did not complete within 1 s"),
    ("debug", r"the ranks called different collectives: rank 0 all_reduce\(sum\) of float32 "
              r"\(3,\), rank 1 all_reduce\(sum\) of float32 \(4,\)"),
    ("nccl", r"backend 'nccl': rank 0 cannot use NCCL: CUDA is not usable"),
])
def test_a_failing_rank_ends_the_job_with_a_clear_error(mode: str, message: str) -> None:
    if mode == "nccl" and tg.cuda.is_available():
        pytest.skip("CUDA is usable here, so NCCL may be too")
    env = {"TENSORGRAD_DISTRIBUTED_DEBUG": "1"} if mode == "debug" else {}
    # The subprocess timeout is the bound: a job left hanging fails the test.
    proc = _mpiexec(2, "failures.py", mode, timeout=30, **env)
    assert proc.returncode != 0
    assert "finished although it should not have" not in proc.stdout
    assert re.search(message, proc.stdout + proc.stderr), (
        proc.stdout + proc.stderr)


def test_launcher_starts_the_script_on_n_ranks() -> None:
    proc = _run([sys.executable, "-m", "tensorgrad.distributed.run", "-n", "2",
                 str(SCRIPTS / "collectives.py")], 60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok collectives 2" in proc.stdout


def test_train_digits_example_runs_on_two_ranks_and_only_rank_0_reports(tmp_path: Path) -> None:
    proc = _run([sys.executable, "-m", "tensorgrad.distributed.run", "-n", "2",
                 str(ROOT / "examples" / "train_digits.py"), "--distributed", "--smoke",
                 "--device", "cpu", "--out", str(tmp_path)], 120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("device: cpu") == 1, proc.stdout
    assert proc.stdout.count("final test accuracy:") == 1, proc.stdout
    state = tg.load(tmp_path / "checkpoint.safetensors")
    # The plain module's keys: a checkpoint that a single process can read too.
    assert state["config"]["ranks"] == 2
    assert sorted(state["model"]) == ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias",
                                      "4.weight"]


def test_train_digits_example_on_two_emulated_gpus_over_nccl(tmp_path: Path) -> None:
    if not (EMULATOR / "cupy" / "cuda" / "nccl.py").is_file():
        pytest.skip("the emulated CuPy (tests/cuda_emulator) is not in this checkout")
    proc = _run([sys.executable, "-m", "tensorgrad.distributed.run", "-n", "2",
                 str(ROOT / "examples" / "train_digits.py"), "--distributed", "--smoke",
                 "--device", "cuda", "--out", str(tmp_path)], 300,
                PYTHONPATH=os.pathsep.join([str(EMULATOR), str(ROOT)]),
                CUPY_EMULATOR_DEVICE_COUNT="2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("final test accuracy:") == 1, proc.stdout


def test_launcher_passes_arguments_through_to_mpiexec() -> None:
    mpiexec = find_mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec: pip install 'tensorgrad-engine[mpi]'")
    cmd, _ = command(["-n", "3", "--hosts", "a,b", "train.py", "--distributed", "-n", "5"])
    assert cmd == [mpiexec, "-n", "3", "-hosts", "a,b", sys.executable, "train.py",
                   "--distributed", "-n", "5"]
    cmd, _ = command(["-n", "2", "-m", "pkg.mod", "x"])
    assert cmd == [mpiexec, "-n", "2", sys.executable, "-m", "pkg.mod", "x"]
    with pytest.raises(SystemExit):
        command(["-n", "0", "train.py"])


def test_launcher_shares_the_cores_between_ranks_unless_told(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """N ranks each with a BLAS thread per core oversubscribe the machine (a small MLP's step
    went from 2 ms to 77 ms on 2 ranks of 2 cores), so the launcher sets OMP_NUM_THREADS."""
    if find_mpiexec() is None:
        pytest.skip("no mpiexec: pip install 'tensorgrad-engine[mpi]'")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert command(["-n", "2", "t.py"])[1] == {"OMP_NUM_THREADS": "4"}
    assert command(["-n", "16", "t.py"])[1] == {"OMP_NUM_THREADS": "1"}
    assert command(["-n", "4", "--hosts", "a,b", "t.py"])[1] == {"OMP_NUM_THREADS": "4"}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert command(["-n", "2", "t.py"])[1] == {}


# ---- in this process (no MPI) ----------------------------------------------------------------
def test_without_a_process_group_every_call_says_to_initialize_one() -> None:
    assert not dist.is_initialized()
    for call in (dist.get_rank, dist.get_world_size, dist.barrier,
                 lambda: dist.all_reduce(tg.ones(2))):
        with pytest.raises(ValueError, match="init_process_group"):  # as torch.distributed
            call()
    with pytest.raises(ValueError, match="init_process_group"):
        DistributedDataParallel(tg.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"backend must be 'mpi', 'nccl' or None, got 'gloo'"):
        dist.init_process_group("gloo")
    with pytest.raises(ValueError, match="timeout must be positive"):
        dist.init_process_group(timeout=0)


def test_importing_tensorgrad_loads_no_transport() -> None:
    """mpi4py (whose import initializes MPI) is loaded by init_process_group, never before."""
    code = ("import sys, tensorgrad as tg; tg.nn.parallel.DistributedDataParallel; "
            "tg.data.DistributedSampler(range(4), 2, 0); assert 'mpi4py' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_missing_mpi4py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    assert not dist.is_available()
    with pytest.raises(ImportError, match=r"pip install 'tensorgrad-engine\[mpi\]'"):
        dist.init_process_group()


def _shares(n: int, replicas: int, **kwargs) -> list[list[int]]:
    data = list(range(n))
    return [list(DistributedSampler(data, num_replicas=replicas, rank=r, **kwargs))
            for r in range(replicas)]


def test_distributed_sampler_splits_padded_or_cut_as_torch() -> None:
    assert _shares(10, 3, shuffle=False) == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]
    assert _shares(10, 3, shuffle=False, drop_last=True) == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert _shares(2, 5, shuffle=False) == [[0], [1], [0], [1], [0]]
    shuffled = _shares(11, 2, seed=3)
    assert sorted(shuffled[0] + shuffled[1][:-1]) == list(range(11))
    assert shuffled != _shares(11, 2, shuffle=False)
    assert _shares(11, 2, seed=3) == shuffled  # the same order on every rank, every time
    torch = pytest.importorskip("torch")
    for n, replicas, drop_last in [(10, 3, False), (10, 3, True), (7, 4, False), (2, 5, False)]:
        ours = _shares(n, replicas, shuffle=False, drop_last=drop_last)
        theirs = [list(torch.utils.data.DistributedSampler(
            range(n), num_replicas=replicas, rank=r, shuffle=False, drop_last=drop_last))
            for r in range(replicas)]
        assert ours == theirs, (n, replicas, drop_last)


def test_distributed_sampler_set_epoch_reorders_and_feeds_a_dataloader() -> None:
    x = tg.arange(12, dtype=tg.float32)
    sampler = DistributedSampler(TensorDataset(x), num_replicas=2, rank=1, seed=5)
    loader = DataLoader(TensorDataset(x), batch_size=4, sampler=sampler)
    assert len(sampler) == 6 and len(loader) == 2
    first = np.concatenate([b[0].numpy() for b in loader])
    assert first.tolist() == [float(i) for i in sampler]
    sampler.set_epoch(1)
    second = np.concatenate([b[0].numpy() for b in loader])
    assert second.tolist() != first.tolist()
    sampler.set_epoch(0)
    assert np.concatenate([b[0].numpy() for b in loader]).tolist() == first.tolist()


def test_distributed_sampler_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"invalid rank 2, rank should be in the interval "
                                         r"\[0, 1\]"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be a positive int, got 0"):
        DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(ValueError, match="pass num_replicas and rank"):
        DistributedSampler(range(4))
