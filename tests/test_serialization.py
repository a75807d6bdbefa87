"""tg.save / tg.load: round trips, atomic writes, refusal of foreign, broken or pickled files."""

from __future__ import annotations

import json
import os
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import tensorgrad as tg
from tensorgrad import serialization

DTYPES = [tg.float16, tg.float32, tg.float64, tg.int32, tg.int64, tg.bool]


def _sample(dtype: tg.DType, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if dtype is tg.bool:
        return rng.random(shape) > 0.5
    return (rng.standard_normal(shape) * 100).astype(dtype.np)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(), (1,), (3, 4), (2, 0, 3)], ids=str)
def test_every_dtype_and_shape_round_trips_bitwise(tmp_path, device, rng, dtype, shape):
    values = _sample(dtype, shape, rng)
    path = tmp_path / "t.tg"
    tg.save({"x": tg.tensor(values, device=device)}, path)
    loaded = tg.load(path, device="cpu")["x"]
    assert loaded.dtype is dtype and loaded.shape == shape and loaded.device == "cpu"
    assert loaded.numpy().tobytes() == values.tobytes()


def test_load_with_device_none_returns_the_saved_device(tmp_path, device, rng):
    tg.save([tg.tensor(rng.standard_normal(3), device=device)], tmp_path / "t.tg")
    (loaded,) = tg.load(tmp_path / "t.tg")
    assert loaded.device == device


def test_nested_structure_and_python_values_round_trip(tmp_path, rng):
    w = tg.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    obj = {
        "model": OrderedDict([("fc.weight", w), ("fc.bias", tg.zeros(2))]),
        "optimizer": {"state": {0: {"step": 7, "exp_avg": tg.ones(2, 3)}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]},
        "epoch": 3, "best": float("inf"), "loss": float("nan"), "big": 2**70, "neg_zero": -0.0,
        "name": "run \"α\"\n", "flag": True, "nothing": None, "empty": ([], {}, ()),
        "numpy_scalars": [np.float32(0.5), np.int64(4), np.bool_(False)],
    }
    tg.save(obj, tmp_path / "ckpt.tg")
    got = tg.load(tmp_path / "ckpt.tg")
    assert type(got["model"]) is OrderedDict and list(got["model"]) == ["fc.weight", "fc.bias"]
    np.testing.assert_array_equal(got["model"]["fc.weight"].numpy(), w.numpy())
    assert got["model"]["fc.weight"].requires_grad and got["model"]["fc.weight"].is_leaf
    assert not got["model"]["fc.bias"].requires_grad
    assert got["optimizer"]["state"][0]["step"] == 7  # int keys stay ints
    np.testing.assert_array_equal(got["optimizer"]["state"][0]["exp_avg"].numpy(), np.ones((2, 3)))
    assert got["optimizer"]["param_groups"] == [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]
    assert got["epoch"] == 3 and type(got["epoch"]) is int
    assert got["best"] == float("inf") and np.isnan(got["loss"]) and got["big"] == 2**70
    assert str(got["neg_zero"]) == "-0.0"
    assert got["name"] == "run \"α\"\n" and got["flag"] is True and got["nothing"] is None
    assert got["empty"] == ([], {}, ())
    assert got["numpy_scalars"] == [0.5, 4, False]
    assert [type(v) for v in got["numpy_scalars"]] == [float, int, bool]


def test_views_and_transposes_save_their_values(tmp_path, rng):
    base = tg.tensor(rng.standard_normal((4, 6)))
    views = {"t": base.T, "slice": base[1:, ::2], "row": base[2]}
    tg.save(views, tmp_path / "v.tg")
    got = tg.load(tmp_path / "v.tg")
    for key, view in views.items():
        np.testing.assert_array_equal(got[key].numpy(), view.numpy())


def test_file_holds_only_plain_arrays_and_a_json_header(tmp_path):
    tg.save({"w": tg.ones(2)}, tmp_path / "c.tg")
    with zipfile.ZipFile(tmp_path / "c.tg") as archive:
        assert sorted(archive.namelist()) == ["__header__.npy", "t0.npy"]
    with np.load(tmp_path / "c.tg", allow_pickle=False) as npz:
        header = json.loads(npz["__header__"].tobytes())
    assert header["format"] == "tensorgrad.checkpoint" and header["version"] == 1
    assert header["root"]["items"][0][1] == {"type": "tensor", "key": "t0", "dtype": "float32",
                                             "shape": [2], "device": "cpu",
                                             "requires_grad": False}


