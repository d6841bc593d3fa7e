"""Every example in a docstring under orcac/ runs, and shows what the code really returns.

The modules are found by scanning the package's files for `>>> `, not from a list, so a module
that moves or gains examples is checked without an edit here; each is imported only when its
test runs (some import torch), never while pytest collects.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def modules_with_examples() -> dict[str, Path]:
    """{dotted module name: file} for every module under orcac/ whose text has a `>>> ` line."""
    found = {}
    for path in sorted((ROOT / "orcac").rglob("*.py")):
        if any(line.lstrip().startswith(">>> ") for line in path.read_text(encoding="utf-8").splitlines()):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules_with_examples()


def test_the_scan_finds_the_modules_with_examples():
    assert len(MODULES) >= 10
    assert "orcac.costs" in MODULES


@pytest.mark.parametrize("name", sorted(MODULES))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve() == MODULES[name].resolve(), "imported another copy of orcac"
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    assert tests, f"{name} has a '>>> ' line that is in no docstring doctest finds"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted > 0 and failed == 0, "".join(report)
