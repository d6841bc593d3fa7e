"""Reading task sources: headers only for `orcac check`, every row for `orcac plan`.

`header()` is what `check` uses and must stay cheap: the first line of a jsonl file, the
header row of a csv, a parquet footer (read here with a small Thrift reader, so check
does not import pyarrow), the JSON metadata of a saved Hugging Face dataset. Only
`sql()` sources import DuckDB, and only specs that use them.

`read_rows()` is the one way to turn a plan's SourcePlan into rows; the compiler counts
and renders with it and the runtime reads with it, so both see the same rows in the
same order.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from orcac.errors import OrcacError

csv.field_size_limit(1 << 30)


class SourceError(OrcacError):
    """A source that cannot be read; the compiler turns it into a diagnostic."""


@dataclass
class Header:
    columns: tuple[str, ...]
    rows: int | None = None  # known without reading the data (parquet footer, hf metadata)
    files: tuple[Path, ...] = field(default_factory=tuple)  # absolute: every file the source reads


# ---- paths ----------------------------------------------------------------------------------------


def source_files(kind: str, path: str | None, split: str | None, query: str | None, base: Path) -> tuple[Path, ...]:
    """Every file a source reads, absolute, in a stable order. Raises SourceError if missing."""
    if kind in ("jsonl", "csv", "parquet"):
        p = base / path
        if not p.is_file():
            raise SourceError(f"source file not found: {path}")
        return (p,)
    if kind == "hf":
        return hf_files(base / path, split, path)
    return sql_files(query, base)


_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_PATHLIKE = re.compile(r"[^\s]+\.(?:parquet|csv|tsv|jsonl|ndjson|json)(?:\.gz|\.zst)?$", re.I)


def sql_literals(query: str) -> list[str]:
    """The single-quoted literals of a query that name data files ('data/x.parquet')."""
    return [m.group(1).replace("''", "'") for m in _QUOTED.finditer(query) if _PATHLIKE.match(m.group(1).replace("''", "'"))]


def sql_files(query: str, base: Path) -> tuple[Path, ...]:
    out = []
    for lit in sql_literals(query):
        p = base / lit
        if not p.is_file():
            raise SourceError(f"source file not found: {lit} (read by the sql query)")
        if p not in out:
            out.append(p)
    return tuple(out)


def hf_split_dir(root: Path, split: str | None, shown: str) -> Path:
    if not root.is_dir():
        raise SourceError(f"dataset directory not found: {shown}")
    dict_file = root / "dataset_dict.json"
    if dict_file.is_file():
        splits = json.loads(dict_file.read_text()).get("splits", [])
        if split is None:
            if len(splits) == 1:
                split = splits[0]
            else:
                raise SourceError(f"{shown} has splits {', '.join(splits)}: choose one with split = \"...\"")
        if split not in splits:
            raise SourceError(f"{shown} has no split '{split}' (it has {', '.join(splits)})")
        return root / split
    if (root / "dataset_info.json").is_file():
        return root
    raise SourceError(f"{shown} is not a dataset saved with datasets.save_to_disk (no dataset_dict.json or dataset_info.json)")


def hf_files(root: Path, split: str | None, shown: str) -> tuple[Path, ...]:
    d = hf_split_dir(root, split, shown)
    state = d / "state.json"
    if state.is_file():
        names = [f["filename"] for f in json.loads(state.read_text()).get("_data_files", [])]
    else:
        names = sorted(p.name for p in d.glob("*.arrow"))
    if not names:
        raise SourceError(f"{shown} holds no data files")
    return tuple(d / n for n in names)


# ---- headers (check) --------------------------------------------------------------------------------


def header(kind: str, path: str | None, split: str | None, query: str | None, base: Path) -> Header:
    files = source_files(kind, path, split, query, base)
    if kind == "jsonl":
        return Header(columns=_jsonl_header(files[0], path), files=files)
    if kind == "csv":
        with open(files[0], newline="", encoding="utf-8") as f:
            row = next(csv.reader(f), None)
        if not row:
            raise SourceError(f"{path} is empty: a csv source needs a header row")
        return Header(columns=tuple(row), files=files)
    if kind == "parquet":
        columns, rows = parquet_header(files[0])
        return Header(columns=columns, rows=rows, files=files)
    if kind == "hf":
        d = files[0].parent
        info = json.loads((d / "dataset_info.json").read_text())
        columns = tuple((info.get("features") or {}).keys())
        rows = None
        splits = info.get("splits") or {}
        if isinstance(splits, dict) and len(splits) == 1:
            rows = next(iter(splits.values())).get("num_examples")
        return Header(columns=columns, rows=rows, files=files)
    return Header(columns=_sql_columns(query, base), files=files)


def _jsonl_rows(p: Path, shown: str):
    """The objects of a jsonl file, one per non-blank line, lazily (check reads only one)."""
    with open(p, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise SourceError(f"{shown}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise SourceError(f"{shown}:{number}: each line must be a JSON object")
            yield row


def _jsonl_header(p: Path, shown: str) -> tuple[str, ...]:
    for row in _jsonl_rows(p, shown):
        return tuple(row)
    raise SourceError(f"{shown} is empty")


# ---- parquet footer, without pyarrow -------------------------------------------------------------------


class _Thrift:
    """Just enough of Thrift's compact protocol to read a parquet FileMetaData."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def binary(self) -> bytes:
        n = self.varint()
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def value(self, t: int):
        if t in (1, 2):
            return t == 1
        if t == 3:
            return self.byte()
        if t in (4, 5, 6):
            return self.zigzag()
        if t == 7:
            self.pos += 8
            return None
        if t == 8:
            return self.binary()
        if t in (9, 10):
            h = self.byte()
            size, et = h >> 4, h & 0x0F
            if size == 15:
                size = self.varint()
            return [self.byte() == 1 if et in (1, 2) else self.value(et) for _ in range(size)]
        if t == 11:
            size = self.varint()
            if size:
                h = self.byte()
                for _ in range(size):
                    self.value(h >> 4)
                    self.value(h & 0x0F)
            return None
        if t == 12:
            return self.struct()
        raise ValueError(f"thrift type {t}")

    def struct(self) -> dict[int, object]:
        out, last = {}, 0
        while True:
            h = self.byte()
            if h == 0:
                return out
            delta, t = h >> 4, h & 0x0F
            fid = last + delta if delta else self.zigzag()
            out[fid] = self.value(t)
            last = fid


