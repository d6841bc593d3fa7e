"""The build's DuckDB file: one writer, bulk inserts through Arrow, one transaction per flush.

    store = Store.open(root / ".orca" / "cautious.duckdb")
    store.write({"responses": table, "records": table})   # one transaction, all or nothing

Tables (created idempotently; primary keys are what make a resumed build write nothing twice):

    runs       one row per `orcac build`: plan hash, versions, started/ended, status (running,
               finished, failed, interrupted: a run found 'running' by the next one died unseen)
    examples   (task, row_index): split, probe flag, rendered prompt and gold
    jobs       job_id (content-addressed request): task/strategy/row of its first use,
               teacher, model, messages (JSON), status ok|failed, attempts, last error
    responses  job_id: the teacher's text, finish reason, tokens, cost, latency, model
    checks     item_id (task, row, job): accepted, reason
    records    record_id (= item_id): the prompt-erased training rows
    batches, batch_jobs, batch_results   a batch teacher's files, their jobs, their result lines
    owner      the one spec (its stem, see `spec_stem`) whose build this file holds

One spec, one database: a build deletes rows its plan no longer produces, so a file shared by
two specs would lose one's records to the other's build. `Store.open(..., spec=...)` refuses
a file that holds another spec's build (one line, exit 1) instead.

Nothing here holds an API key: jobs keep messages and the model string, never call options.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa  # callers build the tables; a re-run that writes nothing never imports it

from orcac.errors import OrcacError

SCHEMA: dict[str, str] = {
    "runs": """
        run_id VARCHAR PRIMARY KEY, plan_sha256 VARCHAR, orcac_version VARCHAR, python VARCHAR,
        duckdb_version VARCHAR, started TIMESTAMP, ended TIMESTAMP, status VARCHAR,
        calls BIGINT, cost DOUBLE""",
    "examples": """
        task VARCHAR, row_index BIGINT, split VARCHAR, probe BOOLEAN, prompt VARCHAR, gold VARCHAR,
        source_sha256 VARCHAR, PRIMARY KEY (task, row_index)""",
    "jobs": """
        job_id VARCHAR PRIMARY KEY, task VARCHAR, strategy VARCHAR, row_index BIGINT, teacher VARCHAR,
        model VARCHAR, messages VARCHAR, status VARCHAR, attempts INTEGER, error VARCHAR""",
    "responses": """
        job_id VARCHAR PRIMARY KEY, text VARCHAR, finish_reason VARCHAR, prompt_tokens BIGINT,
        completion_tokens BIGINT, cost DOUBLE, latency_s DOUBLE, model VARCHAR, attempts INTEGER""",
    "checks": """
        item_id VARCHAR PRIMARY KEY, job_id VARCHAR, task VARCHAR, strategy VARCHAR, row_index BIGINT,
        accepted BOOLEAN, reason VARCHAR""",
    "records": """
        record_id VARCHAR PRIMARY KEY, task VARCHAR, strategy VARCHAR, split VARCHAR, row_index BIGINT,
        system VARCHAR, "user" VARCHAR, assistant VARCHAR, teacher VARCHAR, gold VARCHAR, job_id VARCHAR""",
    # The batch path (orcac/runtime/teachers/batch.py): one row per uploaded file, the jobs in it,
    # and the lines its output and error files held once the batch ended.
    "batches": """
        input_file_id VARCHAR PRIMARY KEY, teacher VARCHAR, api_base VARCHAR, batch_id VARCHAR, status VARCHAR,
        lines BIGINT, completed BIGINT, failed BIGINT, output_file_id VARCHAR, error_file_id VARCHAR,
        collected BOOLEAN""",
    "batch_jobs": """
        input_file_id VARCHAR, job_id VARCHAR, n INTEGER, PRIMARY KEY (input_file_id, job_id)""",
    "batch_results": """
        input_file_id VARCHAR, job_id VARCHAR, line VARCHAR, ok BOOLEAN, n INTEGER,
        PRIMARY KEY (input_file_id, job_id)""",
}

KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id",),
    "examples": ("task", "row_index"),
    "jobs": ("job_id",),
    "responses": ("job_id",),
    "checks": ("item_id",),
    "records": ("record_id",),
}

OWNER_TABLE = "CREATE TABLE IF NOT EXISTS owner (spec VARCHAR)"


def arrow_table(con, sql: str, params: list | None = None) -> pa.Table:
    """A query's result as a pyarrow Table (`to_arrow_table` in DuckDB 2, `arrow` before)."""
    relation = con.sql(sql, params=params or None)
    method = getattr(relation, "to_arrow_table", None) or relation.arrow
    return method()


