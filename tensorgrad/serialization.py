"""tg.save and tg.load: checkpoints in the safetensors format, which cannot run code on load.

A file written by tg.save is a standard safetensors file, what the `safetensors` library writes
for the same tensors up to the header's padding (tests compare): an 8-byte little-endian header
length, a JSON header giving each tensor's dtype, shape and byte range, then the raw data.
Every tensor of the saved object is stored under its path key ("model.0.weight",
"optimizer.state.3.exp_avg"), so a plain state dict is what
`safetensors.torch.load_file` and `torch.nn.Module.load_state_dict` expect, and a file written by
`safetensors.torch.save_file` loads here. The object's structure and its non-tensor values
travel as JSON in the header's `__metadata__` (under "tensorgrad"), so tg.load rebuilds the same
object; a foreign safetensors file without it loads as a dict of tensors.

Tensors that share memory (a tensor saved twice, tied weights, views of one another) are stored
once: the shared memory is one entry, under the key of the tensor that spans it when one does
(else under "__shared__.N"), and the metadata records every other tensor as a view (element
offset, shape and strides) into that entry. They come back as views of one array, sharing memory
and version counter as before the save; the same tensor saved twice comes back as one object.
(`safetensors.torch.save_file` refuses shared tensors instead; a PyTorch reader of such a file
sees only the stored entries.)

Reading checks every declared size and offset against the file before allocating anything, so a
damaged or hostile file raises SerializationError naming the path and the problem, never a
MemoryError, a RecursionError or an out-of-bounds view. Writes go to a temporary file in the
target's folder that is fsynced and renamed over the target; the temporary is locked while it is
written, and a later save of the same target removes the unlocked ones that killed saves left.
The library's own writers do not fit here: `serialize_file` writes its own temporary (mode 0600,
never fsynced, left behind by a kill) and renames it, and `serialize` copies every tensor into
one bytes object first (0.8 s for 400 MB, twice torch.save). So the header and the data are
written here, straight from the arrays' memory; reading is done here too, since the library
accepts duplicate keys (the last wins) and reads file objects only as one bytes copy.

tg.load still reads the previous format (a NumPy .npz archive with a JSON header, format version
1), recognised by its zip magic. It is deprecated: it is read so that old checkpoints can be
loaded once and saved again in the new format, and will be dropped in a later release.

What can be saved: Tensors; dicts (and OrderedDicts) keyed by str or int; lists and tuples;
int, float, bool, str and None (NumPy scalars are saved as the Python number they hold), nested
at most 100 levels deep. Tensors come back as leaves (values only, no graph) with the
requires_grad they had.
"""

from __future__ import annotations

import io
import json
import math
import mmap
import os
import re
import struct
import uuid
import zipfile
from collections import OrderedDict
from typing import Any, BinaryIO

import numpy as np

from ._device import Device, DeviceUnavailableError, as_device
from ._dtype import DType, as_dtype, bool_, float16, float32, float64, int32, int64
from ._tensor import Tensor
from .backend import get_backend

try:
    import fcntl
except ImportError:  # Windows, where deleting a file that is open fails instead
    fcntl = None

FORMAT_NAME = "tensorgrad.checkpoint"
FORMAT_VERSION = 2  # 2: safetensors; 1: the previous .npz format, still read
_NPZ_VERSION = 1
_METADATA_KEY = "tensorgrad"
_NPZ_HEADER = "__header__"
_MAX_DEPTH = 100
_MAX_DIMS = 32  # NumPy 1's limit (NumPy 2 allows 64)
_MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
# In the library's writing order: larger alignment first, which keeps every tensor aligned.
_SAFETENSORS_DTYPES: dict[str, DType] = {
    "I64": int64, "F64": float64, "F32": float32, "I32": int32, "F16": float16, "BOOL": bool_}
_CODES = {dtype.np: code for code, dtype in _SAFETENSORS_DTYPES.items()}
_WRITE_ORDER = {code: i for i, code in enumerate(_SAFETENSORS_DTYPES)}
_SUPPORTED = ("Tensor, dict/OrderedDict with str or int keys, list, tuple, int, float, bool, "
              "str and None")


class SerializationError(Exception):
    """A file could not be read as a tensorgrad checkpoint; the message names the path and why."""


