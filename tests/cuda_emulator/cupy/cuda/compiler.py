"""cupy.cuda.compiler of the emulator: the error a kernel that does not compile raises."""

from __future__ import annotations


class CompileException(Exception):
    """The host compiler's diagnostics for a kernel's generated source, with the source."""

    def __init__(self, msg: str, source: str, name: str, options: tuple[str, ...]) -> None:
        self._msg = msg
        self.source = source
        self.name = name
        self.options = options
        super().__init__(msg)

    def dump(self, f: object) -> None:
        print(self.source, file=f)  # type: ignore[call-overload]
