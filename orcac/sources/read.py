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


@dataclass(frozen=True)
class BadRow:
    """A row of a source that is not a row: a csv line with more or fewer fields than the
    header, a jsonl line that is not a JSON object. It keeps its place (row numbers and the
    split stay those of the file) and is reported and skipped wherever rows are rendered,
    like a row whose template fails; it is never sent to a teacher."""

    reason: str


def render_row(template: str, row) -> str:
    """One row through one template: the compiler's estimate and the runtime's examples both
    render with this. Raises RowError for a BadRow, or whatever the template raises."""
    from orcac.templates import RowError, render

    if isinstance(row, BadRow):
        raise RowError(row.reason)
    return render(template, row)


@dataclass
class Header:
    columns: tuple[str, ...]
    rows: int | None = None  # known without reading the data (parquet footer, hf metadata)
    files: tuple[Path, ...] = field(default_factory=tuple)  # absolute: every file the source reads


# ---- paths ----------------------------------------------------------------------------------------


def source_files(
    kind: str, path: str | None, split: str | None, query: str | None, base: Path, *, network: bool = False
) -> tuple[Path, ...]:
    """Every file a source reads, absolute, in a stable order. Raises SourceError if missing
    (and for sql, if the query is not one read-only statement)."""
    if kind in ("jsonl", "csv", "parquet"):
        p = base / path
        if not p.is_file():
            raise SourceError(f"source file not found: {path}")
        return (p,)
    if kind == "hf":
        return hf_files(base / path, split, path)
    return sql_files(query, base, network=network)


_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_PATHLIKE = re.compile(r"[^\s]+\.(?:parquet|csv|tsv|jsonl|ndjson|json)(?:\.gz|\.zst)?$", re.I)


def sql_literals(query: str) -> list[str]:
    """The single-quoted literals of a query that name data files ('data/x.parquet')."""
    return [m.group(1).replace("''", "'") for m in _QUOTED.finditer(query) if _PATHLIKE.match(m.group(1).replace("''", "'"))]


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


def header(kind: str, path: str | None, split: str | None, query: str | None, base: Path, *, network: bool = False) -> Header:
    files = source_files(kind, path, split, query, base, network=network)
    if kind == "jsonl":
        return Header(columns=_jsonl_header(files[0], path), files=files)
    if kind == "csv":
        with _Utf8Lines(files[0], path) as f:
            row = next(csv.reader(f), None)
        return Header(columns=_csv_columns(row, path), files=files)
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
    return Header(columns=_sql_columns(query, base, network), files=files)


class _Utf8Lines:
    """A data file's lines as UTF-8 text; a byte-order mark (as spreadsheet programs write) is
    not part of the first column's name. Bytes that are not UTF-8 are a SourceError."""

    def __init__(self, p: Path, shown: str):
        self.p, self.shown = p, shown

    def __enter__(self):
        self.f = open(self.p, newline="", encoding="utf-8-sig")
        return self

    def __iter__(self):
        try:
            yield from self.f
        except UnicodeDecodeError:
            try:  # the decoder's offset is within its chunk: find the file's own
                self.p.read_bytes().decode("utf-8")
                raise
            except UnicodeDecodeError as error:
                raise SourceError(
                    f"{self.shown} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start})",
                    "save the file as UTF-8",
                ) from None

    def __exit__(self, *exc):
        self.f.close()


def _csv_columns(header_row: list[str] | None, shown: str) -> tuple[str, ...]:
    if not header_row:
        raise SourceError(f"{shown} is empty: a csv source needs a header row")
    return tuple(header_row)


def _csv_rows(p: Path, shown: str) -> tuple[tuple[str, ...], list]:
    """Columns and rows of a csv file; a line with more or fewer fields than the header is a BadRow."""
    with _Utf8Lines(p, shown) as f:
        reader = csv.reader(f)
        columns = _csv_columns(next(reader, None), shown)
        rows: list = []
        for record in reader:
            if not record:
                continue  # a blank line, as csv.DictReader skips it
            if len(record) != len(columns):
                n = len(record)
                rows.append(BadRow(f"{shown}:{reader.line_num}: {n} field{'s' if n != 1 else ''}, the header has {len(columns)}"))
            else:
                rows.append(dict(zip(columns, record)))
    return columns, rows


def _jsonl_rows(p: Path, shown: str):
    """One row per non-blank line, lazily (check reads until the first object): a dict, or a
    BadRow for a line that is not a JSON object."""
    with _Utf8Lines(p, shown) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                yield BadRow(f"{shown}:{number}: not valid JSON ({error.msg})")
                continue
            if not isinstance(row, dict):
                yield BadRow(f"{shown}:{number}: not a JSON object")
                continue
            yield row


def _jsonl_header(p: Path, shown: str) -> tuple[str, ...]:
    """The keys of the first object; a file with no object line at all is an error."""
    first_bad = None
    for row in _jsonl_rows(p, shown):
        if not isinstance(row, BadRow):
            return tuple(row)
        first_bad = first_bad or row
    if first_bad is not None:
        raise SourceError(f"{shown} has no JSON object line: the first problem is {first_bad.reason}", "a jsonl source holds one JSON object per line")
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
    "to read from the network, write sql(\"...\", network = true)"
)


def _run_sql(query: str, base: Path, network: bool, run):
    files = sql_files(query, base, network=network)
    con = _duckdb(query, files, network)
    try:
        return run(con.sql(_absolute_query(query, base)))
    except Exception as error:
        first = str(error).splitlines()[0]
        hint = _SQL_HINT if "disabled by configuration" in first else None
        raise SourceError(f"the sql query fails: {first}", hint) from None
    finally:
        con.close()


def _sql_columns(query: str, base: Path, network: bool = False) -> tuple[str, ...]:
    return _run_sql(query, base, network, lambda rel: tuple(rel.columns))


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


def read(
    kind: str, path: str | None, split: str | None, query: str | None, base: Path, *, network: bool = False
) -> tuple[tuple[str, ...], list]:
    """(columns, rows) of a whole source, rows in source order (a BadRow where a line is not a row)."""
    files = source_files(kind, path, split, query, base, network=network)
    if kind == "jsonl":
        rows = list(_jsonl_rows(files[0], path))
        columns = next((tuple(r) for r in rows if not isinstance(r, BadRow)), None)
        return (columns if columns is not None else _jsonl_header(files[0], path)), rows
    if kind == "csv":
        return _csv_rows(files[0], path)
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
    def arrow(rel):
        table = rel.arrow()
        return table.read_all() if hasattr(table, "read_all") else table  # newer DuckDB: a RecordBatchReader

    table = _run_sql(query, base, network, arrow)
    return tuple(table.column_names), table.to_pylist()


def read_rows(source, root: Path) -> list[dict]:
    """Rows of a plan's SourcePlan (orcac.specs.plan), paths relative to the plan's directory `root`."""
    _, rows = read(source.kind, source.path, source.split, source.query, Path(root), network=source.network)
    return rows
