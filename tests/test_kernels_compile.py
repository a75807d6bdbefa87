"""Every CUDA kernel compiles with NVRTC for sm_90 from the exact source CuPy would compile on
its first call, no GPU needed.

CuPy imports without a GPU, and its code generator runs without one: a subprocess builds each
kernel as tensorgrad does (CudaKernels, so the same preamble from kernels/*.cuh, name and
body), asks CuPy for the kernel's code for given argument types and layouts
(`_kernel._get_elementwise_kernel_code`, what ElementwiseKernel.__call__ generates), and hands
it to `core.compile_with_cache`, which prepends CuPy's headers and assembles its compiler
options; the call into the compiler is intercepted, so what comes back is the source and the
options CuPy passes to NVRTC (to which CuPy then adds -ftz=true, as here). The RawModule of the
row kernels goes the same way. Each source is then compiled here for float16, float32 and
float64, for contiguous arrays (1-d after CuPy merges dims, 32-bit indices) and strided ones
(2-d, 64-bit indices). The subprocess runs without tests/cuda_emulator on its path, so the
real CuPy (cupy-cuda13x, a dev dependency) generates the code even in the emulated run.

NVRTC comes from the nvidia-cuda-nvrtc wheel and the CUDA headers CuPy includes (cuda_fp16.h)
from nvidia-cuda-runtime; a compiled source is remembered by hash in a cache folder, so the
second run of the suite (emulated CUDA) compiles nothing.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tensorgrad.backend._cuda_kernels import _KERNELS

ROOT = Path(__file__).resolve().parents[1]
ARCH = "sm_90"  # H100 and H200
DTYPES = ("float16", "float32", "float64")
LAYOUTS = ("contiguous", "strided")
# Entries that must not compile, for the tests of the failure paths.
EXTRA = {
    "broken": ("activations.cuh", "T x", "T y", "y = tg_tanh(x) +"),
    "mixed": ("activations.cuh", "T x, float64 s", "T y", "y = tg_leaky_relu(x, s)"),
}
CACHE = Path(os.environ.get("TENSORGRAD_NVRTC_CHECK_CACHE",
                            Path(tempfile.gettempdir()) / "tg-nvrtc-check"))

# Run with the real CuPy. argv[1]: JSON {key: [source, in_params, out_params, body]} of extra
# table entries; prints a JSON list of {"name", "source", "options", "names"}.
GENERATOR = r'''
import json
import sys

import numpy as np
import cupy
from cupy import cuda
from cupy._core import _carray, _kernel, _scalar, core

from tensorgrad.backend import _cuda_kernels


class Captured(Exception):
    pass


def intercept(source, options=(), **kwargs):
    raise Captured(source, options, kwargs.get("name_expressions"))


cuda.compiler._compile_module_with_cache = intercept


def what_cupy_compiles(compile_call):
    try:
        compile_call()
    except Captured as captured:
        source, options, names = captured.args
        # _compile_with_cache_cuda adds -ftz=true to every compile.
        return {"source": source, "options": [*options, "-ftz=true"], "names": list(names or ())}
    raise AssertionError("CuPy did not reach its compiler")


NDARRAY, INDEXER, SCALAR = 1, 2, 3  # cupy/_core/_kernel.pxd, enum _ArgKind
LAYOUTS = {"contiguous": (1, True, True), "strided": (2, False, False)}
PLACEHOLDERS = {"I": np.dtype(np.int64), "S": np.dtype(np.float64)}

_cuda_kernels._KERNELS.update(json.loads(sys.argv[1]))
kernels = _cuda_kernels.CudaKernels()
found = []
for key in sorted(_cuda_kernels._KERNELS):
    kernel = getattr(kernels, "_" + key)  # the ElementwiseKernel tensorgrad builds
    for dtype in map(np.dtype, ("float16", "float32", "float64")):
        def bound(p):
            return p.dtype if p.dtype is not None else PLACEHOLDERS.get(p.ctype, dtype)

        # Arrays (placeholders and raw) have dtypes, scalars None, as in ElementwiseKernel.
        ins = tuple(bound(p) if p.raw or p.dtype is None else None for p in kernel.in_params)
        outs = tuple(bound(p) for p in kernel.out_params)
        in_types, out_types, type_map = kernel._decide_params_type(ins, outs)
        params = kernel.in_params + kernel.out_params
        for layout, (ndim, contiguous, index_32) in LAYOUTS.items():
            infos = []
            for p, t in zip(params, in_types + out_types):
                if p.raw:  # 1-element arrays (learning rate, step, scale), never reduced
                    infos.append(_kernel._ArgInfo(NDARRAY, cupy.ndarray, t, 1, True, True))
                elif p.dtype is None:
                    infos.append(_kernel._ArgInfo(NDARRAY, cupy.ndarray, t, ndim, contiguous,
                                                  index_32))
                else:
                    infos.append(_kernel._ArgInfo(SCALAR, _scalar.CScalar, t, 0, True, True))
            infos.append(_kernel._ArgInfo(INDEXER, _carray.Indexer, None, ndim, True, index_32))
            code = _kernel._get_elementwise_kernel_code(
                tuple(infos), type_map, kernel.params, kernel.operation, kernel.name,
                kernel.preamble, **kernel.kwargs)
            options = kernel.kwargs.get("options", ())
            found.append({"name": f"{kernel.name}<{dtype.name},{layout}>",
                          **what_cupy_compiles(lambda: core.compile_with_cache(code, options))})

# cupy.RawModule, compiled as _get_raw_module does (raw.pyx); translate_cucomplex and jitify
# are private there, and tensorgrad leaves them at their default, False.
module = kernels._row_module
found.append({"name": "row kernels (RawModule)", **what_cupy_compiles(
    lambda: core.compile_with_cache(
        module.code, module.options, prepend_cupy_headers=False, backend=module.backend,
        translate_cucomplex=False, enable_cooperative_groups=module.enable_cooperative_groups,
        name_expressions=module.name_expressions, jitify=False))})
json.dump(found, sys.stdout)
'''


def generate(extra: dict[str, tuple[str, str, str, str]] | None = None) -> list[dict[str, Any]]:
    """What CuPy would compile for every table entry (and `extra` ones), from a subprocess
    that imports the real CuPy."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # not tests/cuda_emulator
    done = subprocess.run([sys.executable, "-c", GENERATOR, json.dumps(extra or {})],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    if done.returncode != 0:
        raise AssertionError(f"CuPy's code generator failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def _real_cupy_reason() -> str | None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", "import cupy._core._kernel"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    if done.returncode == 0:
        return None
    return (f"CuPy is not importable without the emulator ({done.stderr.strip().splitlines()[-1]})"
            "; the dev extra installs cupy-cuda13x")


def _find_libnvrtc() -> Path | None:
    try:
        dist = importlib.metadata.distribution("nvidia-cuda-nvrtc")
    except importlib.metadata.PackageNotFoundError:
        return None
    libs = [f for f in dist.files or () if f.name.startswith("libnvrtc.so")]
    return Path(dist.locate_file(libs[0])).resolve() if libs else None


@pytest.fixture(scope="module")
def nvrtc() -> ctypes.CDLL:
    path = _find_libnvrtc()
    if path is None:
        pytest.skip("the nvidia-cuda-nvrtc wheel is not installed (pip install "
                    "nvidia-cuda-nvrtc): cannot compile kernels/ without a CUDA toolkit")
    lib = ctypes.CDLL(str(path))
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    return lib


@pytest.fixture(scope="module")
def sources(nvrtc) -> dict[str, dict[str, Any]]:
    if (reason := _real_cupy_reason()) is not None:
        pytest.skip(reason)
    return {entry["name"]: entry for entry in generate(EXTRA)}


def compile_source(nvrtc: ctypes.CDLL, entry: dict[str, Any]) -> None:
    """Compile one entry for ARCH; raise AssertionError with NVRTC's log naming the kernel."""
    options = [*entry["options"], f"--gpu-architecture={ARCH}"]

    def check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"nvrtc {what}: {nvrtc.nvrtcGetErrorString(status).decode()}")

    prog = ctypes.c_void_p()
    check(nvrtc.nvrtcCreateProgram(ctypes.byref(prog), entry["source"].encode(), b"kernel.cu",
                                   0, None, None), "create")
    try:
        for name in entry["names"]:
            check(nvrtc.nvrtcAddNameExpression(prog, name.encode()), "name expression")
        encoded = [o.encode() for o in options]
        result = nvrtc.nvrtcCompileProgram(prog, len(encoded),
                                           (ctypes.c_char_p * len(encoded))(*encoded))
        size = ctypes.c_size_t()
        check(nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "log size")
        log = ctypes.create_string_buffer(size.value)
        check(nvrtc.nvrtcGetProgramLog(prog, log), "log")
        if result != 0:
            raise AssertionError(f"NVRTC failed to compile {entry['name']}:\n"
                                 f"{log.value.decode()}")
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))


