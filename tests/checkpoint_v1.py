"""Writes checkpoints in the format tg.save wrote before safetensors (version 1: an .npz archive
of .npy members t0, t1, ... and a JSON `__header__`), for tests of what tg.load still reads."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

import tensorgrad as tg


def save_v1(obj: Any, path: Path) -> None:
    """Write obj as the previous tg.save did (commit e44a646)."""
    arrays: dict[str, np.ndarray] = {}

    def encode(x: Any) -> dict[str, Any]:
        if isinstance(x, tg.Tensor):
            key = f"t{len(arrays)}"
            arrays[key] = x.numpy()
            return {"type": "tensor", "key": key, "dtype": x.dtype.name, "shape": list(x.shape),
                    "device": str(x.device), "requires_grad": x.requires_grad}
        if isinstance(x, dict):
            kind = "odict" if isinstance(x, OrderedDict) else "dict"
            return {"type": kind, "items": [[k, encode(v)] for k, v in x.items()]}
        if isinstance(x, (list, tuple)):
            kind = "tuple" if isinstance(x, tuple) else "list"
            return {"type": kind, "items": [encode(v) for v in x]}
        if x is None:
            return {"type": "none"}
        if isinstance(x, float):
            return {"type": "float", "value": x if math.isfinite(x) else repr(x)}
        kind = {bool: "bool", int: "int", str: "str"}[type(x)]
        return {"type": kind, "value": x}

    header = {"format": "tensorgrad.checkpoint", "version": 1, "root": encode(obj)}
    raw = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as f:  # a path would get ".npz" appended
        np.savez(f, __header__=raw, **arrays)