def in_list(column: str) -> str:
    """A condition matching `column` against one VARCHAR[] parameter (pass the ids as a list).

    One list parameter instead of a registered Arrow table: building any pyarrow array
    imports pandas, which a re-run that changes nothing never needs.
    """
    return f"{column} IN (SELECT unnest(?::VARCHAR[]))"


def default_path(root: Path, spec: str) -> Path:
    """`.orca/<spec stem>.duckdb` beside the plan: `spec` is the plan's `spec` (its file name)."""
    from orcac.specs.plan import spec_stem

    return root / ".orca" / f"{spec_stem(spec)}.duckdb"


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection; a file another process holds is one line (exit 1), not a traceback."""
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as error:
        if "lock" in str(error).lower():
            raise OrcacError(
                f"{path} is in use by another orcac process", hint="wait for it to finish, or pass another --db"
            ) from None
        raise OrcacError(f"cannot open {path}: {error}") from None


def claim(con: duckdb.DuckDBPyConnection, path: Path, spec: str, *, write: bool) -> None:
    """Refuse a database that holds another spec's build; with `write`, mark it as `spec`'s.

    A file from before this table (or made by hand) has no owner and is taken as is.
    """
    from orcac.specs.plan import spec_stem

    stem = spec_stem(spec)
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    # fetchall, not fetchone: a result left half-read blocks the connection's next query.
    owner = next(iter(con.execute("SELECT spec FROM owner").fetchall()), None) if "owner" in tables else None
    if owner is not None and owner[0] != stem:
        raise OrcacError(
            f"{path} holds the build of spec {owner[0]!r}, not of {stem!r}: one database per spec, "
            "so that building one never deletes the other's records",
            hint=f"leave out --db (the default is .orca/{stem}.duckdb), or pass a new file",
        )
    if write and owner is None:
        con.execute(OWNER_TABLE)
        con.execute("INSERT INTO owner VALUES (?)", [stem])


class Store:
    """The one connection that writes; use it from one thread at a time."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path):
        self.con = con
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False, spec: str | None = None) -> Store:
        """The database at `path`; with `spec` (the plan's), refused if it holds another spec's build."""
        path = Path(path)
        if read_only and not path.exists():
            raise OrcacError(f"no build database at {path}", hint="run `orcac build` first (or pass --db)")
        path.parent.mkdir(parents=True, exist_ok=True)
        con = connect(path, read_only=read_only)
        con.execute("SET enable_progress_bar = false")  # stdout belongs to orcac
        store = cls(con, path)
        try:
            if spec is not None:
                claim(con, path, spec, write=not read_only)
            if not read_only:
                with store._lock:
                    con.execute("BEGIN")
                    for name, body in SCHEMA.items():
                        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({body})")
                    # A run left 'running' is one whose process died (kill -9, power): this
                    # process holds the only write lock, so no other run can be live.
                    con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
                    con.execute("COMMIT")
        except BaseException:
            con.close()
            raise
        return store

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- writing ------------------------------------------------------------------------

    def write(
        self,
        tables: dict[str, pa.Table],
        *,
        keep: dict[str, tuple[str, list[str]]] | None = None,
        drop: dict[str, tuple[str, list[str]]] | None = None,
    ) -> None:
        """Upsert each Arrow table into its namesake, all in one transaction.

        Applied first: `keep` {table: (key column, keys)} deletes the table's rows whose key is
        not listed (stale rows of an older plan); `drop` {table: (key column, keys)} deletes
        the listed ones. Key lists go in as one list parameter each, not row by row.
        """
        with self._lock:
            con = self.con
            con.execute("BEGIN")
            try:
                for table, (key, keys) in (keep or {}).items():
                    con.execute(f"DELETE FROM {table} WHERE {key} NOT IN (SELECT unnest(?::VARCHAR[]))", [keys])
                for table, (key, keys) in (drop or {}).items():
                    if keys:
                        con.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT unnest(?::VARCHAR[]))", [keys])
                for name, batch in tables.items():
                    if batch.num_rows == 0:
                        continue
                    columns = ", ".join(f'"{c}"' for c in batch.column_names)
                    view = f"_batch_{name}"
                    con.register(view, batch)
                    key = KEYS.get(name)
                    if key:
                        # Delete-then-insert: half the time of INSERT OR REPLACE, which checks
                        # and updates row by row through the index (measured in bench_store).
                        match = " AND ".join(f"{name}.{k} = {view}.{k}" for k in key)
                        con.execute(f"DELETE FROM {name} USING {view} WHERE {match}")
                        con.execute(f"INSERT INTO {name} ({columns}) SELECT {columns} FROM {view}")
                    else:  # a table another module added: its own primary key decides
                        con.execute(f"INSERT OR REPLACE INTO {name} ({columns}) SELECT {columns} FROM {view}")
                    con.unregister(view)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def execute(self, sql: str, params: list | None = None) -> None:
        with self._lock:
            self.con.execute(sql, params or [])

    # ---- reading ------------------------------------------------------------------------

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        """A query's rows as tuples: the light path (no Arrow, so pyarrow never pulls in pandas)."""
        with self._lock:
            return self.con.execute(sql, params or []).fetchall()

    def query(self, sql: str, params: list | None = None, **views: pa.Table) -> pa.Table:
        """Run a query (with Arrow tables registered under the given names) as an Arrow table."""
        with self._lock:
            for name, table in views.items():
                self.con.register(name, table)
            try:
                return arrow_table(self.con, sql, params)
            finally:
                for name in views:
                    self.con.unregister(name)