# ---- saving -----------------------------------------------------------------------------------
class _Encoder:
    """Turns an object tree into a JSON-ready description and the tensors it holds, each with a
    unique path key."""

    def __init__(self) -> None:
        self.tensors: list[tuple[Tensor, dict[str, Any]]] = []  # (tensor, its node), first seen
        self.keys: set[str] = {"__metadata__"}  # the name safetensors reserves
        self._nodes: dict[int, dict[str, Any]] = {}  # id(tensor) -> node: saved once
        self._open: set[int] = set()  # ids of the containers on the current path (cycle check)

    def encode(self, obj: Any, where: str, path: tuple[str, ...] = (), depth: int = 0) -> Any:
        if obj is None:
            return {"type": "none"}
        if isinstance(obj, (bool, np.bool_)):
            return {"type": "bool", "value": bool(obj)}
        if isinstance(obj, (int, np.integer)):
            return {"type": "int", "value": int(obj)}
        if isinstance(obj, (float, np.floating)):
            value = float(obj)
            # JSON has no NaN or infinity; those travel as their names.
            return {"type": "float", "value": value if math.isfinite(value) else repr(value)}
        if isinstance(obj, str):
            return {"type": "str", "value": obj}
        if isinstance(obj, Tensor):
            return self._tensor(obj, path)
        if isinstance(obj, (dict, list, tuple)):
            if depth >= _MAX_DEPTH:
                raise ValueError(f"tg.save: {where} is nested more than {_MAX_DEPTH} levels "
                                 "deep")
            if id(obj) in self._open:
                raise ValueError(f"tg.save: {where} contains itself (a reference cycle); "
                                 "checkpoints must be trees")
            self._open.add(id(obj))
            try:
                return self._container(obj, where, path, depth + 1)
            finally:
                self._open.discard(id(obj))
        raise TypeError(f"tg.save cannot save {where}: an object of type {type(obj).__name__}; "
                        f"supported are {_SUPPORTED}")

    def _tensor(self, t: Tensor, path: tuple[str, ...]) -> dict[str, Any]:
        node = self._nodes.get(id(t))
        if node is None:
            node = {"type": "tensor", "key": self.unique_key(".".join(path) or "tensor"),
                    "device": str(t.device), "requires_grad": t.requires_grad}
            self._nodes[id(t)] = node
            self.tensors.append((t, node))
        return node

    def unique_key(self, key: str) -> str:
        """key, or key#2, key#3...: {"a.b": x, "a": {"b": y}} gives two tensors one path."""
        candidate, n = key, 1
        while candidate in self.keys:
            n += 1
            candidate = f"{key}#{n}"
        self.keys.add(candidate)
        return candidate

    def _container(self, obj: Any, where: str, path: tuple[str, ...], depth: int) -> Any:
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"tg.save cannot save {where}: dict keys must be str or int, "
                                    f"got {k!r} of type {type(k).__name__}")
                items.append([k, self.encode(v, f"{where}[{k!r}]", (*path, str(k)), depth)])
            kind = "odict" if isinstance(obj, OrderedDict) else "dict"
            return {"type": kind, "items": items}
        kind = "tuple" if isinstance(obj, tuple) else "list"
        return {"type": kind, "items": [self.encode(v, f"{where}[{i}]", (*path, str(i)), depth)
                                        for i, v in enumerate(obj)]}


def _start(array: Any) -> int:
    """The address of an array's first element, on whatever device it lives."""
    interface = getattr(array, "__cuda_array_interface__", None) or array.__array_interface__
    return interface["data"][0]


def _extent(array: Any) -> tuple[int, int]:
    """The [first, last) byte addresses an array of at least one element touches."""
    start = _start(array)
    low = sum((n - 1) * s for n, s in zip(array.shape, array.strides) if s < 0)
    high = sum((n - 1) * s for n, s in zip(array.shape, array.strides) if s > 0)
    return start + low, start + high + array.itemsize


def _root(array: Any) -> Any:
    """The array that owns the memory a view looks at."""
    while isinstance(array.base, type(array)):
        array = array.base
    return array