def parquet_header(p: Path) -> tuple[tuple[str, ...], int]:
    """Top-level column names and row count from a parquet file's footer."""
    try:
        with open(p, "rb") as f:
            f.seek(-8, os.SEEK_END)
            size, magic = struct.unpack("<i4s", f.read(8))
            if magic != b"PAR1":
                raise ValueError("not parquet")
            f.seek(-8 - size, os.SEEK_END)
            meta = _Thrift(f.read(size)).struct()
        schema = meta[2]
        root, columns, i = schema[0], [], 1
        for _ in range(root.get(5, 0)):
            element = schema[i]
            columns.append(element[4].decode())
            i += 1 + _descendants(schema, i)
        return tuple(columns), int(meta[3])
    except (OSError, ValueError, KeyError, IndexError, TypeError, struct.error, UnicodeDecodeError):
        try:
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(p)
            return tuple(pf.schema_arrow.names), pf.metadata.num_rows
        except Exception as error:
            raise SourceError(f"{p.name} is not a readable parquet file ({error})") from None


def _descendants(schema: list, i: int) -> int:
    count = 0
    for _ in range(schema[i].get(5, 0) or 0):
        j = i + 1 + count
        count += 1 + _descendants(schema, j)
    return count


# ---- sql -----------------------------------------------------------------------------------------------


def _absolute_query(query: str, base: Path) -> str:
    def sub(m: re.Match) -> str:
        lit = m.group(1).replace("''", "'")
        if _PATHLIKE.match(lit) and (base / lit).is_file():
            return "'" + str((base / lit).resolve()).replace("'", "''") + "'"
        return m.group(0)

    return _QUOTED.sub(sub, query)


def _duckdb():
    import duckdb  # only specs with sql() sources pay for this import

    con = duckdb.connect(":memory:")
    con.execute("SET threads = 1")  # one thread: the same row order on every machine
    return con


def _sql_columns(query: str, base: Path) -> tuple[str, ...]:
    con = _duckdb()
    try:
        rel = con.sql(_absolute_query(query, base))
        return tuple(rel.columns)
    except Exception as error:
        raise SourceError(f"the sql query fails: {str(error).splitlines()[0]}") from None
    finally:
        con.close()


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


# ---- whole sources (plan, runtime) -----------------------------------------------------------------------


def sha256_files(files: tuple[Path, ...], extra: str = "") -> str:
    """sha256 of one file's bytes; for several (or a query), of 'name sha' lines."""
    digests = []
    for p in files:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digests.append((p.name, h.hexdigest()))
    if len(digests) == 1 and not extra:
        return digests[0][1]
    h = hashlib.sha256(extra.encode())
    for name, digest in digests:
        h.update(f"\n{name} {digest}".encode())
    return h.hexdigest()


def read(kind: str, path: str | None, split: str | None, query: str | None, base: Path) -> tuple[tuple[str, ...], list[dict]]:
    """(columns, rows) of a whole source, rows in source order."""
    files = source_files(kind, path, split, query, base)
    if kind == "jsonl":
        rows = list(_jsonl_rows(files[0], path))
        if not rows:
            raise SourceError(f"{path} is empty")
        return tuple(rows[0]), rows
    if kind == "csv":
        with open(files[0], newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [dict(r) for r in reader]
            columns = tuple(reader.fieldnames or ())
        if not columns:
            raise SourceError(f"{path} is empty: a csv source needs a header row")
        return columns, rows
    if kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(files[0])
        return tuple(table.column_names), table.to_pylist()
    if kind == "hf":
        import pyarrow as pa

        tables = []
        for p in files:
            with pa.memory_map(str(p)) as source:
                try:
                    tables.append(pa.ipc.open_stream(source).read_all())
                except pa.ArrowInvalid:
                    tables.append(pa.ipc.open_file(source).read_all())
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        return tuple(table.column_names), table.to_pylist()
    con = _duckdb()
    try:
        table = con.sql(_absolute_query(query, base)).arrow()
        if hasattr(table, "read_all"):  # newer DuckDB returns a RecordBatchReader
            table = table.read_all()
    except Exception as error:
        raise SourceError(f"the sql query fails: {str(error).splitlines()[0]}") from None
    finally:
        con.close()
    return tuple(table.column_names), table.to_pylist()


def read_rows(source, root: Path) -> list[dict]:
    """Rows of a plan's SourcePlan (orcac.specs.plan), paths relative to the plan's directory `root`."""
    _, rows = read(source.kind, source.path, source.split, source.query, Path(root))
    return rows
