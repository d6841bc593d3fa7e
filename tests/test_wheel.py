"""orcac installs from its wheel, outside the clone: the wheel carries the data files the
compiler reads (the stdlib `.orca` files, the grammar, the plan's JSON Schema, the report
template), and a fresh venv with only that wheel runs `orcac check` and `orcac plan` on the
README tutorial's spec.

The wheel is built by `python -m build --wheel --no-isolation` where `build` is installed, else
by `pip wheel --no-build-isolation` (the same setuptools backend), against the locked
setuptools either way, so no package is fetched. The
fresh venv reads orcac's dependencies from this venv's site-packages through a `.pth` file
(offline, in CI as here); orcac itself comes only from the wheel.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.test_readme import tutorial_steps

ROOT = Path(__file__).resolve().parents[1]
DATA_FILES = (
    "orcac/stdlib/strategies.orca",
    "orcac/stdlib/erase.orca",
    "orcac/grammar/orca.lark",
    "orcac/specs/plan.schema.json",
    "orcac/runtime/commands/report/templates/report.html.j2",
)


def build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"  # a copy: an in-tree build would leave build/ and *.egg-info in the clone
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "orcac", source / "orcac", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    if importlib.util.find_spec("build") is not None:
        command = ["-m", "build", "--wheel", "--no-isolation", "-o", str(dist), str(source)]
    else:
        command = [
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(dist),
            str(source),
        ]
    subprocess.run([sys.executable, *command], check=True, capture_output=True, text=True)
    (wheel,) = dist.glob("orcac-*.whl")
    return wheel


@pytest.mark.slow
def test_the_wheel_installs_and_compiles_the_readme_tutorial(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(DATA_FILES) <= names, sorted(set(DATA_FILES) - names)
    assert not any(n.startswith(("tests/", "examples/")) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "orcac-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "work"
    for kind, step in tutorial_steps():
        if kind == "file":
            name, content = step.split("\n", 1)
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_text(content)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(venv / "bin" / argv[0]), *argv[1:]], cwd=work, env=env, capture_output=True, text=True
        )

    where = run("python", "-c", "import orcac; print(orcac.__file__)")
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr  # the wheel's orcac, not the clone's
    check = run("orcac", "check", "capitals.orca")
    assert (check.returncode, check.stdout) == (0, "capitals.orca: ok\n"), check.stderr
    plan = run("orcac", "plan", "capitals.orca")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "sha256:" in (work / "capitals.plan.yaml").read_text()