def compile_cached(nvrtc: ctypes.CDLL, entry: dict[str, Any]) -> None:
    """compile_source, skipped for a source, option list and NVRTC that compiled before."""
    major, minor = ctypes.c_int(), ctypes.c_int()
    nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    key = hashlib.sha256(json.dumps([entry["source"], entry["options"], entry["names"], ARCH,
                                     major.value, minor.value]).encode()).hexdigest()
    done = CACHE / key
    if done.exists():
        return
    compile_source(nvrtc, entry)
    CACHE.mkdir(parents=True, exist_ok=True)
    done.touch()


def test_every_kernel_compiles_from_cupys_source(nvrtc, sources):
    expected = {f"tg_{key}<{dtype},{layout}>" for key in [*_KERNELS, *EXTRA] for dtype in DTYPES
                for layout in LAYOUTS} | {"row kernels (RawModule)"}
    assert set(sources) == expected
    ours = [e for name, e in sources.items() if not name.startswith(("tg_broken", "tg_mixed"))]
    # NVRTC releases the GIL: two threads use both cores of a small CI machine.
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [err for err in pool.map(lambda e: _failure(nvrtc, e), ours) if err]
    assert not failures, "\n\n".join(failures)


def _failure(nvrtc: ctypes.CDLL, entry: dict[str, Any]) -> str | None:
    try:
        compile_cached(nvrtc, entry)
    except AssertionError as err:
        return str(err)
    return None


