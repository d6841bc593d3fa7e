"""Every ```orca block in docs/language.md is a complete spec that compiles."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from orcac.compiler import compile_spec, diagnose
from orcac.compiler.fmt import format_text
from orcac.specs.diagnostics import render

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "language.md"
SNIPPETS = re.findall(r"^```orca\n(.*?)^```", DOC.read_text(), re.S | re.M)


@pytest.fixture(autouse=True)
def hub_cache(tmp_path, monkeypatch):
    """The Hub dataset a snippet names, in a Hugging Face cache of the test's own (offline)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.support.hub import seed_cache

    sink = io.BytesIO()
    pq.write_table(pa.table({"question": ["What is 2 + 3?", "What is 4 * 5?"], "answer": ["#### 5", "#### 20"]}), sink)
    cache = tmp_path / "hf-hub-cache"
    readme = b"---\nconfigs:\n- config_name: main\n  data_files:\n  - split: train\n    path: main/train-*\n---\n"
    seed_cache(cache, "openai/gsm8k", {"README.md": readme, "main/train-00000-of-00001.parquet": sink.getvalue()})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


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