def _storage(encoder: _Encoder) -> dict[str, tuple[Any, Any]]:
    """key -> (backend, array to store under it, on that backend's device). Tensors whose memory
    overlaps form one group stored once; the nodes of all but the stored one become views.
    A tensor with more elements than its memory holds (expand's zero strides) is saved as a
    copy: a view is never bigger than what it views (tg.load relies on it)."""
    stored: dict[str, tuple[Any, Any]] = {}
    extents = {i: _extent(t.data) for i, (t, _) in enumerate(encoder.tensors) if t.numel() > 0}
    spans = sorted((str(t.device), *extents[i], i) for i, (t, _) in enumerate(encoder.tensors)
                   if i in extents and t.data.nbytes <= extents[i][1] - extents[i][0])
    groups: list[list[int]] = []
    end = ("", 0)  # (device, address) where the current group's memory ends
    for device, low, high, i in spans:
        if (device, low) < end:
            groups[-1].append(i)
            end = max(end, (device, high))
        else:
            groups.append([i])
            end = (device, high)
    shared = {i for group in groups if len(group) > 1 for i in group}
    for t, node in (encoder.tensors[i] for i in range(len(encoder.tensors)) if i not in shared):
        stored[node["key"]] = (t._backend, t.data)
    for group in (g for g in groups if len(g) > 1):
        members = [encoder.tensors[i] for i in sorted(group)]
        if not _store_shared(members, encoder, stored):
            for t, node in members:  # memory no view can express: saved as separate copies
                stored[node["key"]] = (t._backend, t.data)
    return stored


