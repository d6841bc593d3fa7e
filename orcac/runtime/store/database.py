"""The build's DuckDB file: one writer, bulk inserts through Arrow, one transaction per flush.

    store = Store.open(context.db)
    store.write({"responses": table, "records": table})   # one transaction, all or nothing

The tables and their versions are in `orcac/runtime/store/schema.py`; the build's are

    runs       one row per `orcac build`: plan hash, versions, started/ended, status (running,
               finished, failed, interrupted: a run found 'running' by the next one died unseen)
    examples   (task, row_index): split, probe flag, rendered prompt and gold
    jobs       job_id (content-addressed request): task/strategy/row of its first use,
               teacher, model, messages (JSON), status ok|failed, attempts, last error
    responses  job_id: the teacher's text, finish reason, tokens, cost, latency, model
    checks     item_id (task, row, job): accepted, reason
    records    record_id (= item_id): the prompt-erased training rows
    judgements (item_id, judge): a judge's score, reasoning and verdict on an answer

One spec, one database: a build deletes rows its plan no longer produces, so a file shared by
two specs would lose one's records to the other's build. `Store.open(..., spec=...)` refuses
a file that holds another spec's build (one line, exit 1) instead.

A full disk or a damaged file is met at whichever query first writes or reads the broken
part, so `open_database` hands out a `Connection` that turns those errors, at any query of
any command, into one line naming the file and what to do (exit 1).

Nothing here holds an API key: jobs keep messages and the model string, never call options.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa  # callers build the tables; a re-run that writes nothing never imports it

from orcac.errors import OrcacError
from orcac.runtime.store.schema import KEYS, MIGRATIONS, SCHEMA_VERSION, create_statements


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


# What to do about a damaged file, and what the second way costs: said once, for every command.
DAMAGED_HINT = (
    "restore it from a copy, or delete it and run `orcac build` again: a rebuild starts from "
    "nothing, so every teacher answer stored in it is asked for (and paid for) again"
)


def failure(error: duckdb.Error, path: Path) -> OrcacError | None:
    """The one line for a DuckDB error that is the file's or the disk's, not orcac's; else None.

    A file cut short or corrupted is found by whichever query first reads a broken block (the
    connect reads little more than the header), so every query is looked at, not the connect only.
    """
    text = str(error)
    lowered = text.lower()
    if "no space left on device" in lowered or "disk full" in lowered or "disk is full" in lowered:
        return OrcacError(
            f"the disk holding {path} is full: orcac could not write to it",
            hint="free space on that disk (or pass --db on another one) and run the same command: "
            "what was stored before is kept, so it does only the rest",
        )
    if "not a valid duckdb database file" in lowered:
        return OrcacError(
            f"{path} is not a DuckDB database: its header is damaged, or it is another kind of file",
            hint=f"if it is the build's database, {DAMAGED_HINT}; if not, pass another --db",
        )
    if isinstance(error, _DAMAGE_ERRORS) and any(marker in lowered for marker in _DAMAGE_MARKERS):
        cause = re.sub(r' from file "[^"]*"', "", _first_line(text))  # the path is said once, first
        return OrcacError(f"{path} is damaged ({cause})", hint=DAMAGED_HINT)
    return None


# What DuckDB says when a file was cut short (a copy stopped halfway, a disk that filled up
# under another program) or its blocks were overwritten; and once it has given up on a file.
_DAMAGE_ERRORS = (duckdb.IOException, duckdb.SerializationException, duckdb.InternalException, duckdb.FatalException)
_DAMAGE_MARKERS = (
    "could not read enough bytes",
    "corrupt",
    "checksum",
    "database has been invalidated",
    "failed to load metadata",
    "failed to deserialize",
)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


class Connection:
    """A DuckDB connection whose full-disk and damaged-file errors are one line (exit 1).

    `open_database` hands out only these, so every command (build, export, report, train,
    eval) gets the same message from this one place, whichever query meets the problem. After
    such an error the connection keeps failing with it: DuckDB may have dropped the database
    ("invalidated"), and the first cause is the one worth reading, not a later symptom.
    Everything else is DuckDB's own connection, as is.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path):
        self._con = con
        self.path = path
        self._failure: OrcacError | None = None

    def __getattr__(self, name: str):
        attribute = getattr(self._con, name)
        if not callable(attribute):
            return attribute

        def guarded(*args, **kwargs):
            with self.guard():
                result = attribute(*args, **kwargs)
            return self if result is self._con else result  # execute() returns the connection

        return guarded

    @contextmanager
    def guard(self):
        """Run DuckDB work (a query, or reading a relation's result) with its errors explained."""
        if self._failure is not None:
            raise self._failure
        try:
            yield
        except duckdb.Error as error:
            explained = failure(error, self.path)
            if explained is None:
                raise
            self._failure = explained
            raise explained from None

    def rollback(self) -> None:
        """End a failed transaction. A COMMIT that failed (a full disk) has already ended it,
        and DuckDB's "no transaction is active" would then hide the error that matters."""
        try:
            self._con.execute("ROLLBACK")
        except duckdb.Error:
            pass

    def close(self) -> None:
        """Close, whatever happened before (closing checkpoints, so it too may meet a full disk)."""
        try:
            self._con.close()
        except duckdb.Error as error:
            if self._failure is None:  # else the first error is the one being reported
                raise failure(error, self.path) or error from None


