"""The README's example runs and prints what its comment says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_circuit_example_prints_the_lecture_values():
    block = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block is not None, "README has no python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.group(1), str(README), "exec"), {})
    assert out.getvalue().split() == ["-12.0", "-4.0", "-4.0", "3.0"]


def test_readme_lists_every_example_and_only_existing_ones():
    text = README.read_text(encoding="utf-8")
    named = set(re.findall(r"examples/(\w+\.py)", text))
    present = {p.name for p in (README.parent / "examples").glob("[a-z]*.py")}
    assert named == present, (f"README names missing scripts {sorted(named - present)}; "
                              f"scripts missing from README {sorted(present - named)}")


def test_readme_installs_from_the_checkout_not_from_an_index():
    # The distribution is not on any index yet: `pip install tensorgrad-engine` fails.
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    installs = [line for block in blocks for line in block.splitlines() if "pip install" in line]
    assert installs, "README gives no install command"
    for line in installs:
        command = line.split("pip install", 1)[1].split("#")[0].split("&&")[0]
        target = command.split()[-1].strip("\"'")
        assert target == "." or target.startswith((".[", "git+")), line


def test_readme_points_to_the_api_reference_in_the_repository():
    text = README.read_text(encoding="utf-8")
    assert "docs/API.md" in text and "shared documents" not in text
    assert (README.parent / "docs" / "API.md").is_file()
