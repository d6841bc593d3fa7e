"""Every ```orca block in docs/language.md is a complete spec that compiles."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from orcac.compiler import compile_spec, diagnose
from orcac.specs.diagnostics import render
from orcac.compiler.fmt import format_text

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "language.md"
SNIPPETS = re.findall(r"^```orca\n(.*?)^```", DOC.read_text(), re.S | re.M)


def test_the_doc_has_snippets():
    assert len(SNIPPETS) >= 10


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_compiles(index, tmp_path):
    shutil.copytree(ROOT / "tests" / "golden" / "orca", tmp_path, dirs_exist_ok=True)
    spec = tmp_path / f"snippet{index}.orca"
    spec.write_text(SNIPPETS[index])
    diags = diagnose(spec)
    assert not diags.items, render(diags.items, diags.sources)
    compile_spec(spec)
    format_text(SNIPPETS[index], spec.name)  # the formatter accepts it too
