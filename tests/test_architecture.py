"""ARCHITECTURE.md stays true: every repository path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATH = re.compile(r"`((?:orcac|tests|benchmarks|examples|docs)/[\w./-]+)`")


def test_every_path_in_architecture_exists():
    named = set(PATH.findall((ROOT / "ARCHITECTURE.md").read_text()))
    assert len(named) > 20  # the pattern still finds the module tables
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"


def test_every_module_is_in_architecture():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    modules = [p.relative_to(ROOT).as_posix() for p in (ROOT / "orcac").rglob("*.py") if p.name != "__init__.py"]
    undocumented = sorted(m for m in modules if f"`{m}`" not in text)
    assert not undocumented, f"modules missing from ARCHITECTURE.md: {undocumented}"
