"""`orcac build --cancel`: ask the provider to cancel the live batches a build recorded.

The batches themselves (submit, poll, collect, cancel) are the teachers library's
(orcac/runtime/teachers/batch.py); this is the command around them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from orcac.runtime.context import RunContext
from orcac.runtime.store.database import Store
from orcac.runtime.teachers.batch import cancel_live_batches, printable


def command(context: RunContext, args) -> int:
    """`orcac build --cancel`: cancel the live batches recorded in the build's database."""
    plan, path = context.plan, context.db
    if not Path(path).exists():
        print(f"no build database at {path}: nothing to cancel")
        return 0
    with Store.open(path) as store:
        cancelled = asyncio.run(cancel_live_batches(plan.teachers, store))
    for teacher, batch_id, status in cancelled:
        print(f"teacher {teacher}: batch {printable(batch_id)}: {printable(status)}")
    print(f"{len(cancelled)} live batch(es) cancelled" if cancelled else "no live batches to cancel")
    if cancelled:
        print("answers they finished are collected by the next `orcac build`, which submits the rest again")
    return 0
