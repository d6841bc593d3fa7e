"""Reads over the build's database that more than one command asks."""

from __future__ import annotations

from orcac.runtime.store.database import Store
from orcac.specs.forms import echo


def echoed_records(store: Store) -> dict[str, int]:
    """task -> its records whose answer points at a prompt the student never sees (`no_echo`,
    orcac/specs/forms.py): what a task that does not check for it teaches. The build's summary
    and the report show them."""
    counts: dict[str, int] = {}
    for task, answer in store.rows("SELECT task, assistant FROM records ORDER BY task"):
        if answer and echo(answer):
            counts[task] = counts.get(task, 0) + 1
    return counts


def table_names(store: Store) -> set[str]:
    """The file's tables: an older file lacks some, and its readers take those as empty."""
    return {name for (name,) in store.rows("SELECT table_name FROM information_schema.tables")}


def column_names(store: Store, table: str) -> set[str]:
    """`table`'s columns (none where the file lacks it): an older file lacks some, read as NULL."""
    return {
        name
        for (name,) in store.rows("SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table])
    }
