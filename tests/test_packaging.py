"""The built wheel ships exactly kernels/*.cuh inside the package, and an installed copy finds
them there (not in a source checkout). Builds offline with the current environment's hatchling
and installs with --no-deps into a fresh venv that sees this environment's numpy."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(c) for c in cmd], check=False, cwd=cwd, capture_output=True,
                          text=True)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling", reason="hatchling is needed to build the wheel")
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", out, ROOT, cwd=out)
    (path,) = out.glob("*.whl")
    return path


def test_wheel_contains_exactly_the_kernel_sources(wheel: Path):
    expected = sorted(p.name for p in (ROOT / "kernels").iterdir())
    assert expected and all(name.endswith(".cuh") for name in expected)
    with zipfile.ZipFile(wheel) as zf:
        shipped = sorted(n.rsplit("/", 1)[1] for n in zf.namelist()
                         if n.startswith("tensorgrad/_kernels/"))
        assert not any(n.startswith("kernels/") for n in zf.namelist())
    assert shipped == expected


def test_installed_package_finds_its_kernel_sources(wheel: Path, tmp_path: Path):
    env = tmp_path / "venv"
    venv.create(env, system_site_packages=False, with_pip=False)
    python = env / "bin" / "python"
    # The fresh venv sees this environment's site-packages (numpy) through a .pth file, after
    # its own, so the installed tensorgrad wins over nothing from the checkout.
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                     cwd=tmp_path).strip())
    ours = [p for p in sys.path if p.endswith("site-packages")]
    (site / "outer.pth").write_text("\n".join(ours) + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         wheel, cwd=tmp_path)
    code = (
        "import json, tensorgrad.backend._cuda_kernels as ck\n"
        "names = sorted({e[0] for e in ck._KERNELS.values()} | {'common.cuh'})\n"
        "print(json.dumps({'module': ck.__file__,\n"
        "                  'found': {n: str(ck._find_source(n)) for n in names},\n"
        "                  'preamble': all(len(ck._preamble(n)) > 0 for n in names)}))\n"
    )
    report = json.loads(_run(python, "-I", "-c", code, cwd=tmp_path))
    package = Path(report["module"]).parents[1]
    assert package.parent == site and ROOT not in package.parents
    kernels = package / "_kernels"
    assert report["preamble"]
    for name, found in report["found"].items():
        assert Path(found) == kernels / name, name