class Flusher:
    """Buffers items and writes them every `every` items or `seconds`, on a thread of its own.

    `convert(items) -> {table: arrow table}` turns a batch into one `Store.write` (one
    transaction), so a process killed at any moment loses only the unflushed batch, which a
    resumed build redoes. `add` is cheap and safe to call from the event loop.
    """

    def __init__(
        self,
        store: Store,
        convert: Callable[[list], dict[str, pa.Table]],
        *,
        every: int = 1000,
        seconds: float = 1.0,
        on_flush: Callable[[list], None] | None = None,
    ):
        self.store = store
        self.convert = convert
        self.every = every
        self.seconds = seconds
        self.on_flush = on_flush
        self._buffer: list = []
        self._cond = threading.Condition()
        self._closing = False
        self._error: BaseException | None = None
        self.flushed = 0
        self._thread = threading.Thread(target=self._run, name="orcac-store-writer", daemon=True)
        self._thread.start()

    def add(self, item) -> None:
        if self._error is not None:
            raise self._error
        with self._cond:
            self._buffer.append(item)
            if len(self._buffer) >= self.every:
                self._cond.notify()

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while True:
            with self._cond:
                while not self._closing and len(self._buffer) < self.every:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch, self._buffer = self._buffer, []
                closing = self._closing
            deadline = time.monotonic() + self.seconds
            if batch:
                try:
                    self.store.write(self.convert(batch))
                    self.flushed += len(batch)
                    if self.on_flush:
                        self.on_flush(batch)
                except BaseException as error:  # surfaced to the caller by add() / close()
                    self._error = error
                    return
            if closing:
                return

    def close(self) -> None:
        """Write what is buffered and stop; re-raises a write error from the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error
