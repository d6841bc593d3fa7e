"""Reading a DuckDB file from a test: one helper, read-only, closed again at once.

    from tests.support.db import rows
    rows(db, "SELECT row_index, status FROM jobs")        # [(0, 'ok'), ...]
    rows(db, "SELECT count(*) FROM records")[0][0]        # one value

Read-only, so it never takes the write lock a running build holds, and never creates a
database that does not exist (duckdb raises instead).
"""

from __future__ import annotations

from pathlib import Path


def rows(db_path: str | Path, sql: str, params: list | None = None) -> list[tuple]:
    """Every row `sql` returns from the database at `db_path`, as tuples."""
    import duckdb

    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
