"""Every source kind reads the same rows in a stable order; changed or broken data is named."""

from __future__ import annotations

import csv
import json

import pytest

from orcac.errors import OrcacError
from orcac.runtime.answers.source_rows import read_rows, source_sha256
from orcac.sources.problems import BadRow
from orcac.specs.plan import SourcePlan

ROWS = [{"q": f"question {i}", "a": str(i)} for i in range(7)]


def _plan_for(root, **fields) -> SourcePlan:
    source = SourcePlan(sha256="0" * 64, columns=("q", "a"), rows=len(ROWS), **fields)
    return source.model_copy(update={"sha256": source_sha256(source, root)})


def _write_all(root):
    (root / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    with open(root / "d.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["q", "a"])
        writer.writeheader()
        writer.writerows(ROWS)
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), root / "d.parquet")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(root / "hfdir"))


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "jsonl", "path": "d.jsonl"},
        {"kind": "csv", "path": "d.csv"},
        {"kind": "parquet", "path": "d.parquet"},
        {"kind": "hf", "path": "hfdir", "split": "train"},
        {"kind": "sql", "query": "SELECT q, a FROM 'd.parquet'", "files": ("d.parquet",)},
    ],
    ids=lambda f: f["kind"],
)
def test_each_kind_reads_rows_in_order(tmp_path, fields):
    _write_all(tmp_path)
    source = _plan_for(tmp_path, **fields)
    rows = read_rows(source, tmp_path, task="t")
    assert [(r["q"], str(r["a"])) for r in rows] == [(r["q"], r["a"]) for r in ROWS]


def test_sql_paths_resolve_against_the_plan_directory_not_the_cwd(tmp_path, monkeypatch):
    _write_all(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    source = _plan_for(
        tmp_path, kind="sql", query="SELECT * FROM read_json_auto('d.jsonl') WHERE a::INT > 4", files=("d.jsonl",)
    )
    assert [r["q"] for r in read_rows(source, tmp_path, task="t")] == ["question 5", "question 6"]


def test_single_file_hash_is_plain_sha256(tmp_path):
    import hashlib

    _write_all(tmp_path)
    source = _plan_for(tmp_path, kind="jsonl", path="d.jsonl")
    assert source.sha256 == hashlib.sha256((tmp_path / "d.jsonl").read_bytes()).hexdigest()


def test_changed_data_asks_for_a_new_plan(tmp_path):
    _write_all(tmp_path)
    source = _plan_for(tmp_path, kind="jsonl", path="d.jsonl")
    with open(tmp_path / "d.jsonl", "a") as handle:
        handle.write(json.dumps({"q": "new", "a": "9"}) + "\n")
    with pytest.raises(
        OrcacError, match=r"task t: d.jsonl: the data changed since the plan was made: run `orcac plan`"
    ):
        read_rows(source, tmp_path, task="t")


def test_missing_file_names_task_and_file(tmp_path):
    source = SourcePlan(kind="jsonl", path="nope.jsonl", sha256="0" * 64, columns=("q",), rows=1)
    with pytest.raises(OrcacError, match=r"task arith: source file not found: nope.jsonl"):
        read_rows(source, tmp_path, task="arith")


def test_a_malformed_jsonl_line_is_a_bad_row_naming_file_and_line(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"q": "a", "a": "1"}\n{"q": oops}\n')
    source = _plan_for(tmp_path, kind="jsonl", path="d.jsonl")
    assert read_rows(source, tmp_path, task="t") == [
        {"q": "a", "a": "1"},
        BadRow("d.jsonl:2: not valid JSON (Expecting value)"),
    ]


def test_missing_column_is_named(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"q": "a"}\n')
    source = _plan_for(tmp_path, kind="jsonl", path="d.jsonl")
    with pytest.raises(OrcacError, match=r"task t: d.jsonl has no column\(s\) a"):
        read_rows(source, tmp_path, task="t")


def test_bad_sql_is_an_error_not_a_traceback(tmp_path):
    _write_all(tmp_path)
    source = SourcePlan(kind="sql", query="SELEKT 1", files=("d.jsonl",), sha256="0" * 64, columns=("q",), rows=1)
    with pytest.raises(OrcacError, match=r"task t: the sql query does not parse: Parser Error"):
        read_rows(source, tmp_path, task="t")


def test_hf_unknown_split_is_named(tmp_path):
    _write_all(tmp_path)
    source = SourcePlan(kind="hf", path="hfdir", split="validation", sha256="0" * 64, columns=("q",), rows=7)
    with pytest.raises(OrcacError, match=r"task t: hfdir has no split 'validation' \(it has train\)"):
        read_rows(source, tmp_path, task="t")
