"""The CUDA backend's own duties: saying why CUDA is unusable (checked everywhere with a
stand-in CuPy that has a GPU but lacks NVRTC, the CUDA headers or cuBLAS), and, on a CUDA
device, scatter-add without CuPy's deprecated API, a device-wide synchronize, random
generators that do not pile up."""

from __future__ import annotations

import gc
import importlib.util
import os
import re
import subprocess
import sys
import weakref
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad.backend import _cuda

ROOT = Path(__file__).resolve().parent.parent

# A CuPy with one GPU and a driver, lacking what TG_FAKE_MISSING names. The messages are the
# kind CuPy gives.
FAKE_CUPY = '''
import os

MISSING = os.environ.get("TG_FAKE_MISSING", "nvrtc")
__version__ = "14.2.0"


class _Namespace:
    pass


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1


class _Nvrtc:
    @staticmethod
    def getVersion():
        if MISSING == "nvrtc":
            raise OSError("libnvrtc.so.12: cannot open shared object file")
        return (12, 9)


class Device:
    def __init__(self, index=0):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @property
    def cublas_handle(self):
        raise ImportError("libcublas.so.12: cannot open shared object file")


class ElementwiseKernel:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args):
        if MISSING == "headers":
            raise RuntimeError("Failed to find CUDA headers (cuda_fp16.h)")


def zeros(shape, dtype=None):
    return None


cuda = _Namespace()
cuda.runtime, cuda.nvrtc, cuda.Device = _Runtime, _Nvrtc, Device
'''

MISSING = {  # TG_FAKE_MISSING: what the reason must say
    "nvrtc": r"NVRTC, CUDA's runtime compiler, cannot be loaded \(libnvrtc\.so\.12",
    "headers": r"CuPy cannot compile a kernel \(RuntimeError: Failed to find CUDA headers",
    "cublas": r"cuBLAS cannot be loaded \(ImportError: libcublas\.so\.12",
}


@pytest.fixture
def fake_cupy_dir(tmp_path: Path) -> Path:
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text(FAKE_CUPY)
    return tmp_path


@pytest.mark.parametrize("missing", sorted(MISSING))
def test_probe_names_what_is_missing(missing, fake_cupy_dir, monkeypatch):
    monkeypatch.setenv("TG_FAKE_MISSING", missing)
    spec = importlib.util.spec_from_file_location("cupy", fake_cupy_dir / "cupy" / "__init__.py")
    fake: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    reason = _cuda.probe()
    assert reason is not None
    assert re.search(MISSING[missing], reason), reason
    assert "tensorgrad-engine[cuda12]" in reason and "ctk" in reason


def test_info_names_what_is_missing(fake_cupy_dir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake_cupy_dir), str(ROOT)]),
           "TG_FAKE_MISSING": "cublas", "TENSORGRAD_DEVICE": "cpu"}
    done = subprocess.run([sys.executable, "-m", "tensorgrad", "info"], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rows = dict(line.split(None, 1) for line in done.stdout.splitlines() if line.strip())
    assert rows["backends"] == "cpu (NumPy)"
    assert rows["CUDA"].startswith("unusable: cuBLAS cannot be loaded (ImportError: libcublas")


def _cuda_only(device: str) -> None:
    if device != "cuda":
        pytest.skip("a CUDA backend duty")


def test_repeated_indices_add_their_gradients(device):
    # Through Backend.scatter_add; CuPy 14.2's cupyx.scatter_add warned (an error here).
    x = tg.tensor([1.0, 2.0, 3.0, 4.0, 5.0], device=device, requires_grad=True)
    w = tg.tensor([0.5, -1.0, 2.0, 3.0], device=device)
    (x[[0, 3, 0, 4]] * w).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.5, 0.0, 0.0, -1.0, 3.0])


def test_synchronize_waits_for_the_whole_device(device, monkeypatch):
    _cuda_only(device)
    backend = tg.backend.get_backend(tg.Device(device))
    real = backend._device_ctx
    calls = []

    class Recorder:
        def __enter__(self):
            return real.__enter__()

        def __exit__(self, *exc):
            return real.__exit__(*exc)

        def synchronize(self):
            calls.append("device")
            real.synchronize()

    monkeypatch.setattr(backend, "_device_ctx", Recorder())
    stream_sync = type(backend.xp.cuda.get_current_stream()).synchronize
    monkeypatch.setattr(type(backend.xp.cuda.get_current_stream()), "synchronize",
                        lambda self: (calls.append("stream"), stream_sync(self))[1])
    tg.cuda.synchronize()
    assert calls == ["device"]


def test_manual_seed_drops_the_old_generator_unless_a_graph_holds_it(device):
    _cuda_only(device)
    backend = tg.backend.get_backend(tg.Device(device))
    tg.manual_seed(5)
    first = tg.rand(6, device=device).numpy()
    old = weakref.ref(backend.random())
    tg.manual_seed(5)
    np.testing.assert_array_equal(tg.rand(6, device=device).numpy(), first)
    gc.collect()
    assert old() is None  # kept before: one more generator (12 MiB on an H200) per call
    held = weakref.ref(backend.random())
    graph = tg.cuda.CUDAGraph(device)
    with graph.capture():
        draw = tg.rand(6, device=device)
    graph.replay()
    tg.manual_seed(6)
    gc.collect()
    assert held() is not None  # the graph's replays still draw from it
    graph.replay()
    assert np.isfinite(draw.numpy()).all()
    del graph, draw
    gc.collect()
    assert held() is None


def test_cuda_extras_install_what_cupy_needs_to_compile_and_multiply():
    # cupy-cuda12x alone has no NVRTC, cuBLAS or CUDA headers; its "ctk" extra (CuPy 14)
    # installs them (cuda-toolkit[cublas,cudart,nvrtc,...]).
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for extra, major in (("cuda12", 12), ("cuda13", 13)):
        (cupy,) = [r for r in map(Requirement, project["optional-dependencies"][extra])
                   if r.name == f"cupy-cuda{major}x"]
        assert "ctk" in cupy.extras, extra
        assert not cupy.specifier.contains("13.6.0") and cupy.specifier.contains("14.2.0")
