"""`orcac report` (issue 21): the strategy each eval answer follows, per task and arm, and the
records that point at a prompt the student never sees. A real DuckDB file with the rows
`orcac build` and `orcac eval` write; the page checked as data and as text."""

from __future__ import annotations

import pytest

from orcac.runtime.commands.report import command as report
from orcac.runtime.store.database import Store
from orcac.specs.forms import FORMS
from orcac.specs.plan import AdherenceRule
from tests.support.plans import make_plan


def _rule(name: str) -> AdherenceRule:
    pattern, description = FORMS[name]
    return AdherenceRule(kind="regex", pattern=pattern, description=description)


@pytest.fixture
def filled(tmp_path):
    plan = make_plan(adherence=(_rule("numbered_steps"), _rule("answer_line")))
    database = tmp_path / "spec.duckdb"
    with Store.open(database) as store:
        con = store.con
        for i, answer in enumerate(
            ["1. 2 + 2 = 4\n2. So 4.\nAnswer: 4", "As instructed, Answer: 4", "Following the example above:\nAnswer: 4"]
        ):
            con.execute("INSERT INTO records (record_id, task, assistant) VALUES (?, 'arith', ?)", [f"r{i}", answer])
        for model, follows in (("base", ["none", "none", "step"]), ("trained", ["step", "step", "none"])):
            con.execute(
                "INSERT INTO eval_runs (run_id, model, task, created_at) VALUES ('e1', ?, 'arith', now())", [model]
            )
            for i, f in enumerate(follows):
                con.execute(
                    "INSERT INTO eval_answers (run_id, model, task, row_index, follows) VALUES ('e1', ?, 'arith', ?, ?)",
                    [model, i, f],
                )
    return plan, database


def test_the_report_counts_the_strategy_each_answer_follows(filled):
    plan, database = filled
    with Store.open(database, read_only=True) as store:
        data = report.gather(plan, store)
    assert data["followed"] == {
        "columns": ["step", "none", "several"],
        "rows": [
            {"task": "arith", "arm": "base", "own": "step", "n": 3, "counts": [1, 2, 0]},
            {"task": "arith", "arm": "trained", "own": "step", "n": 3, "counts": [2, 1, 0]},
        ],
    }
    page = report.render({**data, "database": database.name})
    assert 'id="eval-followed-table"' in page
    assert '<td class="own">1*</td>' in page and '<td class="own">2*</td>' in page  # base's and trained's "step"


def test_the_report_counts_records_that_point_at_the_hidden_prompt(filled):
    plan, database = filled
    with Store.open(database, read_only=True) as store:
        data = report.gather(plan, store)
    assert data["echoes"] == {"arith": 2}
    page = report.render({**data, "database": database.name})
    assert 'id="echoes"' in page and "<code>arith</code> 2" in page


def test_a_database_from_before_follows_shows_no_table(filled, tmp_path):
    import duckdb

    plan, database = filled
    con = duckdb.connect(str(database))
    con.execute("ALTER TABLE eval_answers DROP COLUMN follows")
    con.execute("UPDATE schema_version SET version = 3")
    con.close()
    with Store.open(database, read_only=True) as store:
        assert report.gather(plan, store)["followed"] is None
