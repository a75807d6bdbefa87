"""dtype objects and PyTorch's type-promotion rules.

What lives here: the six dtypes of the API, conversion from anything a user may pass as a dtype,
and `result_type`, which decides the dtype of an op on mixed operands. Casting arrays is the
backends' business, not this module's.
"""

from __future__ import annotations

import numpy as np


class DType:
    """A tensor element type, a thin named wrapper over a NumPy dtype."""

    __slots__ = ("name", "np", "is_floating_point", "itemsize", "_category")

    def __init__(self, name: str, np_dtype: np.dtype, category: int) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = category == 2
        self.itemsize = self.np.itemsize
        self._category = category  # 0 bool, 1 integer, 2 floating: the order promotion follows

    def __repr__(self) -> str:
        return f"tensorgrad.{self.name}"

    def __reduce__(self) -> str:
        return self.name


bool_ = DType("bool", np.bool_, 0)
int32 = DType("int32", np.int32, 1)
int64 = DType("int64", np.int64, 1)
float16 = DType("float16", np.float16, 2)
float32 = DType("float32", np.float32, 2)
float64 = DType("float64", np.float64, 2)

_ALL = (bool_, int32, int64, float16, float32, float64)
_BY_NP = {d.np: d for d in _ALL}
_BY_NAME = {d.name: d for d in _ALL}
_BY_NAME.update({"float": float32, "double": float64, "half": float16, "long": int64,
                 "int": int32})
_DEFAULT_FOR_CATEGORY = {0: bool_, 1: int64, 2: float32}


def as_dtype(dtype: object) -> DType:
    """Turn a DType, NumPy dtype, string or Python type into a DType, or say what is allowed."""
    if isinstance(dtype, DType):
        return dtype
    if dtype is float:
        return float32
    if dtype is int:
        return int64
    if dtype is bool:
        return bool_
    if isinstance(dtype, str) and dtype in _BY_NAME:
        return _BY_NAME[dtype]
    try:
        return _BY_NP[np.dtype(dtype)]
    except (TypeError, KeyError):
        allowed = ", ".join(d.name for d in _ALL)
        raise TypeError(f"unsupported dtype {dtype!r}; tensorgrad supports {allowed}") from None


def from_numpy_dtype(np_dtype: np.dtype) -> DType:
    """The DType of an existing array; arrays of unsupported types are refused by name."""
    try:
        return _BY_NP[np_dtype]
    except KeyError:
        allowed = ", ".join(d.name for d in _ALL)
        raise TypeError(f"arrays of dtype {np_dtype} are not supported; use one of {allowed}"
                        ) from None


def scalar_dtype(value: object) -> DType:
    """The dtype a Python scalar gets when it becomes a tensor on its own."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    return float32


def _scalar_category(value: object) -> int:
    if isinstance(value, (bool, np.bool_)):
        return 0
    if isinstance(value, (int, np.integer)):
        return 1
    return 2


def _promote_tier(dtypes: list[np.dtype]) -> DType:
    """Promotion within one tier: the highest category wins and keeps its own width, so an
    int64 tensor with a float16 tensor is float16 (NumPy would say float64)."""
    kinds = [_BY_NP[d] for d in dtypes]
    top = max(k._category for k in kinds)
    return _BY_NP[np.result_type(*(k.np for k in kinds if k._category == top))]


def result_type(*operands: object) -> DType:
    """PyTorch's promotion: tensors with dimensions decide first, then 0-d tensors, then
    Python (and NumPy) scalars, each tier only when it brings a higher category
    (bool < integer < floating). So a float32 tensor times 2.5 or times a float64 0-d tensor
    stays float32, and an int64 tensor times 2.5 becomes the default float32."""
    dims: list[np.dtype] = []
    zero_d: list[np.dtype] = []
    scalar_cat = -1
    for op in operands:
        data = getattr(op, "_data", None)
        if data is not None:
            (dims if data.ndim else zero_d).append(data.dtype)
        else:
            scalar_cat = max(scalar_cat, _scalar_category(op))
    result = _promote_tier(dims) if dims else None
    if zero_d:
        z = _promote_tier(zero_d)
        if result is None or z._category > result._category:
            result = z
    if scalar_cat >= 0 and (result is None or scalar_cat > result._category):
        result = _DEFAULT_FOR_CATEGORY[scalar_cat]
    return result