def _store_shared(members: list[tuple[Tensor, dict[str, Any]]], encoder: _Encoder,
                  stored: dict[str, tuple[Any, Any]]) -> bool:
    """Store a group of tensors that share memory as one entry plus views; False when their
    dtypes differ or the memory cannot be addressed in whole elements."""
    dtype, itemsize = members[0][0].data.dtype, members[0][0].data.itemsize
    low = min(_extent(t.data)[0] for t, _ in members)
    high = max(_extent(t.data)[1] for t, _ in members)
    if any(t.data.dtype != dtype or (_extent(t.data)[0] - low) % itemsize
           or any(s % itemsize for s in t.data.strides) for t, _ in members):
        return False
    spanning = [(t, node) for t, node in members
                if t.data.flags.c_contiguous and _extent(t.data) == (low, high)]
    if spanning:
        base, key = spanning[0][0].data, spanning[0][1]["key"]
    else:
        root = _root(members[0][0].data)
        root_low, root_high = _extent(root)
        if (not root.flags.c_contiguous or root.dtype != dtype or root_low > low
                or root_high < high):
            return False
        flat = root.reshape(-1)
        base = flat[(low - root_low) // itemsize:(high - root_low) // itemsize]
        key = encoder.unique_key(f"__shared__.{sum(k.startswith('__shared__.') for k in stored)}")
    stored[key] = (members[0][0]._backend, base)
    for t, node in members:
        if t.data is not base and not (t.data.flags.c_contiguous and t.shape == base.shape
                                       and _extent(t.data)[0] == low):
            node["view"] = {"offset": (_start(t.data) - low) // itemsize, "shape": list(t.shape),
                            "stride": [s // itemsize for s in t.data.strides]}
        node["key"] = key
    return True


def save(obj: Any, f: str | os.PathLike[str] | BinaryIO) -> None:
    """Write obj (a state dict, or a nested container of tensors and numbers such as a training
    checkpoint) to f, a path or a binary file object, as torch.save, in the safetensors format
    and without pickle. A path is written atomically; tensors on a GPU are copied to the host."""
    encoder = _Encoder()
    root = encoder.encode(obj, "obj")
    host: dict[str, np.ndarray] = {}
    for key, (backend, array) in _storage(encoder).items():
        values = backend.to_numpy(array)  # (np.ascontiguousarray turns 0-d into 1-d)
        host[key] = values if values.flags.c_contiguous else values.copy(order="C")
    description = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "root": root}
    # "format": "pt" is the Hugging Face loaders' check that the tensors follow PyTorch's
    # layouts, which tensorgrad's modules share.
    metadata = {"format": "pt", _METADATA_KEY: json.dumps(description, allow_nan=False,
                                                          separators=(",", ":"))}
    if isinstance(f, (str, os.PathLike)):
        _write_atomically(os.fspath(f), lambda out: _write_safetensors(out, host, metadata))
    elif hasattr(f, "write"):
        _write_safetensors(f, host, metadata)
    else:
        raise TypeError(f"tg.save: f must be a path or a binary file object, got "
                        f"{type(f).__name__}")


def _write_safetensors(f: Any, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """What safetensors.serialize(arrays, metadata) returns, written piece by piece: tensors in
    the library's order (dtype, then name), the header padded with spaces. The library pads to
    8 bytes; padding until the data starts at a multiple of 64 reads 400 MB in 45 ms instead of
    105 ms here (the kernel copies from the page cache faster when the source is aligned)."""
    order = sorted(arrays, key=lambda key: (_WRITE_ORDER[_CODES[arrays[key].dtype]], key))
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for key in order:
        array = arrays[key]
        header[key] = {"dtype": _CODES[array.dtype], "shape": list(array.shape),
                       "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 64)
    f.write(struct.pack("<Q", len(text)) + text)
    for key in order:
        if arrays[key].nbytes:
            f.write(memoryview(arrays[key].reshape(-1).view(np.uint8)))


def _write_atomically(path: str, write: Any) -> None:
    """write(binary file) into a temporary, fsync, rename over path, fsync the folder."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"tg.save: cannot write {path}: the folder {folder} does not "
                                "exist")
    name = os.path.basename(path)
    _remove_stale_temporaries(folder, name)
    fd, tmp = _create_temporary(folder, name)
    try:
        with open(fd, "wb", closefd=False) as out:
            write(out)
        os.fsync(fd)
        if os.name == "nt":  # Windows cannot rename a file that is open
            os.close(fd)
            fd = -1
        os.replace(tmp, path)  # before the lock goes, so no cleanup takes the finished file
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    _fsync_folder(folder)


def _create_temporary(folder: str, name: str) -> tuple[int, str]:
    """A new file `.name.<12 hex>.tmp` next to the target, locked for as long as fd is open."""
    while True:
        tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
        # os.open with mode 0o666 gives the file the usual permissions (umask applied), which
        # tempfile.mkstemp's 0o600 would not.
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            # Another save's cleanup may have taken the file for stale between open and flock.
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)


def _remove_stale_temporaries(folder: str, name: str) -> None:
    """Delete the temporaries of earlier saves of this target that no live save holds: those a
    killed process left (its lock died with it)."""
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{12}}\.tmp")
    for entry in os.scandir(folder):
        if not pattern.fullmatch(entry.name):
            continue
        if fcntl is None:
            try:
                os.unlink(entry.path)
            except OSError:  # open in a running save
                pass
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(entry.path)
        except OSError:  # BlockingIOError: a running save holds it
            pass
        finally:
            os.close(fd)


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open a folder for fsync."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- loading ----------------------------------------------------------------------------------
def load(f: str | os.PathLike[str] | BinaryIO, device: str | Device | None = None,
         map_location: str | Device | None = None, weights_only: bool = True,
         mmap: bool = False) -> Any:
    """Read what tg.save wrote (or any safetensors file), as torch.load.

    f is a path or a binary file object. device=None puts each tensor on the device it was saved
    from and raises DeviceUnavailableError when that device is unusable here (nothing changes
    device silently); device="cpu" (or "auto", or any device) puts every tensor there.
    map_location is PyTorch's name for device (a device, not a dict or function). weights_only
    is accepted for PyTorch's call sites: these files hold no code, so both values read the
    same and neither ever unpickles. Files of the previous .npz format are still read
    (deprecated; save them again to convert them).

    mmap=True (as torch.load's) maps a safetensors file instead of reading it: CPU tensors then
    look at the file's pages (copy-on-write: writing to them never changes the file) and load
    takes no time, each page being read when first used. The file stays mapped while such a
    tensor lives: replacing it, as tg.save does, is safe, but changing or truncating it in
    place shows through or kills the process (SIGBUS), and on Windows it cannot be replaced.
    """
    if map_location is not None:
        if not isinstance(map_location, (str, Device)):
            raise TypeError(f"tg.load: map_location must be a device, got "
                            f"{type(map_location).__name__}")
        if device is not None and as_device(device) != as_device(map_location):
            raise ValueError(f"tg.load: device={device!r} and map_location={map_location!r} "
                             "disagree; give one")
        device = map_location
    for flag, value in (("weights_only", weights_only), ("mmap", mmap)):
        if not isinstance(value, bool):
            raise TypeError(f"tg.load: {flag} must be a bool, got {value!r}")
    target = None if device is None else as_device(device)
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        # Unbuffered: a buffered reader would copy the start of each tensor from its buffer and
        # read the rest to a misaligned address, a slower copy out of the page cache.
        with open(path, "rb", buffering=0) as stream:
            return _load_stream(stream, path, target, mmap)
    if not hasattr(f, "read"):
        raise TypeError(f"tg.load: f must be a path or a binary file object, got "
                        f"{type(f).__name__}")
    name = getattr(f, "name", None)
    if not isinstance(name, str):
        name = f"<{type(f).__name__}>"
    if not (hasattr(f, "readinto") and f.seekable()):
        f = io.BytesIO(f.read())
    return _load_stream(f, name, target, mmap)


def _load_stream(f: Any, path: str, target: Device | None, mapped: bool) -> Any:
    start = f.tell()
    size = f.seek(0, io.SEEK_END) - start
    f.seek(start)
    head = f.read(9)
    f.seek(start)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _load_npz(f, path, size, target)
    if head[8:9] != b"{":  # safetensors: any 8-byte length, then the JSON header
        if not head:
            what = "an empty file"
        elif head.startswith(b"\x93NUMPY"):
            what = "a single .npy array"
        elif head[:1] == b"\x80":
            what = ("a pickle (perhaps from torch.save or pickle.dump), which tg.load never "
                    "reads")
        else:
            what = f"not a safetensors file (it starts with {head!r})"
        raise SerializationError(f"{path} is not a tensorgrad checkpoint: {what}")
    metadata, arrays = _read_safetensors(f, path, size, mapped)
    if metadata is None or _METADATA_KEY not in metadata:
        return _SafetensorsDecoder(path, target, arrays).plain()
    description = _parse_json(metadata[_METADATA_KEY], path, "the tensorgrad metadata")
    return _SafetensorsDecoder(path, target, arrays).decode_file(description, FORMAT_VERSION)


def _parse_json(text: str | bytes, path: str, what: str) -> Any:
    """JSON that refuses duplicate keys (which parsers resolve differently) and deep nesting."""
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise SerializationError(f"{path}: {what} has the key {key!r} twice")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=unique)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SerializationError(f"{path}: {what} is not valid JSON ({err})") from None
    except RecursionError:
        raise SerializationError(f"{path}: {what} is nested too deeply to read") from None


def _read_safetensors(f: Any, path: str, size: int, mapped: bool
                      ) -> tuple[dict[str, str] | None, dict[str, np.ndarray]]:
    """The metadata and the arrays of a safetensors file, every entry checked against the file
    before anything is allocated or mapped; the checks are those of the safetensors library."""
    (header_size,) = struct.unpack("<Q", f.read(8))
    if header_size > min(size - 8, _MAX_HEADER_BYTES):
        raise SerializationError(f"{path}: the safetensors header declares {header_size} bytes, "
                                 f"the file has {size - 8} after the length field")
    header = _parse_json(f.read(header_size), path, "the safetensors header")  # starts with {
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(v, str) for v in metadata.values())):
        raise SerializationError(f"{path}: __metadata__ must map strings to strings")
    data_size = size - 8 - header_size
    entries = sorted((_check_entry(path, key, entry) for key, entry in header.items()),
                     key=lambda e: (e[2], e[3]))
    end, previous = 0, None
    for key, _, begin, stop in entries:
        if begin != end:
            what = (f"overlaps tensor {previous!r}" if begin < end else
                    f"leaves the bytes {end} to {begin} unused" if begin <= data_size else
                    f"lies beyond the {data_size} bytes of data")
            raise SerializationError(f"{path}: tensor {key!r} at bytes {begin} to {stop} {what}")
        end, previous = stop, key
    if end != data_size:
        what = "beyond the end of the file" if end > data_size else f"before the {data_size}"
        raise SerializationError(f"{path}: the tensors end at byte {end} of the data, {what}"
                                 + ("" if end > data_size else " bytes the file holds"))
    arrays: dict[str, np.ndarray] = {}
    base = f.tell()
    if mapped:
        try:
            pages = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError) as err:  # io.UnsupportedOperation is both
            raise ValueError(f"tg.load(mmap=True) needs a file on disk, not {path} ({err})"
                             ) from None
    for key, (dtype, shape), begin, _ in entries:
        if mapped:
            array = np.frombuffer(pages, dtype.np, math.prod(shape), base + begin).reshape(shape)
            if not array.flags.aligned:  # a header not padded to 8 bytes (not one of ours)
                array = array.copy()
        else:
            array = np.empty(shape, dtype.np)
            if array.nbytes:
                f.seek(base + begin)
                _read_exactly(f, memoryview(array.reshape(-1).view(np.uint8)), path)
        arrays[key] = array
    return metadata, {key: arrays[key] for key in header}


def _check_entry(path: str, key: str, entry: Any) -> tuple[str, tuple[DType, list[int]], int,
                                                          int]:
    where = f"{path}: tensor {key!r}"
    if not (isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"}):
        raise SerializationError(f"{where}: an entry needs exactly dtype, shape and "
                                 f"data_offsets, got {str(entry)[:80]}")
    dtype = _SAFETENSORS_DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    if dtype is None:
        raise SerializationError(f"{where}: dtype {entry['dtype']!r} is not supported; "
                                 f"tensorgrad reads {', '.join(_SAFETENSORS_DTYPES)}")
    shape, offsets = entry["shape"], entry["data_offsets"]
    if not (isinstance(shape, list) and len(shape) <= _MAX_DIMS
            and all(type(n) is int and n >= 0 for n in shape)):
        raise SerializationError(f"{where}: shape {str(shape)[:80]} is not a list of at most "
                                 f"{_MAX_DIMS} sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(type(n) is int for n in offsets) and 0 <= offsets[0] <= offsets[1]):
        raise SerializationError(f"{where}: data_offsets {offsets!r} is not a [begin, end] "
                                 "pair of byte offsets")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != offsets[1] - offsets[0]:
        raise SerializationError(f"{where}: {dtype.name} of shape {tuple(shape)} needs {nbytes} "
                                 f"bytes, its data_offsets {offsets} give "
                                 f"{offsets[1] - offsets[0]}")
    return key, (dtype, shape), offsets[0], offsets[1]


def _read_exactly(f: Any, buffer: memoryview, path: str) -> None:
    done = 0
    while done < len(buffer):
        n = f.readinto(buffer[done:])
        if not n:
            raise SerializationError(f"{path}: the file ended {len(buffer) - done} bytes early "
                                     "(was it changed while being read?)")
        done += n


class _Decoder:
    """Rebuilds the saved tree from its JSON description; subclasses turn tensor entries into
    Tensors, each from its own kind of file."""

    def __init__(self, path: str, target: Device | None) -> None:
        self.path, self.target = path, target
        self._backends: dict[str, Any] = {}

    def fail(self, what: str) -> SerializationError:
        return SerializationError(f"{self.path}: {what}")

    def decode_file(self, header: Any, version_expected: int) -> Any:
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise self.fail(f"not a tensorgrad checkpoint: the header's format is not "
                            f"{FORMAT_NAME!r}")
        version = header.get("version")
        if type(version) is not int or version != version_expected:
            raise self.fail(f"checkpoint format version {version!r} is not supported here; "
                            f"this container holds version {version_expected}")
        if "root" not in header:
            raise self.fail("the header has no 'root' entry")
        return self.decode(header["root"], "obj", 0)

    def decode(self, node: Any, where: str, depth: int) -> Any:
        kind = node.get("type") if isinstance(node, dict) else None
        if kind == "none":
            return None
        if kind in ("bool", "int", "str"):
            value = node.get("value")
            expected = {"bool": bool, "int": int, "str": str}[kind]
            if type(value) is not expected:
                raise self.fail(f"{where}: {kind} entry holds {value!r}")
            return value
        if kind == "float":
            value = node.get("value")
            if isinstance(value, str) and value in ("nan", "inf", "-inf"):
                return float(value)
            if type(value) not in (int, float):
                raise self.fail(f"{where}: float entry holds {value!r}")
            return float(value)
        if kind == "tensor":
            return self.tensor(node, where)
        if kind not in ("dict", "odict", "list", "tuple"):
            raise self.fail(f"{where}: unknown entry {str(node)[:80]}")
        if depth >= _MAX_DEPTH:
            raise self.fail(f"{where}: containers nested more than {_MAX_DEPTH} levels deep")
        items = node.get("items")
        if not isinstance(items, list):
            raise self.fail(f"{where}: {kind} entry without a list of items")
        if kind in ("list", "tuple"):
            values = [self.decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(items)]
            return tuple(values) if kind == "tuple" else values
        out: dict[Any, Any] = OrderedDict() if kind == "odict" else {}
        for item in items:
            if not (isinstance(item, list) and len(item) == 2
                    and type(item[0]) in (str, int)):
                raise self.fail(f"{where}: malformed dict item {str(item)[:80]}")
            if item[0] in out:
                raise self.fail(f"{where}: the key {item[0]!r} appears twice")
            out[item[0]] = self.decode(item[1], f"{where}[{item[0]!r}]", depth + 1)
        return out

    def tensor(self, node: dict[str, Any], where: str) -> Tensor:
        raise NotImplementedError

    def backend(self, node: dict[str, Any], where: str) -> Any:
        saved_on = node.get("device")
        if not isinstance(saved_on, str):
            raise self.fail(f"{where}: tensor entry without a device")
        if saved_on in self._backends:
            return self._backends[saved_on]
        if self.target is not None:
            backend = get_backend(self.target)
        else:
            try:
                backend = get_backend(Device(saved_on))
            except (ValueError, TypeError):
                raise self.fail(f"{where}: unknown device {saved_on!r}") from None
            except DeviceUnavailableError as err:
                raise DeviceUnavailableError(
                    f"{self.path}: {where} was saved on {saved_on}: {err} "
                    "(tg.load(path, device='cpu') loads the checkpoint onto the CPU)") from None
        self._backends[saved_on] = backend
        return backend

    def requires_grad_flag(self, node: dict[str, Any], where: str) -> bool:
        flag = node.get("requires_grad", False)
        if type(flag) is not bool:
            raise self.fail(f"{where}: requires_grad {str(flag)[:80]} is not a bool")
        return flag

    def requires_grad(self, t: Tensor, node: dict[str, Any], where: str) -> Tensor:
        if not self.requires_grad_flag(node, where):
            return t
        if not t.dtype.is_floating_point:
            raise self.fail(f"{where}: requires_grad on a {t.dtype.name} tensor")
        return t.requires_grad_(True)


class _SafetensorsDecoder(_Decoder):
    """Tensors from the entries of a safetensors file, views rebuilt from the metadata."""

    def __init__(self, path: str, target: Device | None, arrays: dict[str, np.ndarray]) -> None:
        super().__init__(path, target)
        self.arrays = arrays
        self._on_device: dict[tuple[str, int], tuple[Any, list[int]]] = {}
        self._made: dict[tuple[Any, ...], Tensor] = {}

    def plain(self) -> dict[str, Tensor]:
        """A foreign file: its tensors by name, on the CPU unless a device was asked for."""
        backend = get_backend(self.target or Device("cpu"))
        return {key: Tensor._make(backend.asarray(a), backend) for key, a in self.arrays.items()}

    def tensor(self, node: dict[str, Any], where: str) -> Tensor:
        key, view = node.get("key"), node.get("view")
        if not isinstance(key, str) or key not in self.arrays:
            raise self.fail(f"{where}: tensor {key!r} is not in the file")
        backend = self.backend(node, where)
        memo = (key, json.dumps(view), id(backend), self.requires_grad_flag(node, where))
        if memo in self._made:
            return self._made[memo]
        if (key, id(backend)) not in self._on_device:
            # one array and one version counter per entry and device, shared by its views
            self._on_device[key, id(backend)] = (backend.asarray(self.arrays[key]), [0])
        data, version = self._on_device[key, id(backend)]
        if view is not None:
            data = self._view(data, view, backend, where)
        t = self.requires_grad(Tensor._make(data, backend, version=version), node, where)
        self._made[memo] = t
        return t

    def _view(self, data: Any, view: Any, backend: Any, where: str) -> Any:
        """A strided view into data, refused unless every element it reaches is inside."""
        if not (isinstance(view, dict) and set(view) == {"offset", "shape", "stride"}):
            raise self.fail(f"{where}: malformed view {str(view)[:80]}")
        offset, shape, stride = view["offset"], view["shape"], view["stride"]
        if not (type(offset) is int and isinstance(shape, list) and isinstance(stride, list)
                and len(shape) == len(stride) and all(type(n) is int and n >= 0 for n in shape)
                and all(type(s) is int for s in stride)):
            raise self.fail(f"{where}: malformed view {str(view)[:80]}")
        # tg.save writes views of at least one element and at most as many as they view, so
        # a view can neither reach outside its entry nor stand for more memory than the file.
        size = data.size
        low = offset + sum((n - 1) * s for n, s in zip(shape, stride) if s < 0)
        high = offset + sum((n - 1) * s for n, s in zip(shape, stride) if s > 0)
        if not (0 < math.prod(shape) <= size and all(abs(s) <= size for s in stride)
                and 0 <= low and high < size and len(shape) <= _MAX_DIMS):
            raise self.fail(f"{where}: view {str(view)[:80]} does not fit in the {size} "
                            "elements it views")
        flat = data.reshape(-1)[offset:]
        return backend.xp.lib.stride_tricks.as_strided(
            flat, shape=tuple(shape), strides=tuple(s * data.itemsize for s in stride))


# ---- the previous format, read only (deprecated) ----------------------------------------------
def _load_npz(f: Any, path: str, size: int, target: Device | None) -> Any:
    """A checkpoint of format version 1: an .npz archive of stored .npy members and a JSON
    header, checked member by member before NumPy allocates anything."""
    try:
        _check_npz_members(f, path, size)
        with np.load(f, allow_pickle=False) as npz:
            if _NPZ_HEADER not in npz.files:
                raise SerializationError(
                    f"{path}: not a tensorgrad checkpoint: the archive has no '{_NPZ_HEADER}' "
                    f"member (members: {sorted(npz.files)[:5]})")
            raw = npz[_NPZ_HEADER]
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise SerializationError(f"{path}: the header is a {raw.dtype} array of shape "
                                         f"{raw.shape}, expected bytes")
            header = _parse_json(raw.tobytes(), path, "the header")
            return _NpzDecoder(path, target, npz).decode_file(header, _NPZ_VERSION)
    except (SerializationError, DeviceUnavailableError):
        raise
    # NotImplementedError and RuntimeError: zipfile on encrypted members, which tg.save never
    # wrote
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError, NotImplementedError,
            RuntimeError) as err:
        raise SerializationError(
            f"{path} is not a readable tensorgrad checkpoint (truncated, corrupted or another "
            f"format): {type(err).__name__}: {err}") from None


def _check_npz_members(f: Any, path: str, size: int) -> None:
    """Refuse members tg.save never wrote (compressed, duplicated, pickled) and members whose
    declared array size differs from the bytes the file holds for them."""
    start = f.tell()
    with zipfile.ZipFile(f) as archive:
        seen = set()
        for info in archive.infolist():
            where = f"{path}: member {info.filename!r}"
            if info.filename in seen:
                raise SerializationError(f"{where} appears twice")
            seen.add(info.filename)
            if not info.filename.endswith(".npy"):
                raise SerializationError(
                    f"{where} is not an .npy array, so this is no tensorgrad checkpoint (zip "
                    "files of torch.save hold pickles, which tg.load never reads)")
            if info.compress_type != zipfile.ZIP_STORED:
                raise SerializationError(f"{where} is compressed, which tg.save never does")
            if (info.file_size != info.compress_size
                    or info.header_offset + info.compress_size > size):
                raise SerializationError(f"{where} declares {info.file_size} bytes, more than "
                                         "the file holds for it")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(member)
                if dtype.hasobject:
                    raise SerializationError(
                        f"{where} holds pickled data, which tg.load refuses to read because "
                        "unpickling can run arbitrary code")
                nbytes = math.prod(shape) * dtype.itemsize
                if nbytes != info.file_size - member.tell():
                    raise SerializationError(
                        f"{where} declares a {dtype} array of shape {shape} ({nbytes} bytes) "
                        f"but holds {info.file_size - member.tell()} bytes of data")
    f.seek(start)


class _NpzDecoder(_Decoder):
    """Tensors from the .npy members of a version-1 checkpoint."""

    def __init__(self, path: str, target: Device | None, npz: Any) -> None:
        super().__init__(path, target)
        self.npz = npz

    def tensor(self, node: dict[str, Any], where: str) -> Tensor:
        key, dtype_name, shape = node.get("key"), node.get("dtype"), node.get("shape")
        if not isinstance(key, str) or key == _NPZ_HEADER or key not in self.npz.files:
            raise self.fail(f"{where}: tensor data {key!r} is missing from the archive")
        try:
            dtype = as_dtype(dtype_name) if isinstance(dtype_name, str) else None
        except TypeError:
            dtype = None
        if dtype is None or dtype.name != dtype_name:
            raise self.fail(f"{where}: unsupported tensor dtype {dtype_name!r}")
        array = self.npz[key]
        if array.dtype != dtype.np or list(array.shape) != shape:
            raise self.fail(f"{where}: stored array is {array.dtype} of shape {array.shape}, "
                            f"the header says {dtype_name} of shape {shape}")
        backend = self.backend(node, where)
        return self.requires_grad(Tensor._make(backend.asarray(array), backend), node, where)
