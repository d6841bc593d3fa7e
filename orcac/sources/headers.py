"""Source headers for `orcac check`: the columns (and, where it costs nothing, the row count)
of a source without reading its rows. Must stay cheap: the first line of a jsonl file, the
header row of a csv, a parquet footer, a saved Hugging Face dataset's JSON metadata."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from orcac.sources.parquet_footer import parquet_header
from orcac.sources.read import Utf8Lines, csv_columns, jsonl_header, source_files
from orcac.sources.sql import sql_columns


@dataclass
class Header:
    columns: tuple[str, ...]
    rows: int | None = None  # known without reading the data (parquet footer, hf metadata)
    files: tuple[Path, ...] = field(default_factory=tuple)  # absolute: every file the source reads


def header(
    kind: str, path: str | None, split: str | None, query: str | None, base: Path, *, network: bool = False
) -> Header:
    files = source_files(kind, path, split, query, base, network=network)
    if kind == "jsonl":
        return Header(columns=jsonl_header(files[0], path), files=files)
    if kind == "csv":
        with Utf8Lines(files[0], path) as f:
            row = next(csv.reader(f), None)
        return Header(columns=csv_columns(row, path), files=files)
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
    return Header(columns=sql_columns(query, base, network), files=files)


def hub_header(data) -> Header:
    """A Hub dataset's columns from the first of its cached files (a parquet footer, a jsonl
    line, a csv header); its rows where every file is parquet (their footers)."""
    first, shown = data.files[0], f"{data.repo}/{data.names[0]}"
    if all(n.endswith(".parquet") for n in data.names):
        footers = [parquet_header(p) for p in data.files]
        return Header(columns=footers[0][0], rows=sum(n for _, n in footers), files=data.files)
    if data.names[0].endswith(".csv"):
        with Utf8Lines(first, shown) as f:
            row = next(csv.reader(f), None)
        return Header(columns=csv_columns(row, shown), files=data.files)
    if data.names[0].endswith(".json") and first.read_bytes().lstrip()[:1] == b"[":
        rows = json.loads(first.read_bytes())
        return Header(columns=tuple(rows[0]) if rows and isinstance(rows[0], dict) else (), files=data.files)
    return Header(columns=jsonl_header(first, shown), files=data.files)