def test_the_source_is_cupys_own(sources):
    entry = sources["tg_adam_step<float16,strided>"]
    source = entry["source"]
    # CuPy's headers and its float16 class, the family file after common.cuh, CuPy's
    # parameters (CArray with 64-bit indices for strided layouts) and its loop.
    assert source.index("#include <cupy/carray.cuh>") < source.index('#line 1 "common.cuh"')
    assert source.index('#line 1 "common.cuh"') < source.index('#line 1 "optimizers.cuh"')
    assert "typedef float16 T;" in source and "CArray<float16, 2, 0, 0> _raw_g" in source
    assert "CUPY_FOR(i, _ind.size())" in source and "T &p = _raw_p[_ind.get()];" in source
    assert "--std=c++17" in entry["options"] and "-ftz=true" in entry["options"]
    assert any(o.startswith("-I") and o.endswith("include") for o in entry["options"])


def test_a_broken_kernel_fails_with_the_log_naming_it(nvrtc, sources):
    with pytest.raises(AssertionError, match=r"tg_broken<float32,contiguous>(.|\n)*error"):
        compile_source(nvrtc, sources["tg_broken<float32,contiguous>"])


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_float_next_to_a_double_is_ambiguous(nvrtc, sources, dtype):
    # Why the bodies cast scalars with tg_real<T>: with a float (or CuPy's float16, which
    # converts to float) and a double, the float and the double overload each need one
    # conversion. Only the double kernel compiles as written.
    compile_source(nvrtc, sources["tg_mixed<float64,contiguous>"])
    with pytest.raises(AssertionError, match="ambiguous|more than one"):
        compile_source(nvrtc, sources[f"tg_mixed<{dtype},contiguous>"])


def test_an_error_in_a_cuh_file_names_the_file_and_line(nvrtc, sources):
    lines = (ROOT / "kernels" / "optimizers.cuh").read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if "p = tg_mul(p, decay);" in text)
    entry = dict(sources["tg_adam_step<float32,contiguous>"])
    entry["source"] = entry["source"].replace("p = tg_mul(p, decay);", "p = tg_mul(p, decay)")
    # NVRTC reports a missing ';' on the line where it notices it: this one or the next.
    with pytest.raises(AssertionError, match=rf"optimizers\.cuh\(({line}|{line + 1})\): error"):
        compile_source(nvrtc, entry)


def test_adams_element_kernel_only_reads_its_per_step_scalars(sources):
    # The step size and bias corrections come from the one-thread adam_scalars kernel; the
    # element kernel computed two double pows per element before.
    kernel = sources["tg_adam_step<float32,contiguous>"]["source"].split('extern "C"')[1]
    assert "scalars[0]" in kernel and "scalars[1]" in kernel and "scalars[2]" in kernel
    assert "pow" not in kernel and "tg_adam_step_size" not in kernel
    scalars = sources["tg_adam_scalars<float64,contiguous>"]["source"].split('extern "C"')[1]
    assert "step[0] += 1; scalars[0] = tg_adam_step_size(lr[0], beta1, step[0])" in scalars
