"""ruff (lint and format) over every file and mypy over the typed packages, configured in
pyproject.toml: `make test` fails on what they report, with their own words."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True)


def test_ruff_finds_nothing():
    done = _run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-1000:]


def test_ruff_format_leaves_every_file_as_it_is():
    done = _run("ruff", "format", "--no-cache", "--check", ".")
    assert done.returncode == 0, "run `.venv/bin/ruff format .`:\n" + done.stdout[-3000:] + done.stderr[-1000:]


def test_ruff_sees_the_folders_named_build():
    """ruff's default `exclude` skips any folder named build or dist: a file in one must be linted."""
    done = _run("ruff", "check", "--no-cache", "--show-files", ".")
    seen = {Path(line).relative_to(ROOT).as_posix() for line in done.stdout.splitlines() if line.startswith(str(ROOT))}
    assert "orcac/runtime/commands/build_records/command.py" in seen
    assert any(name.startswith("benchmarks/") for name in seen) and any(name.startswith("tests/") for name in seen)


@pytest.mark.slow  # a cold mypy reads the typed packages' whole import graph
def test_mypy_finds_nothing():
    done = _run("mypy", "--python-executable", sys.executable)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-1000:]
