"""fmt, schema, check --format json, source headers, and what `orcac check` may import."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from orcac.compiler.commands import schema_text
from orcac.compiler.fmt import format_text

from .helpers import EXAMPLES, GOLDEN, ROOT, run_cli

STDLIB = sorted((ROOT / "orcac" / "stdlib").glob("*.orca"))
FORMATTABLE = [
    *EXAMPLES,
    *STDLIB,
    *sorted((GOLDEN / "orca").rglob("*.orca")),
    *[p for p in sorted((GOLDEN / "invalid").glob("*.orca")) if not p.stem.startswith("syntax_")],
]


def _comments(text: str) -> list[str]:
    return sorted(c.rstrip() for c in re.findall(r"(?m)#[^\n\"]*$", text))


@pytest.mark.parametrize("spec", FORMATTABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_fmt_is_idempotent_and_keeps_comments(spec):
    text = spec.read_text()
    once = format_text(text, spec.name)
    assert format_text(once, spec.name) == once
    assert _comments(once) == _comments(text)


@pytest.mark.parametrize("spec", [*EXAMPLES, *STDLIB], ids=lambda p: p.name)
def test_shipped_specs_are_formatted(spec):
    assert format_text(spec.read_text(), spec.name) == spec.read_text()


def test_fmt_keeps_the_meaning(tmp_path):
    import shutil

    from orcac.compiler import compile_spec, dump_plan

    shutil.copytree(GOLDEN / "orca", tmp_path / "s")
    spec = tmp_path / "s" / "full.orca"
    before = dump_plan(compile_spec(spec))
    messy = spec.read_text().replace("\n  ", "\n      ").replace(" = ", "=")
    spec.write_text(messy)
    assert run_cli("fmt", "--check", str(spec))[0] == 1
    assert run_cli("fmt", str(spec))[0] == 0
    assert run_cli("fmt", "--check", str(spec))[0] == 0

    def strip(plan: str) -> str:  # declaration line numbers may move; nothing else may
        return re.sub(r"(?m)^(\s*origin: .*):\d+$", r"\1", plan)

    assert strip(dump_plan(compile_spec(spec))) == strip(before)


def test_fmt_reports_syntax_errors():
    code, out, err = run_cli("fmt", "--check", "tests/golden/invalid/syntax_missing_value.orca")
    assert code == 1 and "expected a value" in err


def test_committed_schema_is_current():
    assert (ROOT / "orcac" / "specs" / "plan.schema.json").read_text() == schema_text(), (
        "run: orcac schema -o orcac/specs/plan.schema.json"
    )


def test_check_json_format():
    code, out, err = run_cli(
        "check", "--format", "json", "tests/golden/invalid/gold.orca", "tests/golden/orca/minimal.orca"
    )
    assert code == 1
    data = json.loads(out)
    bad, good = data["files"]
    assert not data["ok"] and good["ok"] and good["diagnostics"] == []
    first = bad["diagnostics"][0]
    assert set(first) == {"file", "line", "column", "end_line", "end_column", "severity", "message", "hint"}
    assert first["file"] == "tests/golden/invalid/gold.orca" and first["severity"] == "error"


def test_parquet_footer_reader_matches_pyarrow():
    import pyarrow.parquet as pq

    from orcac.sources.parquet_footer import parquet_header

    for p in [*ROOT.glob("examples/*/data/*.parquet"), *(GOLDEN / "orca" / "data").glob("*.parquet")]:
        f = pq.ParquetFile(p)
        assert parquet_header(p) == (tuple(f.schema_arrow.names), f.metadata.num_rows), p


def test_sql_literals_are_the_files_a_query_reads():
    from orcac.sources.sql import sql_literals

    q = "SELECT * FROM 'a/b.parquet' JOIN read_csv('c.csv', header = true) USING (k) WHERE x = 'not a file'"
    assert sql_literals(q) == ["a/b.parquet", "c.csv"]


HEAVY = ("torch", "transformers", "litellm", "duckdb", "datasets", "pyarrow", "yaml", "pygls", "lsprotocol", "lm_eval")


@pytest.mark.parametrize("spec", ["examples/cautious_reasoner/cautious.orca", "examples/support_triage/triage.orca"])
def test_check_imports_nothing_heavy(spec):
    code = (
        "import sys\n"
        "from orcac.cli import main\n"
        f"rc = main(['check', {spec!r}])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "0 []"


def test_user_errors_never_print_a_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "orcac.cli", "check", "tests/golden/invalid/values.orca"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("spec", FORMATTABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_fast_lexer_agrees_with_larks_basic_lexer(spec):
    from lark import Lark

    from orcac.grammar import GRAMMAR, parser

    reference = Lark(GRAMMAR.read_text(), parser="lalr", lexer="basic")
    text = spec.read_text()

    def key(tokens):
        return [(t.type, t.value, t.line, t.column, t.end_line, t.end_column) for t in tokens]

    from lark.lexer import LexerState, TextSlice

    ours = parser().parser.lexer.lex(LexerState(TextSlice.cast_from(text)), None)
    assert key(ours) == key(reference.lex(text))
