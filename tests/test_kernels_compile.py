"""Every entry of the CUDA kernel table compiles with NVRTC, no GPU needed.

For each `_KERNELS` entry and each of float, double and half, a stub kernel declares the
entry's parameters with concrete types the way CuPy's ElementwiseKernel does (`typedef` of T
and S at file scope, `const T &x` per input element, `T &y` per output, scalars as kernel
parameters, `raw` as pointers, `i` the element index), runs the body, and is compiled after
common.cuh and the family file. Half uses a stand-in with the conversions of CuPy's float16
class (implicit from float, explicit from double, `operator float`), so overload resolution
is checked as CuPy will see it. NVRTC comes from the nvidia-cuda-nvrtc wheel, loaded by ctypes.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
from pathlib import Path

import pytest

from tensorgrad.backend._cuda_kernels import _KERNELS, _preamble

ARCH = "compute_90"  # H100

# Only the conversions matter for compiling: the stand-in stores a float.
HALF_STANDIN = """
class float16 {
  float data_;
 public:
  __device__ float16() {}
  __device__ float16(float v) : data_(v) {}
  explicit __device__ float16(double v) : data_(float(v)) {}
  explicit __device__ float16(int v) : data_(float(v)) {}
  explicit __device__ float16(bool v) : data_(float(v)) {}
  __device__ operator float() const { return data_; }
};
"""
CTYPES = {"float64": "double", "int64": "long long", "bool": "bool"}
STORAGE = {"float": "float", "double": "double", "half": "float16"}


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
    return ctypes.CDLL(str(path))


def compile_source(nvrtc: ctypes.CDLL, source: str, name: str) -> None:
    """Compile to PTX for ARCH; raise AssertionError with NVRTC's log naming `name`."""
    prog = ctypes.c_void_p()
    check = _checker(nvrtc)
    check(nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source.encode(),
                                   f"{name}.cu".encode(), 0, None, None), "create")
    try:
        opts = [b"--std=c++17", f"--gpu-architecture={ARCH}".encode()]
        result = nvrtc.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        size = ctypes.c_size_t()
        check(nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "log size")
        log = ctypes.create_string_buffer(size.value)
        check(nvrtc.nvrtcGetProgramLog(prog, log), "log")
        if result != 0:
            raise AssertionError(f"NVRTC failed to compile {name}:\n{log.value.decode()}")
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))


def _checker(nvrtc: ctypes.CDLL):
    nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p

    def check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"nvrtc {what}: {nvrtc.nvrtcGetErrorString(status).decode()}")

    return check


def _param(decl: str, types: dict[str, str], is_input: bool) -> tuple[str, str]:
    """(kernel parameter, per-element line) for one CuPy parameter declaration: placeholder
    types are arrays (raw ones indexed by hand), concrete types are scalars passed by value."""
    words = decl.split()
    kind, name = words[-2], words[-1]
    if kind not in types:
        if words[0] == "raw":  # a device scalar: a 1-element array read as name[0]
            return f"const {CTYPES[kind]}* {name}", ""
        return f"{CTYPES[kind]} {name}", ""
    qual = "const " if is_input else ""
    if words[0] == "raw":
        return f"{qual}{types[kind]}* {name}", ""
    return f"{qual}{types[kind]}* _raw_{name}", f"  {qual}{types[kind]} &{name} = _raw_{name}[i];\n"


def make_stub(key: str, compute: str) -> str:
    """Source of one kernel: file-scope typedefs, the preamble, the stub running the body."""
    source, ins, outs, body = _KERNELS[key]
    storage = STORAGE[compute]
    types = {"T": storage, "S": "double" if compute == "double" else "float", "I": "long long"}
    params, lines = [], []
    for decls, is_input in ((ins, True), (outs, False)):
        for decl in decls.split(","):
            param, line = _param(decl.strip(), types, is_input)
            params.append(param)
            lines.append(line)
    head = HALF_STANDIN if compute == "half" else ""
    typedefs = "".join(f"typedef {t} {k};\n" for k, t in types.items())
    return (f"{head}{typedefs}{_preamble(source)}\n"
            f"extern \"C\" __global__ void tg_{key}({', '.join(params)}, long long _size) {{\n"
            f"  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
            f"  if (i >= _size) return;\n"
            f"{''.join(lines)}  {body};\n}}\n")


@pytest.mark.parametrize("compute", ["float", "double", "half"])
@pytest.mark.parametrize("key", sorted(_KERNELS))
def test_kernel_compiles(nvrtc, key, compute):
    compile_source(nvrtc, make_stub(key, compute), f"tg_{key}<{compute}>")


def test_a_broken_kernel_fails_with_the_log_naming_it(nvrtc, monkeypatch):
    source, ins, outs, _ = _KERNELS["tanh_fwd"]
    monkeypatch.setitem(_KERNELS, "tanh_fwd", (source, ins, outs, "y = tg_tanh(x) +"))
    with pytest.raises(AssertionError, match=r"tg_tanh_fwd<float>(.|\n)*error"):
        compile_source(nvrtc, make_stub("tanh_fwd", "float"), "tg_tanh_fwd<float>")


def test_an_ambiguous_half_call_fails(nvrtc):
    # The reason for the half stand-in: a float16 argument next to a double one is ambiguous
    # between the float and double overloads, which is what tg_real<T> casts avoid.
    stub = (HALF_STANDIN + "typedef float16 T;\n" + _preamble("activations.cuh")
            + "extern \"C\" __global__ void k(const T* x, double s, T* y) {\n"
            + "  y[0] = tg_leaky_relu(x[0], s);\n}\n")
    with pytest.raises(AssertionError, match="ambiguous|more than one"):
        compile_source(nvrtc, stub, "ambiguous")


def test_an_error_in_a_cuh_file_names_the_file_and_line(nvrtc):
    lines = (Path(__file__).parents[1] / "kernels" / "optimizers.cuh").read_text().splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if "p *= decay;" in text)
    stub = make_stub("adam_step", "float").replace("p *= decay;", "p *= decay")
    # NVRTC reports a missing ';' on the line where it notices it: this one or the next.
    with pytest.raises(AssertionError, match=rf"optimizers\.cuh\(({line}|{line + 1})\): error"):
        compile_source(nvrtc, stub, "tg_adam_step<float>")
