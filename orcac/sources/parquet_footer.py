"""A parquet file's columns and row count from its footer, with a small Thrift reader, so
that `orcac check` reads a parquet source without importing pyarrow."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from orcac.sources.problems import SourceError


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
        except Exception as error:  # noqa: BLE001 - pyarrow raises several types for a file that is not parquet
            raise SourceError(f"{p.name} is not a readable parquet file ({error})") from None


def _descendants(schema: list, i: int) -> int:
    count = 0
    for _ in range(schema[i].get(5, 0) or 0):
        j = i + 1 + count
        count += 1 + _descendants(schema, j)
    return count
