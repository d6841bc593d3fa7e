"""The DuckDB store: idempotent schema, upserts that never duplicate, all-or-nothing batches."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from orcac.errors import OrcacError
from orcac.runtime.store import database as store_module
from orcac.runtime.store.database import Flusher, Store
from orcac.runtime.store.schema import TABLES as SCHEMA
from tests.support.clock import wait_until


def _responses(ids, text="a") -> pa.Table:
    return pa.table({"job_id": ids, "text": [text] * len(ids), "prompt_tokens": [1] * len(ids)})


def test_schema_is_created_once_and_reopening_keeps_data(tmp_path):
    path = tmp_path / "x" / "b.duckdb"
    with Store.open(path) as store:
        store.write({"responses": _responses(["j1", "j2"])})
    with Store.open(path) as store:
        names = {r[0] for r in store.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert set(SCHEMA) <= names
        assert store.con.execute("SELECT count(*) FROM responses").fetchone() == (2,)


def test_upsert_replaces_by_primary_key(tmp_path):
    with Store.open(tmp_path / "b.duckdb") as store:
        store.write({"responses": _responses(["j1", "j2"], "old")})
        store.write({"responses": _responses(["j2", "j3"], "new")})
        rows = store.con.execute("SELECT job_id, text FROM responses ORDER BY job_id").fetchall()
    assert rows == [("j1", "old"), ("j2", "new"), ("j3", "new")]


def test_a_failing_batch_writes_nothing(tmp_path):
    with Store.open(tmp_path / "b.duckdb") as store:
        bad = pa.table({"job_id": ["j9"], "no_such_column": [1]})
        with pytest.raises(
            duckdb.BinderException, match='Table "jobs" does not have a column with name "no_such_column"'
        ):
            store.write({"responses": _responses(["j1"]), "jobs": bad})
        assert store.con.execute("SELECT count(*) FROM responses").fetchone() == (0,)


def test_stale_rows_are_deleted_in_the_same_transaction(tmp_path):
    with Store.open(tmp_path / "b.duckdb") as store:
        store.write({"responses": _responses(["j1", "j2", "j3"])})
        store.write({}, keep={"responses": ("job_id", ["j2", "j3"])}, drop={"responses": ("job_id", ["j3"])})
        assert store.rows("SELECT job_id FROM responses") == [("j2",)]


def test_flusher_writes_by_count_and_by_time(tmp_path, clock, monkeypatch):
    # The writer thread's deadline is on a fake clock that moves only when the test says: time
    # alone can flush nothing here, so a batch written before `clock.advance` went by count.
    clock.install(monkeypatch, store_module)
    with Store.open(tmp_path / "b.duckdb") as store:
        flusher = Flusher(store, lambda batch: {"responses": _responses(batch)}, every=3, seconds=0.2)
        for i in range(3):
            flusher.add(f"j{i}")
        assert wait_until(lambda: flusher.flushed == 3), "a full batch goes at once"
        flusher.add("j3")
        clock.advance(0.2)
        assert wait_until(lambda: flusher.flushed == 4), "a partial one after `seconds`"
        flusher.add("j4")
        flusher.close()  # and the rest on close
        assert store.con.execute("SELECT count(*) FROM responses").fetchone() == (5,)


def test_flusher_surfaces_a_write_error(tmp_path):
    with Store.open(tmp_path / "b.duckdb") as store:
        flusher = Flusher(store, lambda batch: {"responses": pa.table({"nope": batch})}, every=1)
        flusher.add("x")
        with pytest.raises(duckdb.BinderException, match='does not have a column named "job_id"'):
            flusher.close()  # the writer thread's error, raised in the caller


def test_read_only_open_of_a_missing_db_says_build_first(tmp_path):
    with pytest.raises(OrcacError, match="no build database at .*none.duckdb") as caught:
        Store.open(tmp_path / "none.duckdb", read_only=True)
    assert "run `orcac build` first" in caught.value.hint


# ---- the schema version ------------------------------------------------------------------


def _pre_version_file(path) -> None:
    """A database as orcac wrote it before versions were stamped: the build's tables and an
    eval_answers table without its job_id column."""
    import duckdb

    con = duckdb.connect(str(path))
    con.execute(f"CREATE TABLE responses ({SCHEMA['responses']})")
    con.execute("INSERT INTO responses (job_id, text) VALUES ('j1', 'kept')")
    con.execute(
        "CREATE TABLE eval_answers (run_id VARCHAR, model VARCHAR, task VARCHAR, row_index BIGINT, prompt VARCHAR, "
        "gold VARCHAR, answer VARCHAR, finish_reason VARCHAR, new_tokens INTEGER, accepted BOOLEAN, reason VARCHAR, "
        "adheres BOOLEAN, broken VARCHAR)"
    )
    con.close()


def test_a_new_file_is_stamped_with_the_current_version(tmp_path):
    from orcac.runtime.store.database import schema_version
    from orcac.runtime.store.schema import SCHEMA_VERSION

    with Store.open(tmp_path / "b.duckdb") as store:
        assert schema_version(store.con) == SCHEMA_VERSION


def test_a_file_from_before_versions_is_migrated_on_its_next_write(tmp_path):
    from orcac.runtime.store.database import schema_version
    from orcac.runtime.store.schema import SCHEMA_VERSION

    path = tmp_path / "old.duckdb"
    _pre_version_file(path)
    with Store.open(path, read_only=True) as store:  # readable as it is
        assert schema_version(store.con) == 0
    with Store.open(path) as store:
        assert schema_version(store.con) == SCHEMA_VERSION
        columns = {
            r[0]
            for r in store.rows("SELECT column_name FROM information_schema.columns WHERE table_name = 'eval_answers'")
        }
        assert "job_id" in columns
        assert store.rows("SELECT text FROM responses") == [("kept",)]  # nothing lost
        tables = {r[0] for r in store.rows("SELECT table_name FROM information_schema.tables")}
        assert set(SCHEMA) <= tables


def test_a_file_from_a_newer_orcac_is_refused_in_one_line(tmp_path):
    import duckdb

    from orcac.runtime.store.schema import SCHEMA_VERSION

    path = tmp_path / "new.duckdb"
    with Store.open(path):
        pass
    con = duckdb.connect(str(path))
    con.execute("UPDATE schema_version SET version = ?", [SCHEMA_VERSION + 1])
    con.close()
    for read_only in (True, False):
        with pytest.raises(
            OrcacError,
            match=rf"written by a newer orcac \(database schema {SCHEMA_VERSION + 1}; this orcac knows up to {SCHEMA_VERSION}\)",
        ):
            Store.open(path, read_only=read_only)


# version -> the tables that came after it: 2 added `judgements` (orcac/runtime/answers/judges.py),
# 3 eval's calls and judges (orcac/runtime/commands/evaluate/calls.py, judging.py); 4 added columns to
# `responses` (below); 5 eval's standard benchmarks (orcac/runtime/commands/evaluate/benchmarks.py); 6
# eval's paired tests (orcac/stats.py, with interval columns in eval_runs and eval_gaps: below).
LATER_TABLES = {
    1: ("judgements", "eval_calls", "eval_judgements", "eval_benchmarks", "eval_paired"),
    2: ("eval_calls", "eval_judgements", "eval_benchmarks", "eval_paired"),
    3: ("eval_benchmarks", "eval_paired"),
    4: ("eval_benchmarks", "eval_paired"),
    5: ("eval_paired",),
}


def test_a_version_3_file_gains_the_strategy_each_eval_answer_follows(tmp_path):
    """Version 7 added eval_answers.follows (orcac.specs.forms.followed): a version 3 file's
    answers keep their rows and read NULL there."""
    import duckdb

    from orcac.runtime.store.database import schema_version
    from orcac.runtime.store.schema import SCHEMA_VERSION

    path = tmp_path / "v3.duckdb"
    con = duckdb.connect(str(path))
    for name, body in SCHEMA.items():
        con.execute(f"CREATE TABLE {name} ({body.replace(', follows VARCHAR', '')})")
    con.execute("INSERT INTO schema_version VALUES (3)")
    con.execute("INSERT INTO eval_answers (run_id, model, answer) VALUES ('r1', 'base', 'Answer: 4')")
    con.close()
    with Store.open(path) as store:
        assert schema_version(store.con) == SCHEMA_VERSION
        assert store.rows("SELECT run_id, answer, follows FROM eval_answers") == [("r1", "Answer: 4", None)]


@pytest.mark.parametrize("version", sorted(LATER_TABLES))
def test_an_older_versions_file_gets_the_later_tables_and_keeps_its_rows(tmp_path, version):
    """A file of an older version has every other table, and is migrated on its next write
    without losing a row; the tables it gains take rows."""
    import duckdb

    from orcac.runtime.store.database import schema_version
    from orcac.runtime.store.schema import SCHEMA_VERSION

    assert SCHEMA_VERSION == 8  # a new version that adds tables adds its row to LATER_TABLES
    path = tmp_path / f"v{version}.duckdb"
    con = duckdb.connect(str(path))
    for name, body in SCHEMA.items():
        if name not in LATER_TABLES[version]:
            con.execute(f"CREATE TABLE {name} ({body})")
    con.execute("INSERT INTO schema_version VALUES (?)", [version])
    con.execute("INSERT INTO checks (item_id, accepted, reason) VALUES ('i1', true, 'accepted')")
    con.close()
    with Store.open(path, read_only=True) as store:  # readable as it is: the tables it lacks read as empty
        assert schema_version(store.con) == version
    with Store.open(path) as store:
        assert schema_version(store.con) == SCHEMA_VERSION
        assert store.rows("SELECT item_id, reason FROM checks") == [("i1", "accepted")]
        tables = {r[0] for r in store.rows("SELECT table_name FROM information_schema.tables")}
        assert set(LATER_TABLES[version]) <= tables
        store.write({"judgements": pa.table({"item_id": ["i1"], "judge": ["helpful"], "score": [8.0]})})
        assert store.rows("SELECT item_id, judge, score FROM judgements") == [("i1", "helpful", 8.0)]
        store.con.execute("INSERT INTO eval_calls (job_id, purpose, text) VALUES ('j1', 'judged(helpful)', 'Score: 8')")
        assert store.rows("SELECT job_id, text FROM eval_calls") == [("j1", "Score: 8")]


def test_a_version_3_file_keeps_its_answers_and_gains_what_reuse_needs(tmp_path):
    """Version 4 added to `responses` the job's family, the limit it was asked under and where
    the answer came from (orcac/runtime/commands/build_records/reuse.py): an older file's answers stay, with
    those NULL (never reused across a limit, but still this job's answer)."""
    import duckdb

    from orcac.runtime.store.database import schema_version
    from orcac.runtime.store.schema import SCHEMA_VERSION

    path = tmp_path / "v3.duckdb"
    con = duckdb.connect(str(path))
    for name, body in SCHEMA.items():
        if name == "responses":  # as version 3 made it
            body = (
                "job_id VARCHAR PRIMARY KEY, text VARCHAR, finish_reason VARCHAR, prompt_tokens BIGINT, "
                "completion_tokens BIGINT, cost DOUBLE, latency_s DOUBLE, model VARCHAR, attempts INTEGER"
            )
        con.execute(f"CREATE TABLE {name} ({body})")
    con.execute("INSERT INTO schema_version VALUES (3)")
    con.execute(
        "INSERT INTO responses (job_id, text, finish_reason, completion_tokens) VALUES ('j1', 'kept', 'stop', 4)"
    )
    con.close()
    with Store.open(path) as store:
        assert schema_version(store.con) == SCHEMA_VERSION
        assert store.rows(
            "SELECT job_id, text, finish_reason, completion_tokens, family, max_tokens, origin, "
            "reused_from FROM responses"
        ) == [("j1", "kept", "stop", 4, None, None, None, None)]


def test_a_version_3_file_gains_the_interval_columns_and_keeps_its_eval_rows(tmp_path):
    """Version 6 added each eval rate's n and 95% interval (eval_runs), the gap closed's
    interval (eval_gaps) and eval_paired: an older file's eval rows survive, the new columns
    read NULL for them and take values for the next run's."""
    import duckdb

    from orcac.runtime.store.database import schema_version
    from orcac.runtime.store.schema import SCHEMA_VERSION

    old_columns = {
        "eval_runs": """run_id VARCHAR, model VARCHAR, model_path VARCHAR, task VARCHAR, strategy VARCHAR,
            examples INTEGER, accepted INTEGER, adherent INTEGER, truncated INTEGER,
            accuracy DOUBLE, adherence DOUBLE, seconds DOUBLE, plan_sha256 VARCHAR, created_at TIMESTAMP""",
        "eval_gaps": """run_id VARCHAR, task VARCHAR, metric VARCHAR, base DOUBLE, prompted DOUBLE, trained DOUBLE,
            gap_closed DOUBLE, plan_sha256 VARCHAR""",
    }
    path = tmp_path / "v3.duckdb"
    con = duckdb.connect(str(path))
    for name, body in SCHEMA.items():
        if name != "eval_paired":
            con.execute(f"CREATE TABLE {name} ({old_columns.get(name, body)})")
    con.execute("INSERT INTO schema_version VALUES (3)")
    con.execute(
        "INSERT INTO eval_runs VALUES ('e1', 'base', '', 'add', 's', 12, 10, 12, 0, 0.83, 1.0, 1.0, 'x', now())"
    )
    con.execute("INSERT INTO eval_gaps VALUES ('e1', 'add', 'accuracy', 0.5, 1.0, 0.83, 0.66, 'x')")
    con.close()
    with Store.open(path) as store:
        assert schema_version(store.con) == SCHEMA_VERSION
        assert store.rows("SELECT model, accuracy, accuracy_n, accuracy_low FROM eval_runs") == [
            ("base", 0.83, None, None)
        ]
        assert store.rows("SELECT gap_closed, gap_low, gap_high FROM eval_gaps") == [(0.66, None, None)]
        store.con.execute("INSERT INTO eval_paired VALUES ('e2', 'add', 'accuracy', 12, 0, 6, 0.03125, 'x')")
        assert store.rows("SELECT better, p_value FROM eval_paired") == [(6, 0.03125)]


def test_a_version_7_file_gains_the_jobs_reason_column_filled_from_the_error_text(tmp_path):
    """Version 8 added jobs.reason: a version 7 file's failed jobs get it once, read out of
    their error text ("<reason>: <detail>"); answered and pending jobs keep NULL; nothing else moves."""
    import duckdb

    from orcac.runtime.store.database import schema_version
    from orcac.runtime.store.schema import SCHEMA_VERSION

    path = tmp_path / "v7.duckdb"
    con = duckdb.connect(str(path))
    for name, body in SCHEMA.items():
        con.execute(f"CREATE TABLE {name} ({body.replace(', reason VARCHAR', '') if name == 'jobs' else body})")
    con.execute("INSERT INTO schema_version VALUES (7)")
    rows = [
        ("j1", "failed", "timeout: no answer in 60.0 s: the server: slow"),
        ("j2", "failed", "batch_expired"),
        ("j3", "failed", None),
        ("j4", "ok", None),
        ("j5", "pending", None),
    ]
    con.executemany("INSERT INTO jobs (job_id, status, error) VALUES (?, ?, ?)", rows)
    con.close()
    with Store.open(path) as store:
        assert schema_version(store.con) == SCHEMA_VERSION
        assert store.rows("SELECT job_id, status, error, reason FROM jobs ORDER BY job_id") == [
            ("j1", "failed", "timeout: no answer in 60.0 s: the server: slow", "timeout"),
            ("j2", "failed", "batch_expired", "batch_expired"),
            ("j3", "failed", None, "failed"),
            ("j4", "ok", None, None),
            ("j5", "pending", None, None),
        ]