@pytest.mark.parametrize("bad, where", [
    ({"f": lambda x: x}, r"obj\['f'\].*function"),
    ({"a": [1, {2, 3}]}, r"obj\['a'\]\[1\].*set"),
    ({(1, 2): tg.ones(1)}, r"dict keys must be str or int.*\(1, 2\)"),
    (np.zeros(3), r"obj: an object of type ndarray"),
])
def test_unsupported_objects_raise_type_error_naming_the_key_path(tmp_path, bad, where):
    with pytest.raises(TypeError, match=where):
        tg.save(bad, tmp_path / "x.tg")
    assert list(tmp_path.iterdir()) == []


def test_reference_cycle_is_refused(tmp_path):
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(ValueError, match=r"obj\[1\] contains itself"):
        tg.save(loop, tmp_path / "x.tg")


# ---- atomic writes ---------------------------------------------------------------------------
def test_overwrite_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "c.tg"
    tg.save({"v": tg.tensor([1.0])}, path)
    tg.save({"v": tg.tensor([2.0])}, path)
    assert tg.load(path)["v"].tolist() == [2.0]
    assert [p.name for p in tmp_path.iterdir()] == ["c.tg"]


def test_crash_mid_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "c.tg"
    tg.save({"w": tg.tensor([1.0, 2.0])}, path)
    before = path.read_bytes()
    real_write = np.lib.format.write_array
    calls = []

    def crash_after_first(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt  # as if the process were interrupted half way
        return real_write(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        tg.save({"w": tg.tensor([3.0, 4.0]), "b": tg.zeros(5)}, path)
    monkeypatch.undo()
    assert len(calls) == 2
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.tg"]
    assert tg.load(path)["w"].tolist() == [1.0, 2.0]


def test_write_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace",
                        lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    tg.save({"w": tg.ones(3)}, tmp_path / "c.tg")
    assert events == ["fsync", "replace", "fsync"]  # file, rename, then the folder


def test_new_file_gets_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        tg.save([tg.ones(1)], tmp_path / "c.tg")
    finally:
        os.umask(old)
    assert (tmp_path / "c.tg").stat().st_mode & 0o777 == 0o644


# ---- refusing bad files ----------------------------------------------------------------------
def test_truncated_file_raises_serialization_error_naming_the_path(tmp_path, rng):
    path = tmp_path / "c.tg"
    tg.save({"w": tg.tensor(rng.standard_normal(1000))}, path)
    data = path.read_bytes()
    for keep in (len(data) // 2, len(data) - 10, 10, 3):
        path.write_bytes(data[:keep])
        with pytest.raises(tg.SerializationError, match=str(path)):
            tg.load(path)


def test_corrupted_tensor_bytes_raise_serialization_error(tmp_path, rng):
    path = tmp_path / "c.tg"
    tg.save({"w": tg.tensor(rng.standard_normal(1000))}, path)
    data = bytearray(path.read_bytes())
    middle = data.index(b"t0.npy") + 4000  # inside t0's values: the zip CRC catches it
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(tg.SerializationError, match=r"c\.tg.*(CRC|Bad)"):
        tg.load(path)


@pytest.mark.parametrize("content, why", [
    (b"", "empty file"),
    (b"epoch,loss\n1,0.5\n", "not a zip archive"),
    (b"\x80\x04\x95 some pickle", "pickle"),
])
def test_foreign_files_are_refused(tmp_path, content, why):
    path = tmp_path / "foreign.bin"
    path.write_bytes(content)
    with pytest.raises(tg.SerializationError, match=rf"foreign\.bin.*{why}"):
        tg.load(path)


def test_plain_npy_and_foreign_npz_are_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(3))
    with pytest.raises(tg.SerializationError, match=r"a\.npy.*single \.npy array"):
        tg.load(tmp_path / "a.npy")
    np.savez(tmp_path / "b.npz", w=np.arange(3))
    with pytest.raises(tg.SerializationError, match=r"b\.npz.*no '__header__'"):
        tg.load(tmp_path / "b.npz")
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(tg.SerializationError, match=r"c\.zip"):
        tg.load(tmp_path / "c.zip")


def _write_with_header(path, header, arrays):
    raw = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as f:  # a path would get ".npz" appended
        np.savez(f, __header__=raw, **arrays)


@pytest.mark.parametrize("header, arrays, message", [
    ({"format": "other", "version": 1, "root": {"type": "none"}}, {}, "format is not"),
    ({"format": "tensorgrad.checkpoint", "version": 99, "root": {"type": "none"}}, {},
     "version 99 is not supported"),
    ({"format": "tensorgrad.checkpoint", "version": 1, "root": {"type": "exec"}}, {},
     "unknown entry"),
    ({"format": "tensorgrad.checkpoint", "version": 1,
      "root": {"type": "tensor", "key": "t0", "dtype": "float32", "shape": [3],
               "device": "cpu"}}, {}, "missing from the archive"),
    ({"format": "tensorgrad.checkpoint", "version": 1,
      "root": {"type": "tensor", "key": "t0", "dtype": "float32", "shape": [3],
               "device": "cpu"}}, {"t0": np.zeros(4, np.float32)}, "the header says"),
    ({"format": "tensorgrad.checkpoint", "version": 1,
      "root": {"type": "tensor", "key": "t0", "dtype": "complex64", "shape": [1],
               "device": "cpu"}}, {"t0": np.zeros(1, np.complex64)}, "unsupported tensor dtype"),
])
def test_forged_headers_are_refused(tmp_path, header, arrays, message):
    path = tmp_path / "forged.npz"
    _write_with_header(path, header, arrays)
    with pytest.raises(tg.SerializationError, match=rf"forged\.npz.*{message}"):
        tg.load(path)


class _Evil:
    """Unpickling this would create a marker folder: proof that code ran on load."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_evil_pickle_inside_an_npz_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    good_header = {"format": "tensorgrad.checkpoint", "version": 1,
                   "root": {"type": "tensor", "key": "t0", "dtype": "float32", "shape": [1],
                            "device": "cpu"}}
    evil = np.array([_Evil(str(marker))], dtype=object)
    raw = np.frombuffer(json.dumps(good_header).encode(), dtype=np.uint8)
    np.savez(path, allow_pickle=True, __header__=raw, t0=evil)
    # The payload is live: NumPy with pickles allowed would run it.
    with np.load(path, allow_pickle=True) as npz:
        npz["t0"]
    assert marker.exists()
    marker.rmdir()

    with pytest.raises(tg.SerializationError, match=r"evil\.npz.*pickled data"):
        tg.load(path)
    assert not marker.exists()


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        tg.load(tmp_path / "nope.tg")
    with pytest.raises(FileNotFoundError, match=r"folder .*missing does not exist"):
        tg.save({"w": tg.ones(2)}, tmp_path / "missing" / "x.tg")
    assert list(tmp_path.iterdir()) == []


def test_cuda_checkpoint_on_a_machine_without_cuda(tmp_path, monkeypatch):
    """A file recorded on cuda:0 loads with device='cpu'; device=None names the fix."""
    path = tmp_path / "gpu.tg"
    tg.save({"w": tg.tensor([1.0, 2.0])}, path)
    with np.load(path, allow_pickle=False) as npz:
        header = json.loads(npz["__header__"].tobytes())
        t0 = npz["t0"]
    header["root"]["items"][0][1]["device"] = "cuda:0"
    _write_with_header(path, header, {"t0": t0})

    def unusable(device):
        if device.type == "cuda":
            raise tg.DeviceUnavailableError("CUDA device cuda:0 is not usable: no GPU here.")
        return real_get_backend(device)

    real_get_backend = serialization.get_backend
    monkeypatch.setattr(serialization, "get_backend", unusable)
    with pytest.raises(tg.DeviceUnavailableError,
                       match=r"gpu\.tg: obj\['w'\] was saved on cuda:0.*device='cpu'"):
        tg.load(path)
    loaded = tg.load(path, device="cpu")["w"]
    assert loaded.device == "cpu" and loaded.tolist() == [1.0, 2.0]
