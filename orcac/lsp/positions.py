"""Spans (1-based lines, 1-based character columns, end exclusive) <-> LSP positions
(0-based, columns in the client's encoding: UTF-16 unless it asked for another)."""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from orcac.specs.spec import Span


def to_range(span: Span | None, text: str | list[str], codec: PositionCodec) -> types.Range:
    """The LSP range of `span` in a file whose content is `text` (or its lines, split once by
    a caller with many spans); the file's start when None."""
    if span is None:
        return types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0))
    lines = text.splitlines(keepends=True) if isinstance(text, str) else text
    start = types.Position(line=span.line - 1, character=span.col - 1)
    end = types.Position(line=span.end_line - 1, character=span.end_col - 1)
    return codec.range_to_client_units(lines, types.Range(start=start, end=end))


def from_position(position: types.Position, text: str, codec: PositionCodec) -> tuple[int, int]:
    """The 1-based (line, column in characters) of an LSP position."""
    p = codec.position_from_client_units(text.splitlines(keepends=True), position)
    return p.line + 1, p.character + 1
