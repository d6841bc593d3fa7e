"""What a build's DuckDB file holds, searched as bytes and as tables: text that must be nowhere in it."""

from __future__ import annotations

from pathlib import Path

import duckdb

from orcac.runtime.answers.erasure import distinctive_sentences


def assert_nowhere(db: Path, texts: list[str], erase: str) -> None:
    """None of `texts` (nor any distinctive sentence of one) is in the file's bytes or in any
    text column of any table; `erase`, the records' system message, is found both ways, so the
    search is one that would find what is there."""
    raw = db.read_bytes()
    needles = sorted({n for t in texts for n in [t, *distinctive_sentences(t, [])]})
    for needle in needles:
        assert needle.encode() not in raw and needle.casefold().encode() not in raw.lower(), needle
    lowered = [n.casefold() for n in needles]
    con = duckdb.connect(str(db), read_only=True)
    try:
        columns: dict[str, list[str]] = {}
        for table, column in con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE data_type = 'VARCHAR'"
        ).fetchall():
            columns.setdefault(table, []).append(column)
        for table, names in columns.items():
            anywhere = " OR ".join(f'contains(lower("{c}"), u.needle)' for c in names)
            found = con.execute(
                f"SELECT u.needle, count(*) FROM {table}, unnest(?::VARCHAR[]) AS u(needle) WHERE {anywhere} GROUP BY ALL",
                [lowered],
            ).fetchall()
            assert found == [], (table, found)
        # the search finds what is there
        assert con.execute(
            "SELECT count(*) FROM records WHERE contains(lower(system), ?)", [erase.casefold()]
        ).fetchone()[0]
    finally:
        con.close()
    assert erase.encode() in raw
