"""cupy.lib of the emulator."""

from . import stride_tricks  # noqa: F401
