"""tg.save and tg.load: checkpoints that cannot run code when they are loaded.

The file is a NumPy .npz archive written and read with `allow_pickle=False`: one .npy member per
tensor (`t0`, `t1`, ...) plus `__header__`, a UTF-8 JSON document (as a uint8 array) that gives
the format name and version and describes the saved object's structure. Loading therefore never
unpickles anything; a file that is not ours, is cut short, or carries a pickle raises
SerializationError. Writes go to a temporary file in the target's folder, are fsynced and then
renamed over the target, so a crash mid-save leaves the previous checkpoint as it was.

What can be saved: Tensors; dicts (and OrderedDicts) keyed by str or int; lists and tuples;
int, float, bool, str and None (NumPy scalars are saved as the Python number they hold).
Tensors come back as leaves (values only, no graph) with the requires_grad they had.
"""

from __future__ import annotations

import json
import math
import os
import uuid
import zipfile
from collections import OrderedDict
from typing import Any

import numpy as np

from ._device import Device, DeviceUnavailableError, as_device
from ._dtype import as_dtype
from ._tensor import Tensor
from .backend import get_backend

FORMAT_NAME = "tensorgrad.checkpoint"
FORMAT_VERSION = 1
_HEADER_KEY = "__header__"
_SUPPORTED = ("Tensor, dict/OrderedDict with str or int keys, list, tuple, int, float, bool, "
              "str and None")


class SerializationError(Exception):
    """A file could not be read as a tensorgrad checkpoint; the message names the path and why."""


# ---- saving -----------------------------------------------------------------------------------
class _Encoder:
    """Turns an object tree into a JSON-ready description plus the arrays it refers to."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self._open: set[int] = set()  # ids of the containers on the current path (cycle check)

    def encode(self, obj: Any, where: str) -> Any:
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
            return self._tensor(obj)
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self._open:
                raise ValueError(f"tg.save: {where} contains itself (a reference cycle); "
                                 "checkpoints must be trees")
            self._open.add(id(obj))
            try:
                return self._container(obj, where)
            finally:
                self._open.discard(id(obj))
        raise TypeError(f"tg.save cannot save {where}: an object of type {type(obj).__name__}; "
                        f"supported are {_SUPPORTED}")

    def _tensor(self, t: Tensor) -> dict[str, Any]:
        key = f"t{len(self.arrays)}"
        self.arrays[key] = t.numpy()  # write_array handles views and Fortran order itself
        return {"type": "tensor", "key": key, "dtype": t.dtype.name, "shape": list(t.shape),
                "device": str(t.device), "requires_grad": t.requires_grad}

    def _container(self, obj: Any, where: str) -> dict[str, Any]:
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"tg.save cannot save {where}: dict keys must be str or int, "
                                    f"got {k!r} of type {type(k).__name__}")
                items.append([k, self.encode(v, f"{where}[{k!r}]")])
            kind = "odict" if isinstance(obj, OrderedDict) else "dict"
            return {"type": kind, "items": items}
        kind = "tuple" if isinstance(obj, tuple) else "list"
        return {"type": kind, "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write obj (a state dict or a nested container of tensors and numbers) to path, as
    torch.save, atomically and without pickle. Tensors on a GPU are copied to the host."""
    encoder = _Encoder()
    root = encoder.encode(obj, "obj")
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "root": root}
    header_bytes = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
    arrays = {_HEADER_KEY: np.frombuffer(header_bytes, dtype=np.uint8), **encoder.arrays}

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"tg.save: cannot write {path}: the folder {folder} does not "
                                "exist")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    # os.open with mode 0o666 gives the file the usual permissions (umask applied), which
    # tempfile.mkstemp's 0o600 would not.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def _write_npz(f: Any, arrays: dict[str, np.ndarray]) -> None:
    """What np.savez does, with allow_pickle=False spelled out on every NumPy version."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


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
def load(path: str | os.PathLike[str], device: str | Device | None = None) -> Any:
    """Read what tg.save wrote, as torch.load. device=None puts each tensor on the device it was
    saved from and raises DeviceUnavailableError when that device is unusable here (nothing
    changes device silently); device="cpu" (or "auto", or any device) puts every tensor there,
    as torch.load's map_location."""
    path = os.fspath(path)
    target = None if device is None else as_device(device)
    # NumPy is handed an open file, not the path: on a broken zip, np.load(path) leaks the
    # file it opened.
    with open(path, "rb") as f:
        _check_magic(path, f.read(6))
        f.seek(0)
        return _load_npz(path, f, target)


