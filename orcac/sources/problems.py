"""What goes wrong reading a source: a source that cannot be read, a line that is not a row."""

from __future__ import annotations

from dataclasses import dataclass

from orcac.errors import OrcacError


class SourceError(OrcacError):
    """A source that cannot be read; the compiler turns it into a diagnostic."""


@dataclass(frozen=True)
class BadRow:
    """A row of a source that is not a row: a csv line with more or fewer fields than the
    header, a jsonl line that is not a JSON object. It keeps its place (row numbers and the
    split stay those of the file) and is reported and skipped wherever rows are rendered,
    like a row whose template fails; it is never sent to a teacher."""

    reason: str
