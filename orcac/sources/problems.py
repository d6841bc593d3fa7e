"""What goes wrong reading a source: a source that cannot be read, a line that is not a row."""

from __future__ import annotations

import difflib
import posixpath
from dataclasses import dataclass
from pathlib import Path

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


def nearby_file(base: Path, path: str) -> str | None:
    """A "did you mean data/tickets.csv?" hint for a missing `data/ticket.csv`: a file of a
    close name in the same directory, or None."""
    directory = (base / path).parent
    if not directory.is_dir():
        return None
    # Names compared without their suffixes: "nope.jsonl" is not close to "qa.jsonl" for
    # sharing ".jsonl", and "tickets.jsonl" is close to "tickets.csv".
    by_stem: dict[str, str] = {}
    for p in sorted(directory.iterdir()):
        if p.is_file():
            by_stem.setdefault(p.name.split(".")[0], p.name)
    close = difflib.get_close_matches(posixpath.basename(path).split(".")[0], by_stem, n=1, cutoff=0.8)
    return f"did you mean {posixpath.join(posixpath.dirname(path), by_stem[close[0]])}?" if close else None
