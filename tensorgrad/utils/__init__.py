"""tg.utils: where PyTorch scripts look for torch.utils.data; tg.utils.data is tg.data."""

from __future__ import annotations

import sys

from .. import data

# `import tensorgrad.utils.data` must find the same module as `tg.utils.data`.
sys.modules[f"{__name__}.data"] = data

__all__ = ["data"]