def _load_npz(path: str, f: Any, target: Device | None) -> Any:
    try:
        with np.load(f, allow_pickle=False) as npz:
            return _Decoder(path, npz, target).decode_file()
    except SerializationError:
        raise
    except ValueError as err:
        if "pickle" in str(err).lower() or "object arrays" in str(err).lower():
            raise SerializationError(
                f"{path} holds pickled data, which tg.load refuses to read because unpickling "
                f"can run arbitrary code ({err})") from None
        raise SerializationError(f"{path} is not a readable tensorgrad checkpoint: {err}"
                                 ) from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, UnicodeDecodeError,
            RecursionError) as err:
        raise SerializationError(
            f"{path} is not a readable tensorgrad checkpoint (truncated, corrupted or another "
            f"format): {type(err).__name__}: {err}") from None


def _check_magic(path: str, start: bytes) -> None:
    """Name the format of a file that is not a zip archive before NumPy guesses at it."""
    if start.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return
    if not start:
        what = "an empty file"
    elif start.startswith(b"\x93NUMPY"):
        what = "a single .npy array, not an .npz archive"
    elif start[:1] == b"\x80":
        what = "a pickle (perhaps from torch.save or pickle.dump), which tg.load never reads"
    else:
        what = f"not a zip archive (it starts with {start!r})"
    raise SerializationError(f"{path} is not a tensorgrad checkpoint: {what}")


class _Decoder:
    """Rebuilds the saved tree from the header, checking every part against the archive."""

    def __init__(self, path: str, npz: Any, target: Device | None) -> None:
        self.path, self.npz, self.target = path, npz, target
        self._backends: dict[str, Any] = {}

    def fail(self, what: str) -> SerializationError:
        return SerializationError(f"{self.path}: {what}")

    def decode_file(self) -> Any:
        if _HEADER_KEY not in self.npz.files:
            raise self.fail("not a tensorgrad checkpoint: the archive has no "
                            f"'{_HEADER_KEY}' member (members: {sorted(self.npz.files)[:5]})")
        raw = self.npz[_HEADER_KEY]
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise self.fail(f"the header is a {raw.dtype} array of shape {raw.shape}, "
                            "expected bytes")
        try:
            header = json.loads(raw.tobytes().decode("utf-8"))
        except json.JSONDecodeError as err:
            raise self.fail(f"the header is not valid JSON ({err})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise self.fail(f"not a tensorgrad checkpoint: the header's format is not "
                            f"{FORMAT_NAME!r}")
        version = header.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise self.fail(f"checkpoint format version {version!r} is not supported; this "
                            f"tensorgrad reads versions 1 to {FORMAT_VERSION}")
        if "root" not in header:
            raise self.fail("the header has no 'root' entry")
        return self.decode(header["root"], "obj")

    def decode(self, node: Any, where: str) -> Any:
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
            return self._tensor(node, where)
        if kind in ("dict", "odict"):
            out: dict[Any, Any] = OrderedDict() if kind == "odict" else {}
            for item in self._items(node, where):
                if not (isinstance(item, list) and len(item) == 2
                        and type(item[0]) in (str, int)):
                    raise self.fail(f"{where}: malformed dict item {str(item)[:80]}")
                out[item[0]] = self.decode(item[1], f"{where}[{item[0]!r}]")
            return out
        if kind in ("list", "tuple"):
            values = [self.decode(v, f"{where}[{i}]")
                      for i, v in enumerate(self._items(node, where))]
            return tuple(values) if kind == "tuple" else values
        raise self.fail(f"{where}: unknown entry {str(node)[:80]}")

    def _items(self, node: dict[str, Any], where: str) -> list[Any]:
        items = node.get("items")
        if not isinstance(items, list):
            raise self.fail(f"{where}: {node.get('type')} entry without a list of items")
        return items

    def _tensor(self, node: dict[str, Any], where: str) -> Tensor:
        key, dtype_name, shape = node.get("key"), node.get("dtype"), node.get("shape")
        if not isinstance(key, str) or key == _HEADER_KEY or key not in self.npz.files:
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
        saved_on = node.get("device")
        if not isinstance(saved_on, str):
            raise self.fail(f"{where}: tensor entry without a device")
        backend = self._backend(saved_on, where)
        t = Tensor._make(backend.asarray(array), backend)
        if node.get("requires_grad") is True and dtype.is_floating_point:
            t.requires_grad_(True)
        return t

    def _backend(self, saved_on: str, where: str) -> Any:
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
