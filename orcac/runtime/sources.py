"""Reading a task's rows from its source: jsonl, csv, parquet, a saved HF dataset, or SQL.

    rows = read_rows(task_plan.source, root, task=task_plan.name)

Every reader returns a list of dicts in the source's own order (line order, file order, the
query's order), so a row index means the same row on every run. Before reading, the files
are hashed and compared with the plan's `sha256`: data that changed after `orcac plan` would
silently change the split, the prompts and the job ids, so it stops the build instead.

`source_sha256` is the one definition of that hash, for the compiler and the runtime alike:
a single file hashes to the sha256 of its bytes (what `sha256sum` prints); several files
(an HF dataset directory, the files a SQL query reads) hash to the sha256 over one line
per file, in path order: `<posix path relative to the source>\\0<sha256 of its bytes>\\n`.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from orcac.errors import OrcacError
from orcac.specs.plan import SourcePlan

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files_sha256(named: list[tuple[str, Path]]) -> str:
    digest = hashlib.sha256()
    for name, path in sorted(named):
        digest.update(f"{name}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def source_files(source: SourcePlan, root: Path) -> list[tuple[str, Path]]:
    """(name, path) of every file the source reads; raises OrcacError if one is missing."""
    if source.kind == "sql":
        named = [(name, root / name) for name in source.files]
    elif source.kind == "hf":
        directory = root / (source.path or "")
        if not directory.is_dir():
            raise FileNotFoundError(directory)
        named = [
            (p.relative_to(directory).as_posix(), p)
            for p in directory.rglob("*")
            if p.is_file() and not p.name.startswith(".") and not p.name.startswith("cache-")
        ]
    else:
        named = [(source.path or "", root / (source.path or ""))]
    for _, path in named:
        if not path.is_file():
            raise FileNotFoundError(path)
    return named


def source_sha256(source: SourcePlan, root: Path) -> str:
    """The hash the plan records in `SourcePlan.sha256` (see the module docstring)."""
    named = source_files(source, root)
    if source.kind in ("jsonl", "csv", "parquet"):
        return file_sha256(named[0][1])
    return _files_sha256(named)


def read_rows(source: SourcePlan, root: Path, *, task: str, verify: bool = True) -> list[dict]:
    """The source's rows, in a stable order. Raises OrcacError naming the task and file."""
    where = source.path or (", ".join(source.files) if source.files else "the SQL query")
    try:
        if verify and source_sha256(source, root) != source.sha256:
            raise OrcacError(
                f"task {task}: {where}: the data changed since the plan was made: run `orcac plan`",
                hint="re-plan so the split, prompts and job ids follow the new data",
            )
        rows, columns = _READERS[source.kind](source, root)
    except OrcacError:
        raise
    except FileNotFoundError as error:
        raise OrcacError(
            f"task {task}: source file {_rel(error.filename, root) or where} not found",
            hint="paths are relative to the directory that holds the plan",
        ) from None
    except Exception as error:  # any parser's complaint about a malformed file
        raise OrcacError(f"task {task}: cannot read {where} as {source.kind}: {_one_line(error)}") from None
    missing = [c for c in source.columns if c not in columns]
    if missing:
        raise OrcacError(
            f"task {task}: {where} has no column(s) {', '.join(missing)} (it has: {', '.join(columns) or 'none'})",
            hint="the data changed since the plan was made: run `orcac plan`",
        )
    return rows


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]


def _rel(filename, root: Path) -> str | None:
    if filename is None:
        return None
    try:
        return Path(filename).relative_to(root).as_posix()
    except ValueError:
        return str(filename)


# ---- readers: (source, root) -> (rows, column names) ------------------------------------------


def _read_jsonl(source: SourcePlan, root: Path) -> tuple[list[dict], list[str]]:
    rows: list[dict] = []
    columns: dict[str, None] = {}
    with open(root / (source.path or ""), encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"line {number}: {error.msg}") from None
            if not isinstance(row, dict):
                raise ValueError(f"line {number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
            columns.update(dict.fromkeys(row))
    return rows, list(columns)


def _read_csv(source: SourcePlan, root: Path) -> tuple[list[dict], list[str]]:
    # Values stay text, exactly as written: a template renders them unchanged.
    with open(root / (source.path or ""), encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [dict(row) for row in reader]
        for number, row in enumerate(rows, 2):
            if None in row or any(v is None for v in row.values()):
                raise ValueError(f"line {number}: the number of fields differs from the header")
        return rows, list(reader.fieldnames or [])


def _read_parquet(source: SourcePlan, root: Path) -> tuple[list[dict], list[str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(root / (source.path or ""))
    return table.to_pylist(), list(table.column_names)


def _read_hf(source: SourcePlan, root: Path) -> tuple[list[dict], list[str]]:
    import datasets

    loaded = datasets.load_from_disk(str(root / (source.path or "")))
    if isinstance(loaded, datasets.DatasetDict):
        if source.split is None:
            if len(loaded) != 1:
                raise ValueError(f"a dataset with splits {', '.join(loaded)}: name one with `split`")
            loaded = next(iter(loaded.values()))
        elif source.split not in loaded:
            raise ValueError(f"no split {source.split!r} (it has: {', '.join(loaded)})")
        else:
            loaded = loaded[source.split]
    table = loaded.with_format("arrow")[:]  # respects a saved selection of rows
    return table.to_pylist(), list(loaded.column_names)


def _read_sql(source: SourcePlan, root: Path) -> tuple[list[dict], list[str]]:
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        # Relative paths in the query resolve against the plan's directory, without chdir
        # (which would change the whole process's working directory).
        con.execute("SET file_search_path = ?", [str(root.resolve())])
        con.execute("SET threads = 1")  # one thread: the same row order on every machine
        table = arrow_table(con, source.query or "")
    except duckdb.Error as error:
        raise ValueError(f"the query failed: {error}") from None
    finally:
        con.close()
    return table.to_pylist(), list(table.column_names)


def arrow_table(con, sql: str, params: list | None = None):
    """A query's result as a pyarrow Table (`to_arrow_table` in DuckDB 2, `arrow` before)."""
    relation = con.sql(sql, params=params or None)
    method = getattr(relation, "to_arrow_table", None) or relation.arrow
    return method()


_READERS = {
    "jsonl": _read_jsonl,
    "csv": _read_csv,
    "parquet": _read_parquet,
    "hf": _read_hf,
    "sql": _read_sql,
}
