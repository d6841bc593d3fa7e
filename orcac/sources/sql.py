"""`sql("...")` sources: one read-only SELECT, checked by DuckDB's own parser, that reads
only the files it names (external access and extension autoload off unless `network = true`);
the files it names, and its paths rebased when the plan lives elsewhere. Only specs with sql
sources import DuckDB."""

from __future__ import annotations

import os
import re
from pathlib import Path

from orcac.sources.problems import SourceError, nearby_file

_QUOTED = re.compile(r"'((?:[^']|'')*)'")


_PATHLIKE = re.compile(r"[^\s]+\.(?:parquet|csv|tsv|jsonl|ndjson|json)(?:\.gz|\.zst)?$", re.I)


def sql_literals(query: str) -> list[str]:
    """The single-quoted literals of a query that name data files ('data/x.parquet')."""
    return [
        m.group(1).replace("''", "'") for m in _QUOTED.finditer(query) if _PATHLIKE.match(m.group(1).replace("''", "'"))
    ]


def sql_files(query: str, base: Path, *, network: bool = False) -> tuple[Path, ...]:
    _one_select(query)
    out = []
    for lit in sql_literals(query):
        if "://" in lit:
            if not network:
                raise SourceError(
                    f"the sql query reads {lit} from the network, which a spec must allow explicitly",
                    'write sql("...", network = true); its data is not pinned by the plan\'s sha256',
                )
            continue
        p = base / lit
        if not p.is_file():
            raise SourceError(f"source file not found: {lit} (read by the sql query)", nearby_file(base, lit))
        if p not in out:
            out.append(p)
    return tuple(out)


def _absolute_query(query: str, base: Path) -> str:
    def sub(m: re.Match) -> str:
        lit = m.group(1).replace("''", "'")
        if _PATHLIKE.match(lit) and (base / lit).is_file():
            return "'" + str((base / lit).resolve()).replace("'", "''") + "'"
        return m.group(0)

    return _QUOTED.sub(sub, query)


def _one_select(query: str) -> None:
    """Raise SourceError unless the query is one read-only statement, by DuckDB's own parser."""
    import duckdb  # only specs with sql() sources pay for this import

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as error:
        raise SourceError(f"the sql query does not parse: {str(error).splitlines()[0]}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        what = f"{len(statements)} statements" if len(statements) != 1 else f"a {statements[0].type.name} statement"
        raise SourceError(
            f"a sql source is one read-only query (SELECT or WITH ... SELECT); this one is {what}",
            "a source only reads: write one SELECT ... FROM 'data/x.parquet', with no ';' between statements",
        )


def _duckdb(query: str, files: tuple[Path, ...], network: bool):
    """A connection for one query already checked by `_one_select`: it reads only the files
    the query names (those the plan hashes); no network, and no extension installed or
    loaded behind the user's back, unless the spec says `network = true`."""
    import duckdb  # only specs with sql() sources pay for this import

    config = {"threads": 1}  # one thread: the same row order on every machine
    if not network:
        config |= {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    con = duckdb.connect(":memory:", config=config)
    if not network:
        con.execute("SET allowed_paths = ?", [[str(p.resolve()) for p in files]])
        con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")  # the query cannot undo the above
    return con


_SQL_HINT = (
    "a sql source reads only the files it names in quotes ('data/x.parquet', .csv, .tsv, .jsonl, .ndjson, .json); "
    'to read from the network, write sql("...", network = true)'
)


# What DuckDB says when it cannot fetch the extension a network read needs; the cause in parentheses at the end.
_NO_DOWNLOAD = re.compile(r'Failed to download extension "(\w+)" at URL "([^"]*)".*?(?:\(ERROR ([^)]*)\))?$')
_EXTENSION_HINT = (
    "DuckDB downloads the extension a network read needs on its first use: connect this machine to the network, "
    "or install it once where it can: python -c \"import duckdb; duckdb.install_extension('{extension}')\""
)


def run_sql(query: str, base: Path, network: bool, run):
    files = sql_files(query, base, network=network)
    con = _duckdb(query, files, network)
    try:
        return run(con.sql(_absolute_query(query, base)))
    except Exception as error:  # noqa: BLE001 - DuckDB raises many error types; each becomes one line below
        # DuckDB's message can run over several lines with the cause on the last (a failed
        # extension download ends "(ERROR Could not establish connection)"): all of it, on one line.
        said = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        download = _NO_DOWNLOAD.search(said)
        if download:
            extension, url, cause = download.group(1), download.group(2), download.group(3) or "no reason given"
            raise SourceError(
                f"the sql query needs DuckDB's '{extension}' extension, and downloading it from {url} failed: {cause}",
                _EXTENSION_HINT.format(extension=extension),
            ) from None
        hint = _SQL_HINT if "disabled by configuration" in said else None
        raise SourceError(f"the sql query fails: {said}", hint) from None
    finally:
        con.close()


def sql_columns(query: str, base: Path, network: bool = False) -> tuple[str, ...]:
    return run_sql(query, base, network, lambda rel: tuple(rel.columns))


def rebase_query(query: str, old_base: Path, new_base: Path) -> str:
    """The query with its file literals made relative to `new_base` instead of `old_base`."""
    if old_base.resolve() == new_base.resolve():
        return query

    def sub(m: re.Match) -> str:
        lit = m.group(1).replace("''", "'")
        if _PATHLIKE.match(lit) and (old_base / lit).is_file():
            rel = Path(os.path.relpath((old_base / lit).resolve(), new_base.resolve())).as_posix()
            return "'" + rel.replace("'", "''") + "'"
        return m.group(0)

    return _QUOTED.sub(sub, query)
