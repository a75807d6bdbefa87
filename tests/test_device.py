"""Devices: parsing, the default device (set_default_device, TENSORGRAD_DEVICE), the errors
for an unusable or mismatched device, and a CPU run where `import cupy` fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import cuda_unusable_reason

import tensorgrad as tg
import tensorgrad._device as _device_module

REPO = Path(__file__).resolve().parents[1]
needs_cuda = pytest.mark.skipif(cuda_unusable_reason() is not None,
                                reason=f"CUDA not usable here: {cuda_unusable_reason()}")


@pytest.fixture
def fresh_default(monkeypatch: pytest.MonkeyPatch):
    """Forget the cached TENSORGRAD_DEVICE default and any set_default_device call."""
    monkeypatch.setattr(_device_module, "_env_default", None)
    token = _device_module._default.set(None)
    yield monkeypatch
    _device_module._default.reset(token)


@pytest.mark.parametrize("spec, type_, index, text", [
    ("cpu", "cpu", None, "cpu"), ("CPU", "cpu", None, "cpu"), ("cpu:0", "cpu", None, "cpu"),
    ("cuda", "cuda", 0, "cuda:0"), ("cuda:0", "cuda", 0, "cuda:0"),
    (" cuda:3 ", "cuda", 3, "cuda:3"),
])
def test_device_parsing(spec: str, type_: str, index: int | None, text: str) -> None:
    d = tg.Device(spec)
    assert (d.type, d.index, str(d)) == (type_, index, text)
    assert d == text and d == tg.Device(d) and hash(d) == hash(tg.Device(text))
    assert tg.device(spec) == d


def test_device_repr() -> None:
    assert repr(tg.Device("cpu")) == "device(type='cpu')"
    assert repr(tg.Device("cuda:1")) == "device(type='cuda', index=1)"
    assert tg.Device("cpu") != "cuda" and tg.Device("cpu") != "nonsense"


@pytest.mark.parametrize("spec, error, match", [
    ("tpu", ValueError, r"unknown device 'tpu'.*'cuda:N'.*'auto'"),
    ("cuda:x", ValueError, r"cuda:N"),
    ("cuda:-1", ValueError, r"cuda:N"),
    ("cpu:1", ValueError, r"CPU has no index"),
    (0, TypeError, r"device must be a string"),
])
def test_bad_device_names(spec: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        tg.Device(spec)
    with pytest.raises(error, match=match):
        tg.zeros(1, device=spec)


def test_auto_picks_cuda_only_when_usable() -> None:
    expected = "cpu" if cuda_unusable_reason() else "cuda"
    assert tg.Device("auto").type == expected
    assert tg.zeros(2, device="auto").device.type == expected


def test_default_device_is_cpu_and_can_be_set(fresh_default: pytest.MonkeyPatch) -> None:
    fresh_default.delenv("TENSORGRAD_DEVICE", raising=False)
    assert tg.get_default_device() == "cpu"
    tg.set_default_device("auto")
    assert tg.get_default_device() == tg.Device("auto")
    assert tg.ones(1).device == tg.Device("auto")
    tg.set_default_device(None)
    assert tg.get_default_device() == "cpu"


@pytest.mark.parametrize("value", ["cpu", "auto", "CPU"])
def test_environment_variable_sets_default(value: str,
                                           fresh_default: pytest.MonkeyPatch) -> None:
    fresh_default.setenv("TENSORGRAD_DEVICE", value)
    assert tg.get_default_device() == tg.Device(value)
    assert tg.tensor([1.0]).device == tg.Device(value)


def test_environment_variable_is_validated(fresh_default: pytest.MonkeyPatch) -> None:
    fresh_default.setenv("TENSORGRAD_DEVICE", "gpu0")
    with pytest.raises(ValueError, match=r"TENSORGRAD_DEVICE='gpu0'.*unknown device"):
        tg.get_default_device()
    with pytest.raises(ValueError, match="TENSORGRAD_DEVICE"):
        tg.zeros(1)


def test_unusable_cuda_says_why_and_how_to_fall_back() -> None:
    # In a process where CuPy cannot be imported, so it runs whatever this machine has.
    result = _run_without_cupy("""
        import re
        import tensorgrad as tg

        attempts = (lambda: tg.zeros(1, device="cuda"), lambda: tg.tensor([1.0]).cuda(),
                    lambda: tg.tensor([1.0]).to("cuda:0"),
                    lambda: tg.set_default_device("cuda"))
        for attempt in attempts:
            try:
                attempt()
            except tg.DeviceUnavailableError as err:
                assert re.search(r"(?s)CuPy is not installed.*device='auto'", str(err)), err
            else:
                raise AssertionError("a CUDA tensor without CuPy")
        assert tg.get_default_device() == "cpu"  # the failed set_default_device changed nothing
        assert not tg.cuda.is_available()
        assert tg.cuda.device_count() == 0
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@needs_cuda
def test_cuda_is_available_where_usable() -> None:
    assert tg.cuda.is_available() and tg.cuda.device_count() >= 1
    with pytest.raises(tg.DeviceUnavailableError, match="does not exist"):
        tg.zeros(1, device=f"cuda:{tg.cuda.device_count()}")


