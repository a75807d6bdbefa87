"""tg.save / tg.load: round trips through safetensors, shared memory, atomic writes, and the
refusal of foreign, broken, hostile or pickled files in both the safetensors and the previous
.npz format."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy
from safetensors.numpy import load_file, save_file

import tensorgrad as tg
from tensorgrad import serialization

DTYPES = [tg.float16, tg.float32, tg.float64, tg.int32, tg.int64, tg.bool]
V1_FIXTURE = Path(__file__).parent / "data" / "checkpoint_v1.npz"


def _sample(dtype: tg.DType, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if dtype is tg.bool:
        return rng.random(shape) > 0.5
    return (rng.standard_normal(shape) * 100).astype(dtype.np)


def _metadata(path: Path) -> dict:
    with safetensors.safe_open(path, "np") as f:
        return f.metadata()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(), (1,), (3, 4), (2, 0, 3)], ids=str)
def test_every_dtype_and_shape_round_trips_bitwise(tmp_path, device, rng, dtype, shape):
    values = _sample(dtype, shape, rng)
    path = tmp_path / "t.safetensors"
    tg.save({"x": tg.tensor(values, device=device)}, path)
    loaded = tg.load(path, device="cpu")["x"]
    assert loaded.dtype is dtype and loaded.shape == shape and loaded.device == "cpu"
    assert loaded.numpy().tobytes() == values.tobytes()
    assert load_file(path)["x"].tobytes() == values.tobytes()  # the library reads it too


def test_load_with_device_none_returns_the_saved_device(tmp_path, device, rng):
    tg.save([tg.tensor(rng.standard_normal(3), device=device)], tmp_path / "t.st")
    (loaded,) = tg.load(tmp_path / "t.st")
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
    tg.save(obj, tmp_path / "ckpt.st")
    got = tg.load(tmp_path / "ckpt.st")
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


def test_tensors_are_stored_under_their_path_keys_with_the_structure_in_the_metadata(tmp_path):
    obj = {"model": OrderedDict([("0.weight", tg.ones(2, 3)), ("0.bias", tg.zeros(2))]),
           "optimizer": {"state": {3: {"exp_avg": tg.full((2,), 0.5)}}}, "epoch": 4}
    path = tmp_path / "c.safetensors"
    tg.save(obj, path)
    assert sorted(load_file(path)) == ["model.0.bias", "model.0.weight",
                                       "optimizer.state.3.exp_avg"]
    np.testing.assert_array_equal(load_file(path)["optimizer.state.3.exp_avg"], [0.5, 0.5])
    metadata = _metadata(path)
    assert metadata["format"] == "pt"
    description = json.loads(metadata["tensorgrad"])
    assert description["format"] == "tensorgrad.checkpoint" and description["version"] == 2
    assert description["root"]["items"][2] == ["epoch", {"type": "int", "value": 4}]
    assert description["root"]["items"][0][1]["items"][1][1] == {
        "type": "tensor", "key": "model.0.bias", "device": "cpu", "requires_grad": False}


@pytest.mark.parametrize("metadata", [{"k": "v"}, {"tensorgrad": '{"a": "é\\n"}'}],
                         ids=["ascii", "unicode"])
def test_the_bytes_written_are_those_of_the_safetensors_library_up_to_padding(rng, metadata):
    arrays = {"b": rng.random(3) > 0.5, "a": rng.standard_normal((2, 3)).astype(np.float32),
              "i": np.arange(3, dtype=np.int32), "h": np.zeros(2, np.float16),
              "d": rng.standard_normal(1), "l": np.arange(2), "empty": np.zeros((0, 3), np.float32),
              "scalar": np.array(3, np.float32), "ä.weight": np.ones(1, np.float32)}
    ours = io.BytesIO()
    serialization._write_safetensors(ours, arrays, metadata)
    theirs = safetensors.numpy.save(arrays, metadata=metadata)

    def split(data: bytes) -> tuple[bytes, bytes, int]:
        (n,) = struct.unpack("<Q", data[:8])
        return data[8:8 + n].rstrip(b" "), data[8 + n:], 8 + n

    (header, data, start), (their_header, their_data, _) = split(ours.getvalue()), split(theirs)
    assert header == their_header and data == their_data
    assert start % 64 == 0  # ours pads further, so the data starts aligned


def test_a_header_length_that_looks_like_a_pickle_opcode_is_read(tmp_path):
    """A header of 0x80 bytes starts the file with the byte pickles start with."""
    header = json.dumps({"w": _entry("F32", [2], 0, 8)}).encode()
    _raw_file(tmp_path / "c.st", header.ljust(0x80), np.ones(2, np.float32).tobytes())
    assert (tmp_path / "c.st").read_bytes()[0] == 0x80
    assert tg.load(tmp_path / "c.st")["w"].tolist() == [1.0, 1.0]


def test_colliding_and_reserved_keys_get_unique_names(tmp_path):
    obj = {"a.b": tg.ones(1), "a": {"b": tg.zeros(1)}, "__metadata__": tg.full((1,), 2.0)}
    tg.save(obj, tmp_path / "c.st")
    assert sorted(load_file(tmp_path / "c.st")) == ["__metadata__#2", "a.b", "a.b#2"]
    got = tg.load(tmp_path / "c.st")
    assert (got["a.b"].item(), got["a"]["b"].item(), got["__metadata__"].item()) == (1, 0, 2)
    tg.save(tg.arange(3), tmp_path / "t.st")  # a bare tensor has no path
    assert list(load_file(tmp_path / "t.st")) == ["tensor"]
    assert tg.load(tmp_path / "t.st").tolist() == [0, 1, 2]


def test_views_and_transposes_save_their_values(tmp_path, rng):
    base = tg.tensor(rng.standard_normal((4, 6)))
    views = {"t": base.T, "slice": base[1:, ::2], "row": base[2]}
    tg.save(views, tmp_path / "v.st")
    got = tg.load(tmp_path / "v.st")
    for key, view in views.items():
        np.testing.assert_array_equal(got[key].numpy(), view.numpy())


# ---- shared memory ---------------------------------------------------------------------------
def test_views_of_a_saved_tensor_are_stored_once_and_come_back_sharing(tmp_path, rng, device):
    base = tg.tensor(rng.standard_normal((400, 60)).astype(np.float32), device=device)
    obj = {"base": base, "t": base.T, "rows": base[10:20, ::3], "flip": base[::-1]}
    path = tmp_path / "s.st"
    tg.save(obj, path)
    assert list(load_file(path)) == ["base"]
    assert path.stat().st_size < base.numpy().nbytes + 4096
    got = tg.load(path)
    for key in obj:
        assert got[key].device == device
        np.testing.assert_array_equal(got[key].numpy(), obj[key].numpy())
    with tg.no_grad():
        got["base"][12, 3] = 7.0  # in place through the base: every view sees it
    assert got["t"][3, 12].item() == 7.0 and got["rows"][2, 1].item() == 7.0
    assert got["flip"][387, 3].item() == 7.0
    assert got["rows"]._version is got["base"]._version  # one version counter, as before


def test_a_tensor_saved_twice_comes_back_as_one_object(tmp_path):
    w = tg.ones(3, requires_grad=True)
    tg.save({"encoder": w, "decoder": w, "copy": w.detach()}, tmp_path / "s.st")
    assert list(load_file(tmp_path / "s.st")) == ["encoder"]
    got = tg.load(tmp_path / "s.st")
    assert got["encoder"] is got["decoder"] and got["decoder"].requires_grad
    assert got["copy"] is not got["encoder"] and not got["copy"].requires_grad
    with tg.no_grad():
        got["copy"].mul_(2.0)
    assert got["encoder"].tolist() == [2.0, 2.0, 2.0]


def test_tied_weights_of_a_model_are_stored_once(tmp_path):
    emb = tg.nn.Embedding(10, 4)
    head = tg.nn.Linear(4, 10, bias=False)
    head.weight = emb.weight  # tied, as in a language model
    model = tg.nn.Sequential(emb, head)
    path = tmp_path / "tied.st"
    tg.save(model.state_dict(), path)
    assert list(load_file(path)) == ["0.weight"]
    got = tg.load(path)
    assert got["0.weight"] is got["1.weight"]
    np.testing.assert_array_equal(got["1.weight"].numpy(), emb.weight.numpy())


def test_overlapping_views_without_a_spanning_one_share_a_stored_block(tmp_path):
    x = tg.arange(24, dtype=tg.float32).reshape(4, 6)
    obj = {"left": x[:, :4], "right": x[:, 3:]}
    tg.save(obj, tmp_path / "s.st")
    assert list(load_file(tmp_path / "s.st")) == ["__shared__.0"]
    got = tg.load(tmp_path / "s.st")
    np.testing.assert_array_equal(got["left"].numpy(), x[:, :4].numpy())
    np.testing.assert_array_equal(got["right"].numpy(), x[:, 3:].numpy())
    with tg.no_grad():
        got["left"][1, 3] = -1.0
    assert got["right"][1, 0].item() == -1.0


def test_memory_shared_across_dtypes_is_saved_as_copies(tmp_path):
    x = tg.tensor([1.0, 2.0], dtype=tg.float64)
    bits = tg.zeros(2, dtype=tg.int64)
    bits.data = x.data.view(np.int64)  # another dtype over the same bytes
    tg.save({"x": x, "bits": bits}, tmp_path / "s.st")
    assert sorted(load_file(tmp_path / "s.st")) == ["bits", "x"]
    got = tg.load(tmp_path / "s.st")
    assert got["x"].tolist() == [1.0, 2.0]
    assert got["bits"].numpy().tobytes() == np.array([1.0, 2.0]).tobytes()


def test_an_expanded_tensor_is_saved_as_a_copy_not_a_view(tmp_path):
    x = tg.arange(4, dtype=tg.float32)
    tg.save({"x": x, "grid": x.expand(3, 4)}, tmp_path / "e.st")
    assert sorted(load_file(tmp_path / "e.st")) == ["grid", "x"]
    got = tg.load(tmp_path / "e.st")
    np.testing.assert_array_equal(got["grid"].numpy(), np.tile(np.arange(4.0), (3, 1)))


# ---- file objects and keywords ---------------------------------------------------------------
def test_binary_file_objects_work_both_ways(tmp_path):
    buffer = io.BytesIO()
    tg.save({"w": tg.arange(4), "n": 5}, buffer)
    buffer.seek(0)
    got = tg.load(buffer)
    assert got["w"].tolist() == [0, 1, 2, 3] and got["n"] == 5

    class Pipe(io.RawIOBase):  # read-only, not seekable, as a socket or a pipe
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b):  # noqa: ANN001
            return self._data.readinto(b)

    assert tg.load(io.BufferedReader(Pipe(buffer.getvalue())))["w"].tolist() == [0, 1, 2, 3]
    with open(tmp_path / "f.st", "wb") as f:
        tg.save([tg.ones(2)], f)
    with open(tmp_path / "f.st", "rb") as f:
        assert tg.load(f)[0].tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="path or a binary file object, got int"):
        tg.save({}, 3)


def test_map_location_and_weights_only_keywords(tmp_path):
    tg.save({"w": tg.ones(2)}, tmp_path / "c.st")
    assert tg.load(tmp_path / "c.st", map_location="cpu")["w"].device == "cpu"
    assert tg.load(tmp_path / "c.st", weights_only=False)["w"].tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="map_location must be a device, got dict"):
        tg.load(tmp_path / "c.st", map_location={"cuda:0": "cpu"})
    with pytest.raises(ValueError, match="disagree"):
        tg.load(tmp_path / "c.st", device="cpu", map_location="cuda")
    with pytest.raises(TypeError, match="weights_only must be a bool"):
        tg.load(tmp_path / "c.st", weights_only=None)


def test_mmap_maps_the_file_copy_on_write(tmp_path, rng):
    values = rng.standard_normal((64, 33)).astype(np.float32)
    path = tmp_path / "c.st"
    tg.save({"w": tg.tensor(values), "b": tg.arange(5), "e": tg.zeros(0), "s": tg.tensor(2.0)},
            path)
    before = path.read_bytes()
    got = tg.load(path, mmap=True)
    assert not got["w"].numpy().flags.owndata  # a view of the mapping, not a copy
    np.testing.assert_array_equal(got["w"].numpy(), values)
    assert got["b"].tolist() == [0, 1, 2, 3, 4] and got["e"].shape == (0,)
    assert got["s"].item() == 2.0
    with tg.no_grad():
        got["w"].mul_(0.0)  # writable, and the file does not change
    assert path.read_bytes() == before
    tg.save({"w": tg.ones(1)}, path)  # replacing the mapped file leaves the tensors as they were
    assert got["b"].tolist() == [0, 1, 2, 3, 4] and float(got["w"].sum().item()) == 0.0
    with open(path, "rb") as f:
        assert tg.load(f, mmap=True)["w"].tolist() == [1.0]
    with pytest.raises(ValueError, match=r"mmap=True\) needs a file on disk, not <BytesIO>"):
        tg.load(io.BytesIO(before), mmap=True)
    with pytest.raises(TypeError, match="mmap must be a bool"):
        tg.load(path, mmap="yes")


def test_mmap_of_a_file_whose_data_is_not_aligned_copies_the_tensors(tmp_path):
    header = json.dumps({"w": _entry("F32", [3], 0, 12)}).encode()  # no padding to 8 bytes
    assert (8 + len(header)) % 4
    values = np.array([1.5, -2.0, 3.25], np.float32)
    _raw_file(tmp_path / "odd.st", header, values.tobytes())
    got = tg.load(tmp_path / "odd.st", mmap=True)["w"]
    assert got.numpy().flags.aligned and got.tolist() == [1.5, -2.0, 3.25]


def test_a_foreign_safetensors_file_loads_as_a_dict_of_tensors(tmp_path):
    save_file({"b": np.arange(3, dtype=np.int64), "a": np.eye(2, dtype=np.float32)},
              tmp_path / "f.st")
    got = tg.load(tmp_path / "f.st")
    assert sorted(got) == ["a", "b"] and got["b"].dtype is tg.int64
    np.testing.assert_array_equal(got["a"].numpy(), np.eye(2))
    got["a"].add_(1.0)  # writable, owned memory
    assert got["a"].tolist() == [[2.0, 1.0], [1.0, 2.0]]


# ---- atomic writes ---------------------------------------------------------------------------
def test_overwrite_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "c.st"
    tg.save({"v": tg.tensor([1.0])}, path)
    tg.save({"v": tg.tensor([2.0])}, path)
    assert tg.load(path)["v"].tolist() == [2.0]
    assert [p.name for p in tmp_path.iterdir()] == ["c.st"]


def test_crash_mid_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "c.st"
    tg.save({"w": tg.tensor([1.0, 2.0])}, path)
    before = path.read_bytes()
    written = []

    def crash_half_way(f, arrays, metadata):
        f.write(b"\x00" * 100)  # a partial file
        f.flush()
        written.extend(p.name for p in tmp_path.iterdir())
        raise KeyboardInterrupt  # as if the process were interrupted half way

    monkeypatch.setattr(serialization, "_write_safetensors", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        tg.save({"w": tg.tensor([3.0, 4.0]), "b": tg.zeros(5)}, path)
    monkeypatch.undo()
    assert len(written) == 2 and "c.st" in written  # the target and the temporary
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.st"]
    assert tg.load(path)["w"].tolist() == [1.0, 2.0]


def test_write_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace",
                        lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    tg.save({"w": tg.ones(3)}, tmp_path / "c.st")
    assert events == ["fsync", "replace", "fsync"]  # file, rename, then the folder


def test_new_file_gets_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        tg.save([tg.ones(1)], tmp_path / "c.st")
    finally:
        os.umask(old)
    assert (tmp_path / "c.st").stat().st_mode & 0o777 == 0o644


_HOLD_A_TEMPORARY = """
import sys, time
from tensorgrad import serialization
fd, tmp = serialization._create_temporary(sys.argv[1], "c.st")
with open(tmp, "wb") as f:
    f.write(b"x" * 1_000_000)  # a save under way
