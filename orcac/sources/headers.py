"""Source headers for `orcac check`: the columns (and, where it costs nothing, the row count)
of a source without reading its rows. Must stay cheap: the first line of a jsonl file, the
header row of a csv, a parquet footer, a saved Hugging Face dataset's JSON metadata."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from orcac.sources.parquet_footer import parquet_header
from orcac.sources.read import csv_columns, jsonl_header, Utf8Lines, source_files
from orcac.sources.sql import sql_columns


@dataclass
class Header:
    columns: tuple[str, ...]
    rows: int | None = None  # known without reading the data (parquet footer, hf metadata)
    files: tuple[Path, ...] = field(default_factory=tuple)  # absolute: every file the source reads


def header(kind: str, path: str | None, split: str | None, query: str | None, base: Path, *, network: bool = False) -> Header:
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