@needs_cuda
@pytest.mark.parametrize("op", [
    lambda a, b: a + b, lambda a, b: a * b, lambda a, b: tg.maximum(a, b),
    lambda a, b: a @ b.reshape(2, 1), lambda a, b: tg.cat([a, b]),
    lambda a, b: tg.where(a > 0, a, b), lambda a, b: a.__iadd__(b),
    lambda a, b: a + b._data,  # a raw GPU array as an operand: backend.array_device says where
], ids=["add", "mul", "maximum", "matmul", "cat", "where", "iadd", "add_gpu_array"])
def test_mixing_devices_names_both(op) -> None:
    a = tg.ones(2)
    b = tg.ones(2, device="cuda")
    with pytest.raises(tg.DeviceMismatchError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
        op(a, b)


@needs_cuda
def test_tensors_move_between_devices_with_gradients() -> None:
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x.cuda() * 3.0
    assert y.device == "cuda:0"
    y.cpu().sum().backward()
    assert x.grad.device == "cpu" and x.grad.tolist() == [3.0, 3.0]
    np.testing.assert_array_equal(np.asarray(y.detach().cpu()), [3.0, 6.0])


_BLOCK_CUPY = textwrap.dedent("""
    import importlib.abc, sys

    class BlockCupy(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "cupy" or name.startswith(("cupy.", "cupyx")):
                raise ImportError(f"{name} is blocked for this test")
            return None

    sys.meta_path.insert(0, BlockCupy())
""")


def _run_without_cupy(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.pop("TENSORGRAD_DEVICE", None)
    return subprocess.run([sys.executable, "-c", _BLOCK_CUPY + textwrap.dedent(code)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_import_works_and_does_not_import_cupy() -> None:
    result = _run_without_cupy("""
        import tensorgrad as tg
        assert "cupy" not in sys.modules, "import tensorgrad imported cupy"
        x = tg.tensor([1.0, -2.0], requires_grad=True)
        (x.relu() * x).sum().backward()
        assert x.grad.tolist() == [2.0, 0.0]
        assert "cupy" not in sys.modules
        assert not tg.cuda.is_available()
        assert tg.Device("auto").type == "cpu"
        try:
            tg.zeros(1, device="cuda")
        except tg.DeviceUnavailableError as err:
            assert "CuPy is not installed" in str(err) and "device='auto'" in str(err), err
        else:
            raise AssertionError("device='cuda' worked without CuPy")
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_cpu_engine_suite_passes_with_cupy_blocked() -> None:
    # The engine's tests (less the slow 100k chain) in a process where `import cupy` fails.
    result = _run_without_cupy("""
        import pytest
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "tests/test_engine.py",
                              "-k", "not 100k"]))
    """, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "passed" in result.stdout and "failed" not in result.stdout


def test_backward_on_a_second_gpu_makes_its_seed_gradient_there() -> None:
    # On two (emulated) GPUs with cuda:0 current, backward() of a cuda:1 scalar created the
    # seed gradient dL/dL = 1 on cuda:0 and the first backward op failed on the mismatch.
    emulator = REPO / "tests" / "cuda_emulator"
    if not (emulator / "cupy" / "__init__.py").is_file():
        pytest.skip("the emulated CuPy (tests/cuda_emulator) is not in this checkout")
    env = {**os.environ, "PYTHONPATH": f"{emulator}{os.pathsep}{REPO}",
           "CUPY_EMULATOR_DEVICE_COUNT": "2"}
    code = textwrap.dedent("""
        import tensorgrad as tg
        x = tg.tensor([1.0, 2.0, 3.0], device="cuda:1", requires_grad=True)
        (x * x).sum().backward()
        assert x.grad.device == tg.Device("cuda:1"), x.grad.device
        print(x.grad.tolist())
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[2.0, 4.0, 6.0]"