print(tmp, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals and locks")
def test_temporaries_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "c.st"
    left_behind = tmp_path / ".c.st.0123456789ab.tmp"  # a kill before locks (previous format)
    left_behind.write_bytes(b"y" * 1000)
    other = tmp_path / ".other.st.0123456789ab.tmp"  # another target's: not ours to judge
    other.write_bytes(b"z")
    child = subprocess.Popen([sys.executable, "-c", _HOLD_A_TEMPORARY, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        in_progress = Path(child.stdout.readline().strip())
        tg.save({"w": tg.ones(2)}, path)  # the live save's temporary is left alone
        assert in_progress.exists() and not left_behind.exists() and other.exists()
        child.send_signal(signal.SIGKILL)
        child.wait()
        tg.save({"w": tg.zeros(2)}, path)  # now it is stale
        assert sorted(p.name for p in tmp_path.iterdir()) == [".other.st.0123456789ab.tmp",
                                                              "c.st"]
        assert tg.load(path)["w"].tolist() == [0.0, 0.0]
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_a_temporary_taken_for_stale_before_it_was_locked_is_replaced(tmp_path, monkeypatch):
    real_flock = serialization.fcntl.flock
    taken = []

    def cleanup_wins_the_race(fd, op):
        if not taken:  # another save's cleanup deletes the fresh file before our lock
            taken.extend(p for p in tmp_path.iterdir())
            for p in taken:
                p.unlink()
        return real_flock(fd, op)

    monkeypatch.setattr(serialization.fcntl, "flock", cleanup_wins_the_race)
    tg.save({"w": tg.ones(2)}, tmp_path / "c.st")
    monkeypatch.undo()
    assert len(taken) == 1 and [p.name for p in tmp_path.iterdir()] == ["c.st"]
    assert tg.load(tmp_path / "c.st")["w"].tolist() == [1.0, 1.0]


# ---- refusing bad safetensors files ----------------------------------------------------------
def _raw_file(path: Path, header: dict | bytes, data: bytes = b"") -> None:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def _entry(dtype: str, shape: list, begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def test_truncated_file_raises_serialization_error_naming_the_path(tmp_path, rng):
    path = tmp_path / "c.st"
    tg.save({"w": tg.tensor(rng.standard_normal(1000)), "n": 1}, path)
    data = path.read_bytes()
    for keep in (len(data) // 2, len(data) - 1, 100, 9, 3):
        path.write_bytes(data[:keep])
        with pytest.raises(tg.SerializationError, match=str(path)):
            tg.load(path)


def test_declared_sizes_larger_than_the_file_allocate_nothing(tmp_path):
    """655 bytes declaring 10^12 float32 elements gave MemoryError in the previous loader."""
    path = tmp_path / "huge.st"
    header = {"w": _entry("F32", [10**12], 0, 4 * 10**12)}
    _raw_file(path, header, b"\x00" * (655 - 8 - len(json.dumps(header))))
    assert path.stat().st_size == 655
    tracemalloc.start()
    try:
        with pytest.raises(tg.SerializationError, match=r"huge\.st.*end at byte 4000000000000.*"
                                                        r"beyond the end of the file"):
            tg.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    path.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    with pytest.raises(tg.SerializationError, match=r"header declares 9223372036854775808 bytes"):
        tg.load(path)


@pytest.mark.parametrize("header, data, message", [
    ({"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [1], 4, 8)}, 8,
     r"tensor 'b' at bytes 4 to 8 overlaps tensor 'a'"),
    ({"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [2], 0, 8)}, 8,
     r"tensor '[ab]' at bytes 0 to 8 overlaps"),
    ({"a": _entry("F32", [1], 0, 4), "b": _entry("F32", [1], 8, 12)}, 12,
     r"tensor 'b' at bytes 8 to 12 leaves the bytes 4 to 8 unused"),
    ({"a": _entry("F32", [1], 0, 4), "b": _entry("F32", [1], 40, 44)}, 8,
     r"tensor 'b' at bytes 40 to 44 lies beyond the 8 bytes"),
    ({"a": _entry("F32", [1], 0, 4)}, 8, r"end at byte 4 of the data, before the 8 bytes"),
    ({"a": _entry("F32", [3], 0, 8)}, 8, r"float32 of shape \(3,\) needs 12 bytes"),
    ({"a": _entry("F32", [2], 8, 0)}, 8, r"data_offsets \[8, 0\] is not a \[begin, end\]"),
    ({"a": _entry("F32", [-2], 0, 8)}, 8, r"shape \[-2\] is not a list of at most 32 sizes"),
    ({"a": _entry("F32", [True], 0, 4)}, 4, r"shape \[True\] is not a list of at most 32"),
    ({"a": _entry("F32", [1] * 33, 0, 4)}, 4, r"shape \[1, .* is not a list of at most 32"),
    ({"a": _entry("BF16", [2], 0, 4)}, 4, r"dtype 'BF16' is not supported; tensorgrad reads"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, 4,
     "exactly dtype, shape and data_offsets"),
    ({"__metadata__": {"a": {"b": "c"}}}, 0, "__metadata__ must map strings to strings"),
    (b'{"a": ' + json.dumps(_entry("F32", [1], 0, 4)).encode() + b', "a": '
     + json.dumps(_entry("F32", [1], 0, 4)).encode() + b"}", 4,
     "the safetensors header has the key 'a' twice"),
    (b'{"__metadata__": {"k": "1", "k": "2"}}', 0, "has the key 'k' twice"),
    (b'{"a": {"dtype": "F32", "shape": [1], "data_of', 0, "is not valid JSON"),
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 0, "nested too deeply"),
    (b'{"a": [' * 100_000 + b"]}" * 100_000, 0, "nested too deeply"),
])
def test_malformed_safetensors_headers_are_refused(tmp_path, header, data, message):
    path = tmp_path / "bad.st"
    _raw_file(path, header, b"\x00" * data)
    with pytest.raises(tg.SerializationError, match=rf"bad\.st: .*(?:{message})"):
        tg.load(path)


def test_damaged_files_load_or_raise_serialization_error_and_nothing_else(rng):
    """Bytes changed, inserted or cut anywhere, mostly in the headers: no other exception."""
    base = tg.tensor(rng.standard_normal((6, 5)).astype(np.float32))
    obj = {"model": OrderedDict([("w", base), ("t", base.T), ("rows", base[1:4, ::2])]),
           "opt": {"state": {0: {"step": 3, "m": tg.ones(2, dtype=tg.float16)}}},
           "flag": tg.tensor([True, False]), "name": "x", "none": None, "nan": float("nan")}
    buffer = io.BytesIO()
    tg.save(obj, buffer)
    for original in (buffer.getvalue(), V1_FIXTURE.read_bytes()):
        for _ in range(400):
            data = bytearray(original)
            where = int(rng.integers(min(len(data), 1500) if rng.random() < 0.8 else len(data)))
            kind = rng.integers(3)
            if kind == 0:
                data[where] = int(rng.integers(256))
            elif kind == 1:
                data[where:where] = rng.integers(0, 256, int(rng.integers(1, 5))).tobytes()
            else:
                del data[where:]
            try:
                tg.load(io.BytesIO(bytes(data)))
            except tg.SerializationError:
                pass


def _with_description(path: Path, description: object, arrays: dict | None = None) -> None:
    metadata = {"tensorgrad": description if isinstance(description, str)
                else json.dumps(description)}
    save_file(arrays or {"t": np.zeros(4, np.float32)}, path, metadata=metadata)


def _tree(root: object, version: object = 2) -> dict:
    return {"format": "tensorgrad.checkpoint", "version": version, "root": root}


_T = {"type": "tensor", "key": "t", "device": "cpu", "requires_grad": False}


@pytest.mark.parametrize("description, message", [
    (_tree({"type": "none"}, version=True), "format version True is not supported"),
    (_tree({"type": "none"}, version=1), "format version 1 is not supported"),
    (_tree({"type": "none"}, version="2"), "format version '2' is not supported"),
    ({"format": "other", "version": 2, "root": {"type": "none"}}, "format is not"),
    (_tree({"type": "exec", "value": "rm -rf"}), "unknown entry"),
    (_tree({**_T, "key": "missing"}), "tensor 'missing' is not in the file"),
    (_tree({**_T, "requires_grad": 1}), "requires_grad 1 is not a bool"),
    (_tree({**_T, "requires_grad": [1]}), r"requires_grad \[1\] is not a bool"),
    (_tree({**_T, "device": "tpu"}), "unknown device 'tpu'"),
    (_tree({**_T, "view": {"offset": 2, "shape": [3], "stride": [1]}}),
     r"view .* does not fit in the 4 elements it views"),
    (_tree({**_T, "view": {"offset": 0, "shape": [2], "stride": [-1]}}),
     "does not fit in the 4 elements"),
    (_tree({**_T, "view": {"offset": 3, "shape": [2, 2], "stride": [10**12, 1]}}),
     "does not fit"),
    (_tree({**_T, "view": {"offset": 0, "shape": [1], "stride": [10**30]}}), "does not fit"),
    (_tree({**_T, "view": {"offset": 0, "shape": [10**12], "stride": [0]}}), "does not fit"),
    (_tree({**_T, "view": {"offset": 0, "shape": [3, 3], "stride": [1, 1]}}), "does not fit"),
    (_tree({**_T, "view": {"offset": 0, "shape": [0], "stride": [1]}}), "does not fit"),
    (_tree({**_T, "view": {"offset": 0, "shape": [1] * 40, "stride": [1] * 40}}),
     "does not fit"),
    (_tree({**_T, "view": {"offset": 0, "shape": [2]}}), "malformed view"),
    (_tree({"type": "dict", "items": [["a", {"type": "none"}], ["a", {"type": "none"}]]}),
     r"obj: the key 'a' appears twice"),
    (_tree({"type": "int", "value": True}), "int entry holds True"),
    ('{"format": "tensorgrad.checkpoint", "format": "x"}', "has the key 'format' twice"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (_tree(json.loads('{"type": "list", "items": [' * 150 + '{"type": "none"}' + "]}" * 150)),
     r"obj(\[0\]){100}: containers nested more than 100 levels deep"),
])
def test_hostile_tensorgrad_metadata_is_refused(tmp_path, description, message):
    path = tmp_path / "bad.st"
    _with_description(path, description)
    with pytest.raises(tg.SerializationError, match=rf"bad\.st: .*{message}"):
        tg.load(path)


def test_nesting_up_to_the_limit_round_trips_and_deeper_is_refused_on_save(tmp_path):
    deep: list = [tg.ones(1)]
    for _ in range(99):
        deep = [deep]
    tg.save(deep, tmp_path / "d.st")
    got = tg.load(tmp_path / "d.st")
    for _ in range(99):
        got = got[0]
    assert got[0].tolist() == [1.0]
    with pytest.raises(ValueError, match=r"obj(\[0\]){100} is nested more than 100 levels"):
        tg.save([deep], tmp_path / "e.st")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.st"]


@pytest.mark.parametrize("content, why", [
    (b"", "empty file"),
    (b"epoch,loss\n1,0.5\n", "not a safetensors file"),
    (b"\x80\x04\x95 some pickle", "pickle"),
])
def test_foreign_files_are_refused(tmp_path, content, why):
    path = tmp_path / "foreign.bin"
    path.write_bytes(content)
    with pytest.raises(tg.SerializationError, match=rf"foreign\.bin.*{why}"):
        tg.load(path)


def test_a_torch_save_pickle_is_refused_without_unpickling(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(2)}, tmp_path / "t.pt")
    with pytest.raises(tg.SerializationError, match=r"t\.pt: member '.*\.pkl' is not an "
                                                    r"\.npy array.*pickles"):
        tg.load(tmp_path / "t.pt", weights_only=False)


def test_unsupported_objects_raise_type_error_naming_the_key_path(tmp_path):
    for bad, where in [({"f": lambda x: x}, r"obj\['f'\].*function"),
                       ({"a": [1, {2, 3}]}, r"obj\['a'\]\[1\].*set"),
                       ({(1, 2): tg.ones(1)}, r"dict keys must be str or int.*\(1, 2\)"),
                       (np.zeros(3), r"obj: an object of type ndarray")]:
        with pytest.raises(TypeError, match=where):
            tg.save(bad, tmp_path / "x.st")
    assert list(tmp_path.iterdir()) == []


def test_reference_cycle_is_refused(tmp_path):
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(ValueError, match=r"obj\[1\] contains itself"):
        tg.save(loop, tmp_path / "x.st")


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        tg.load(tmp_path / "nope.st")
    with pytest.raises(FileNotFoundError, match=r"folder .*missing does not exist"):
        tg.save({"w": tg.ones(2)}, tmp_path / "missing" / "x.st")
    assert list(tmp_path.iterdir()) == []


def test_cuda_checkpoint_on_a_machine_without_cuda(tmp_path, monkeypatch):
    """A file recorded on cuda:0 loads with device='cpu'; device=None names the fix."""
    path = tmp_path / "gpu.st"
    tg.save({"w": tg.tensor([1.0, 2.0])}, path)
    description = json.loads(_metadata(path)["tensorgrad"])
    description["root"]["items"][0][1]["device"] = "cuda:0"
    _with_description(path, description, load_file(path))

    def unusable(device):
        if device.type == "cuda":
            raise tg.DeviceUnavailableError("CUDA device cuda:0 is not usable: no GPU here.")
        return real_get_backend(device)

    real_get_backend = serialization.get_backend
    monkeypatch.setattr(serialization, "get_backend", unusable)
    with pytest.raises(tg.DeviceUnavailableError,
                       match=r"gpu\.st: obj\['w'\] was saved on cuda:0.*device='cpu'"):
        tg.load(path)
    loaded = tg.load(path, device="cpu")["w"]
    assert loaded.device == "cpu" and loaded.tolist() == [1.0, 2.0]


# ---- the previous format (version 1, .npz), read only -----------------------------------------
def test_a_checkpoint_of_the_previous_format_still_loads():
    """tests/data/checkpoint_v1.npz was written by the previous tg.save (commit e44a646)."""
    got = tg.load(V1_FIXTURE)
    with np.load(V1_FIXTURE, allow_pickle=False) as npz:
        assert type(got["model"]) is OrderedDict
        assert list(got["model"]) == ["0.weight", "0.bias", "2.weight", "2.bias"]
        assert got["model"]["0.weight"].numpy().tobytes() == npz["t0"].tobytes()
        assert got["optimizer"]["state"][3]["exp_avg_sq"].numpy().tobytes() == \
            npz["t15"].tobytes()
        assert got["optimizer"]["state"][3]["step"].dtype is tg.float64
    assert sorted(got["optimizer"]["state"]) == [0, 1, 2, 3]
    assert got["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert got["epoch"] == 3 and got["config"] == ("mlp", None)
    assert got["history"]["loss"][0] == 0.5 and np.isnan(got["history"]["loss"][1])
    assert got["mask"].dtype is tg.bool and got["mask"].tolist() == [True, False]
    with open(V1_FIXTURE, "rb") as f:  # a file object, too
        assert tg.load(f)["epoch"] == 3


def _v1_file(path, header, arrays=None, **savez) -> None:
    raw = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as f:  # a path would get ".npz" appended
        np.savez(f, __header__=raw, **(arrays or {}), **savez)


def _v1(root, version=1):
    return {"format": "tensorgrad.checkpoint", "version": version, "root": root}


_V1_T = {"type": "tensor", "key": "t0", "dtype": "float32", "shape": [3], "device": "cpu"}


@pytest.mark.parametrize("header, arrays, message", [
    ({"format": "other", "version": 1, "root": {"type": "none"}}, {}, "format is not"),
    (_v1({"type": "none"}, version=99), {}, "version 99 is not supported"),
    (_v1({"type": "none"}, version=True), {}, "version True is not supported"),
    (_v1({"type": "exec"}), {}, "unknown entry"),
    (_v1(_V1_T), {}, "missing from the archive"),
    (_v1(_V1_T), {"t0": np.zeros(4, np.float32)}, "the header says"),
    (_v1({**_V1_T, "dtype": "complex64", "shape": [1]}), {"t0": np.zeros(1, np.complex64)},
     "unsupported tensor dtype"),
    (_v1(json.loads('{"type": "list", "items": [' * 150 + '{"type": "none"}' + "]}" * 150)),
     {}, "nested more than 100 levels"),
])
def test_forged_v1_headers_are_refused(tmp_path, header, arrays, message):
    path = tmp_path / "forged.npz"
    _v1_file(path, header, arrays)
    with pytest.raises(tg.SerializationError, match=rf"forged\.npz.*{message}"):
        tg.load(path)


def test_v1_header_with_duplicate_keys_or_deep_json_is_refused(tmp_path):
    for text, message in [('{"format": "tensorgrad.checkpoint", "version": 1, "version": 1}',
                           "the header has the key 'version' twice"),
                          ("[" * 100_000 + "]" * 100_000, "the header is nested too deeply")]:
        with open(tmp_path / "h.npz", "wb") as f:
            np.savez(f, __header__=np.frombuffer(text.encode(), dtype=np.uint8))
        with pytest.raises(tg.SerializationError, match=rf"h\.npz: {message}"):
            tg.load(tmp_path / "h.npz")


def _npy_member(shape: tuple, data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def test_v1_member_declaring_more_elements_than_the_file_holds(tmp_path):
    """The 655-byte file declaring 10^12 float32 elements: MemoryError before."""
    path = tmp_path / "huge.npz"
    header = np.frombuffer(json.dumps(_v1({**_V1_T, "shape": [10**12]})).encode(), np.uint8)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__header__.npy", _header_member(header))
        archive.writestr("t0.npy", _npy_member((10**12,), b"\x00" * 16))
    tracemalloc.start()
    try:
        with pytest.raises(tg.SerializationError,
                           match=r"huge\.npz: member 't0.npy' declares a float32 array of shape "
                                 r"\(1000000000000,\) \(4000000000000 bytes\) but holds 16"):
            tg.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def _header_member(header: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, header)
    return buffer.getvalue()


def test_v1_compressed_member_that_expands_1000x_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    with open(path, "wb") as f:
        np.savez_compressed(f, __header__=np.frombuffer(
            json.dumps(_v1({**_V1_T, "shape": [10**6]})).encode(), np.uint8),
            t0=np.zeros(10**6, np.float32))
    assert path.stat().st_size * 1000 < 4 * 10**6 * 2  # it does expand about 1000x
    with pytest.raises(tg.SerializationError, match=r"bomb\.npz: member .* is compressed, "
                                                    "which tg.save never does"):
        tg.load(path)


def test_v1_member_offsets_beyond_the_file_and_duplicate_members(tmp_path):
    data = bytearray(V1_FIXTURE.read_bytes())
    # The central directory's first entry: its compressed and uncompressed sizes, made huge.
    central = data.index(b"PK\x01\x02")
    data[central + 20:central + 28] = struct.pack("<II", 10**9, 10**9)
    (tmp_path / "big.npz").write_bytes(bytes(data))
    with pytest.raises(tg.SerializationError,
                       match=r"big\.npz: member '__header__.npy' declares 1000000000 bytes, more "
                             "than the file holds"):
        tg.load(tmp_path / "big.npz")
    with zipfile.ZipFile(tmp_path / "dup.npz", "w") as archive:
        with pytest.warns(UserWarning, match="Duplicate name"):
            for _ in range(2):
                archive.writestr("t0.npy", _npy_member((1,), b"\x00" * 4))
    with pytest.raises(tg.SerializationError, match=r"dup\.npz: member 't0.npy' appears twice"):
        tg.load(tmp_path / "dup.npz")


@pytest.mark.parametrize("flags", [0x01, 0x41], ids=["encrypted", "strongly-encrypted"])
def test_v1_encrypted_members_are_refused(tmp_path, flags):
    data = bytearray(V1_FIXTURE.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 8:central + 10] = struct.pack("<H", flags)  # the general purpose flags
    (tmp_path / "locked.npz").write_bytes(bytes(data))
    with pytest.raises(tg.SerializationError, match=r"locked\.npz.*(encrypt|password)"):
        tg.load(tmp_path / "locked.npz")


def test_v1_corrupted_tensor_bytes_raise_serialization_error(tmp_path, rng):
    path = tmp_path / "c.npz"
    _v1_file(path, _v1({**_V1_T, "shape": [1000], "dtype": "float64"}),
             {"t0": rng.standard_normal(1000)})
    data = bytearray(path.read_bytes())
    middle = data.index(b"t0.npy") + 4000  # inside t0's values: the zip CRC catches it
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(tg.SerializationError, match=r"c\.npz.*(CRC|Bad)"):
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


class _Evil:
    """Unpickling this would create a marker folder: proof that code ran on load."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_evil_pickle_inside_an_npz_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    evil = np.array([_Evil(str(marker))], dtype=object)
    _v1_file(path, _v1({**_V1_T, "shape": [1]}), {"t0": evil}, allow_pickle=True)
    # The payload is live: NumPy with pickles allowed would run it.
    with np.load(path, allow_pickle=True) as npz:
        npz["t0"]
    assert marker.exists()
    marker.rmdir()

    for weights_only in (True, False):
        with pytest.raises(tg.SerializationError, match=r"evil\.npz.*pickled data"):
            tg.load(path, weights_only=weights_only)
    assert not marker.exists()
