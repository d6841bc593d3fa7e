"""The DuckDB store: idempotent schema, upserts that never duplicate, all-or-nothing batches."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from orcac.errors import OrcacError
from orcac.runtime.store import database as store_module
from orcac.runtime.store.database import Flusher, SCHEMA, Store
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
        with pytest.raises(duckdb.BinderException, match='Table "jobs" does not have a column with name "no_such_column"'):
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
