"""`orcac cache info | prune | clear`: the machine's answer cache (orcac/runtime/store/answer_cache.py)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from orcac.errors import OrcacError, printable
from orcac.runtime.store.answer_cache import ENV, AnswerCache, location, network_filesystem, parse_age


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


def command(args) -> int:
    """`orcac cache info | prune | clear`."""
    path = location()
    if path is None:
        raise OrcacError(
            f"the answer cache is off ({ENV}={os.environ.get(ENV)})",
            hint=f"unset {ENV}, or set it to the cache's folder",
        )
    if args.action == "clear":
        removed = [p for p in path.parent.glob(path.name + "*") if p.is_file()]
        for p in removed:  # the file and its -wal / -shm / -journal companions
            p.unlink()
        print(f"cleared the answer cache at {path}" if removed else f"no answer cache at {path}")
        return 0
    if args.action == "prune" and args.older_than is None and args.model is None:
        raise OrcacError("orcac cache prune: say what to prune", hint="pass --older-than 30d and/or --model MODEL")
    age = parse_age(args.older_than) if args.older_than is not None else None
    if not path.is_file():
        print(f"answer cache: {path} (empty: no build has stored an answer yet)")
        return 0
    cache = AnswerCache.open(path=path, quiet=True)
    if cache is None:
        raise OrcacError(f"the answer cache at {path} cannot be read", hint="`orcac cache clear` starts a new one")
    with cache:
        try:
            if args.action == "prune":
                count = cache.prune(older_than_s=age, model=args.model)
                print(f"pruned {count:,} answer(s) from {path}")
                return 0
            rows = cache.summary()
        except sqlite3.Error as error:
            raise OrcacError(
                f"the answer cache at {path}: {error}",
                hint="try again once the builds using it are done; `orcac cache clear` starts a new one",
            ) from None
    total = sum(r[1] for r in rows)
    print(f"answer cache: {path}")
    print(
        f"  {total:,} answers, {_size(path) / 1e6:,.2f} MB on disk"
        + (", on a network filesystem (rollback journal, no WAL)" if network_filesystem(path.resolve()) else "")
    )
    if rows:
        print(f"  {'model':<40} {'answers':>8} {'text MB':>8}  {'oldest':<16}  {'newest':<16}")
        for model, count, size, oldest, newest in rows:
            print(
                f"  {printable(model or '-'):<40} {count:>8,} {size / 1e6:>8.2f}  {_when(oldest):<16}  {_when(newest):<16}"
            )
    return 0
