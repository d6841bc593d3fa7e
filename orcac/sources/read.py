"""Reading task sources whole: the files a source reads, its rows in order, their sha256.

`read()` is the one way to turn a source into rows: the compiler counts, splits and renders
with it and the runtime reads with it (orcac/runtime/answers/source_rows.py), so both see the
same rows in the same order. A csv or jsonl line that is not a row stays in its place as a
`BadRow`. Check-time headers are in headers.py, sql sources in sql.py.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from orcac.sources.problems import BadRow, SourceError, nearby_file
from orcac.sources.sql import run_sql, sql_files

csv.field_size_limit(1 << 30)


def render_row(template: str, row) -> str:
    """One row through one template: the compiler's estimate and the runtime's examples both
    render with this. Raises RowError for a BadRow, or whatever the template raises."""
    from orcac.templates import RowError, render

    if isinstance(row, BadRow):
        raise RowError(row.reason)
    return render(template, row)


# ---- paths ----------------------------------------------------------------------------------------


def source_files(
    kind: str, path: str | None, split: str | None, query: str | None, base: Path, *, network: bool = False
) -> tuple[Path, ...]:
    """Every file a source reads, absolute, in a stable order. Raises SourceError if missing
    (and for sql, if the query is not one read-only statement)."""
    if kind in ("jsonl", "csv", "parquet"):
        p = base / path
        if not p.is_file():
            raise SourceError(f"source file not found: {path}", nearby_file(base, path))
        return (p,)
    if kind == "hf":
        return hf_files(base / path, split, path)
    return sql_files(query, base, network=network)


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
                raise SourceError(f'{shown} has splits {", ".join(splits)}: choose one with split = "..."')
        if split not in splits:
            raise SourceError(f"{shown} has no split '{split}' (it has {', '.join(splits)})")
        return root / split
    if (root / "dataset_info.json").is_file():
        return root
    raise SourceError(
        f"{shown} is not a dataset saved with datasets.save_to_disk (no dataset_dict.json or dataset_info.json)"
    )


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


class Utf8Lines:
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


def csv_columns(header_row: list[str] | None, shown: str) -> tuple[str, ...]:
    if not header_row:
        raise SourceError(f"{shown} is empty: a csv source needs a header row")
    return tuple(header_row)


def _csv_rows(p: Path, shown: str) -> tuple[tuple[str, ...], list]:
    """Columns and rows of a csv file; a line with more or fewer fields than the header is a BadRow."""
    with Utf8Lines(p, shown) as f:
        reader = csv.reader(f)
        columns = csv_columns(next(reader, None), shown)
        rows: list = []
        for record in reader:
            if not record:
                continue  # a blank line, as csv.DictReader skips it
            if len(record) != len(columns):
                n = len(record)
                rows.append(
                    BadRow(
                        f"{shown}:{reader.line_num}: {n} field{'s' if n != 1 else ''}, the header has {len(columns)}"
                    )
                )
            else:
                rows.append(dict(zip(columns, record)))
    return columns, rows


def _jsonl_rows(p: Path, shown: str):
    """One row per non-blank line, lazily (check reads until the first object): a dict, or a
    BadRow for a line that is not a JSON object."""
    with Utf8Lines(p, shown) as f:
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


def jsonl_header(p: Path, shown: str) -> tuple[str, ...]:
    """The keys of the first object; a file with no object line at all is an error."""
    first_bad = None
    for row in _jsonl_rows(p, shown):
        if not isinstance(row, BadRow):
            return tuple(row)
        first_bad = first_bad or row
    if first_bad is not None:
        raise SourceError(
            f"{shown} has no JSON object line: the first problem is {first_bad.reason}",
            "a jsonl source holds one JSON object per line",
        )
    raise SourceError(f"{shown} is empty")


# ---- parquet footer, without pyarrow -------------------------------------------------------------------


# ---- sql -----------------------------------------------------------------------------------------------


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


def hub_rows(data) -> tuple[tuple[str, ...], list]:
    """(columns, rows) of a Hub dataset's files (orcac.sources.hub.HubData), read by the same
    readers as local files, one file after another in name order."""
    columns: tuple[str, ...] | None = None
    rows: list = []
    for name, p in zip(data.names, data.files):
        shown = f"{data.repo}/{name}"
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            table = pq.read_table(p)
            cols, part = tuple(table.column_names), table.to_pylist()
        elif name.endswith(".csv"):
            cols, part = _csv_rows(p, shown)
        elif name.endswith(".json") and p.read_bytes().lstrip()[:1] == b"[":  # one JSON array, not lines
            part = [
                r if isinstance(r, dict) else BadRow(f"{shown}: an element is not a JSON object")
                for r in json.loads(p.read_bytes())
            ]
            cols = next((tuple(r) for r in part if not isinstance(r, BadRow)), None)
        else:
            part = list(_jsonl_rows(p, shown))
            cols = next((tuple(r) for r in part if not isinstance(r, BadRow)), None)
        columns = columns or cols
        rows.extend(part)
    return columns or (), rows


def read(
    kind: str, path: str | None, split: str | None, query: str | None, base: Path, *, network: bool = False
) -> tuple[tuple[str, ...], list]:
    """(columns, rows) of a whole source, rows in source order (a BadRow where a line is not a row)."""
    files = source_files(kind, path, split, query, base, network=network)
    if kind == "jsonl":
        rows = list(_jsonl_rows(files[0], path))
        columns = next((tuple(r) for r in rows if not isinstance(r, BadRow)), None)
        return (columns if columns is not None else jsonl_header(files[0], path)), rows
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

    table = run_sql(query, base, network, arrow)
    return tuple(table.column_names), table.to_pylist()