def connect(path: Path, *, read_only: bool = False) -> Connection:
    """A DuckDB connection; a file another process holds, or one that is not a database, is
    one line (exit 1), not a traceback."""
    try:
        return Connection(duckdb.connect(str(path), read_only=read_only), path)
    except duckdb.Error as error:
        if "lock" in str(error).lower():
            raise OrcacError(
                f"{path} is in use by another orcac process", hint="wait for it to finish, or pass another --db"
            ) from None
        explained = failure(error, path)
        if explained is not None:
            raise explained from None
        raise OrcacError(f"cannot open {path}: {_first_line(str(error))}") from None


def claim(con: Connection, path: Path, spec: str, *, write: bool) -> None:
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
        con.execute("INSERT INTO owner VALUES (?)", [stem])


def schema_version(con: Connection | duckdb.DuckDBPyConnection) -> int | None:
    """The file's stamped version; 0 for an orcac file from before stamping; None when empty."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "schema_version" in tables:
        row = next(iter(con.execute("SELECT max(version) FROM schema_version").fetchall()), (None,))
        if row[0] is not None:
            return int(row[0])
    return 0 if tables else None


def _refuse_newer(path: Path, version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise OrcacError(
            f"{path} was written by a newer orcac (database schema {version}; this orcac knows up to {SCHEMA_VERSION})",
            hint="upgrade orcac (`make setup` on the newer checkout), or pass another --db",
        )


def migrate(con: Connection, path: Path) -> None:
    """Create every table and bring an older file up to SCHEMA_VERSION, in one transaction."""
    version = schema_version(con)
    _refuse_newer(path, version)
    if version == SCHEMA_VERSION:
        return
    con.execute("BEGIN")
    try:
        for statement in create_statements():
            con.execute(statement)
        if version is not None:  # a new file is made at the current version: nothing to migrate
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS.get(step, ()):
                    con.execute(statement)
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version VALUES (?)", [SCHEMA_VERSION])
        con.execute("COMMIT")
    except BaseException:
        con.rollback()
        raise


def open_database(path: Path, *, spec: str | None = None, read_only: bool = False) -> Connection:
    """The one way every command opens a spec's database.

    Read-only: the file must exist and hold a build (tables: a file whose `.wal` was lost
    after a kill -9 during the first build has none); one from a newer orcac is refused (an
    older one reads as it is: readers treat a table it lacks as empty). For writing: created if missing, every
    table made and an older file migrated (`orcac.runtime.store.schema`). With `spec` (the
    plan's), a file holding another spec's build is refused, and a new one marked as this one's.
    """
    path = Path(path)
    if read_only and not path.is_file():
        raise OrcacError(f"no build database at {path}", hint="run `orcac build` first (or pass --db)")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = connect(path, read_only=read_only)
    try:
        con.execute("SET enable_progress_bar = false")  # stdout belongs to orcac
        if read_only:
            version = schema_version(con)
            if version is None:
                raise OrcacError(
                    f"{path} holds no build: it is an empty database (a first build stopped before "
                    "it saved anything, or its .wal file was lost)",
                    hint="run `orcac build` (or pass the --db that holds the build)",
                )
            _refuse_newer(path, version)
        else:
            migrate(con, path)
        if spec is not None:
            claim(con, path, spec, write=not read_only)
    except BaseException:
        con.close()
        raise
    return con


class Store:
    """The one connection that writes; use it from one thread at a time."""

    def __init__(self, con: Connection, path: Path):
        self.con = con
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False, spec: str | None = None) -> Store:
        """The database at `path`; with `spec` (the plan's), refused if it holds another spec's build."""
        path = Path(path)
        con = open_database(path, spec=spec, read_only=read_only)
        if not read_only:
            # A run left 'running' is one whose process died (kill -9, power): this process
            # holds the only write lock, so no other run can be live.
            con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
        return cls(con, path)

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
                con.rollback()
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
                with self.con.guard():  # the result is read here, after the query returned
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
                except BaseException as error:  # noqa: BLE001 - surfaced to the caller by add() / close()
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
