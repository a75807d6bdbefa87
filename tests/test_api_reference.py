"""docs/API.md has an entry for every public name, and every entry names something public.

An entry is a list item whose lead (before the first "`: ") names one or more objects in
backticks: "- `zeros(*size, ...)`, `ones(...)`: ...". Entries belong to the module of the last
"## `tg.xxx`" heading above them; "## `tg.Tensor`" lists the Tensor's public attributes.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import tensorgrad as tg

API = Path(__file__).resolve().parents[1] / "docs" / "API.md"

# The modules a user imports names from. A module without __all__ exports what it defines.
MODULES = ["tg", "tg.autograd", "tg.nn", "tg.nn.functional", "tg.nn.init", "tg.nn.utils",
           "tg.nn.parallel", "tg.optim", "tg.optim.lr_scheduler", "tg.data", "tg.data.datasets",
           "tg.utils", "tg.cuda", "tg.viz", "tg.distributed"]


def public_names(section: str) -> set[str]:
    if section == "tg.Tensor":
        return {name for name in dir(tg.Tensor) if not name.startswith("_")}
    module = importlib.import_module(section.replace("tg", "tensorgrad", 1))
    if hasattr(module, "__all__"):
        return set(module.__all__)
    return {name for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__}


def documented_names(text: str) -> dict[str, list[str]]:
    """{section: names in the order the entries give them}."""
    sections: dict[str, list[str]] = {}
    section = None
    entry: list[str] = []

    def close_entry() -> None:
        if entry and section is not None:
            lead = " ".join(entry).split("`: ", 1)[0]
            sections[section] += re.findall(r"`([A-Za-z_]\w*)", lead)
        entry.clear()

    for line in text.splitlines():
        if line.startswith("- ") or not line.startswith("  "):
            close_entry()
        if heading := re.fullmatch(r"## `(tg[\w.]*)`", line):
            section = heading.group(1)
            sections.setdefault(section, [])
        elif line.startswith("## "):
            section = None
        if line.startswith("- ") or (entry and line.startswith("  ")):
            entry.append(line)
    close_entry()
    return sections


def problems(text: str) -> list[str]:
    found = []
    for section, names in documented_names(text).items():
        public = public_names(section)
        if missing := sorted(public - set(names)):
            found.append(f"{section}: no entry for {', '.join(missing)}")
        if unknown := sorted(set(names) - public):
            found.append(f"{section}: entries naming nothing public: {', '.join(unknown)}")
        if repeated := sorted({n for n in names if names.count(n) > 1}):
            found.append(f"{section}: more than one entry for {', '.join(repeated)}")
    return found


def test_sections_cover_the_public_modules() -> None:
    assert set(documented_names(API.read_text(encoding="utf-8"))) == {*MODULES, "tg.Tensor"}


def test_every_public_name_has_an_entry_and_every_entry_names_one() -> None:
    found = problems(API.read_text(encoding="utf-8"))
    assert not found, "docs/API.md is out of step with the code:\n" + "\n".join(found)


def test_the_parser_sees_entries_across_lines_and_only_their_leads() -> None:
    text = ("## `tg.viz`\n\n- `draw_graph(t, format=\"svg\",\n  path=None)`, `to_dot(t)`: "
            "drawn.\n  Mentions `Graph` in the description only.\n\n## Notes\n\n- `Graph`: x\n")
    assert documented_names(text) == {"tg.viz": ["draw_graph", "to_dot"]}
    assert problems(text) == ["tg.viz: no entry for Graph"]
    assert problems(text + "## `tg.viz`\n\n- `Graph`, `Plot`: y\n") == [
        "tg.viz: entries naming nothing public: Plot"]
