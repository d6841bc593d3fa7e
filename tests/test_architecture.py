"""ARCHITECTURE.md stays true: every path it names exists, every module is in it, each fact
lives where its table says, and the layers it draws hold (import-linter)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def _where_things_live() -> list[tuple[str, str, str]]:
    """(fact, module, mark) rows of ARCHITECTURE.md's "Where things live" table."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|`]+?) \| `([^`]+)` \| `([^`]+)` \|$", section, re.M)
    assert len(rows) >= 8, "the table lost its rows (or this pattern no longer reads them)"
    return rows


@pytest.mark.parametrize("fact,module,mark", _where_things_live(), ids=lambda v: v if "/" in v else None)
def test_each_fact_lives_in_one_module(fact, module, mark):
    pattern = re.compile(mark, re.M)
    found = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "orcac").rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    )
    assert module in found, f"{fact}: {module} no longer holds {mark!r}: the table is stale"
    assert found == [module], f"{fact}: {mark!r} is also in {[m for m in found if m != module]}"


def test_the_layers_hold():
    """import-linter's contracts in pyproject.toml: the layers drawn above, no cycles."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout and "kept" in done.stdout


SQL = re.compile(r"\b(SELECT\s|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE|ALTER TABLE)")


def test_every_query_of_the_database_is_in_the_store():
    """The runtime's SQL lives in orcac/runtime/store/, one module per command that owns it:
    a command or library calls the store's functions (orcac/sources/sql.py runs the user's own
    query over source files, not the database)."""
    outside = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "orcac" / "runtime").rglob("*.py")
        if "store" not in p.relative_to(ROOT / "orcac" / "runtime").parts and SQL.search(p.read_text(encoding="utf-8"))
    )
    assert not outside, f"SQL outside orcac/runtime/store/: {outside}"
