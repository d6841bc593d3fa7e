"""eval's and the report's queries live in the store (orcac/runtime/store/evaluations.py,
orcac/runtime/store/reports.py); the commands and the results they show hold no SQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orcac.runtime.store import evaluations
from orcac.runtime.store.database import Store
from tests.support.db import rows

ROOT = Path(__file__).resolve().parents[2]
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|information_schema)\b|\.execute(many)?\(")
WITHOUT_SQL = sorted(
    [
        *(ROOT / "orcac/runtime/commands/evaluate").glob("*.py"),
        *(ROOT / "orcac/runtime/commands/report").glob("*.py"),
        ROOT / "orcac/runtime/results/evaluation.py",
    ]
)


@pytest.mark.parametrize("module", WITHOUT_SQL, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_eval_and_report_modules_leave_every_query_to_the_store(module):
    found = [f"{n}: {line.strip()}" for n, line in enumerate(module.read_text().splitlines(), 1) if SQL.search(line)]
    assert not found, f"{module.relative_to(ROOT)} queries the database itself: {found}"


def test_a_row_missing_a_column_is_refused_before_anything_is_written(tmp_path):
    """Writers take rows keyed by column: a row without one is an error here, not a shifted column."""
    db = tmp_path / "eval.duckdb"
    row = dict.fromkeys(evaluations.PAIRED_COLUMNS, None) | {"run_id": "r", "task": "add", "metric": "accuracy"}
    with evaluations.writing(db) as store:
        evaluations.insert_paired(store, [row])
        with pytest.raises(KeyError, match="p_value"):
            evaluations.insert_paired(store, [{k: v for k, v in row.items() if k != "p_value"}])
    assert rows(db, "SELECT run_id, task, metric FROM eval_paired") == [("r", "add", "accuracy")]


def test_eval_writes_leave_a_dead_builds_run_as_it_found_it(tmp_path):
    """Marking a build that died as interrupted is the next build's business (`Store.open`), not eval's."""
    db = tmp_path / "eval.duckdb"
    with evaluations.writing(db) as store:
        store.con.execute("INSERT INTO runs (run_id, status) VALUES ('b', 'running')")
    with evaluations.writing(db) as store:
        evaluations.insert_paired(store, [])
    assert rows(db, "SELECT status FROM runs") == [("running",)]
    with Store.open(db):
        pass
    assert rows(db, "SELECT status FROM runs") == [("interrupted",)]
