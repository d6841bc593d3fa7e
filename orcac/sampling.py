"""Which source rows go to which split: shared by the compiler (counts) and runtime (rows).

Rows are ranked by sha256(seed, task, row index), so a task's sample depends only on
its own seed and name, never on the order tasks are declared in or on other tasks.
The first `holdout` rows of the ranking are held out (evaluation only, never sent to
the teacher or trained on), the next `probe` rows form the probe sample, and every
non-held-out row is a training row (probe rows included: a probe answer under the
winning strategy is reused as training data).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Splits:
    holdout: tuple[int, ...]
    probe: tuple[int, ...]
    train: tuple[int, ...]


def split_sizes(rows: int, *, limit: int | None, holdout: float, probe: int) -> tuple[int, int, int, int]:
    """(sampled, holdout, probe, train) for a source of `rows` rows.

    >>> split_sizes(100, limit=None, holdout=0.2, probe=8)
    (100, 20, 8, 80)
    >>> split_sizes(100, limit=10, holdout=0.25, probe=0)
    (10, 3, 0, 7)
    """
    sampled = rows if limit is None else min(rows, limit)
    # Round half up, spelled out: Python's round() rounds half to even.
    n_holdout = min(sampled, int(sampled * holdout + 0.5))
    n_train = sampled - n_holdout
    return sampled, n_holdout, min(probe, n_train), n_train


def rank_key(seed: int, task: str, row: int) -> bytes:
    return hashlib.sha256(f"{seed}\x1f{task}\x1f{row}".encode()).digest()


def split_rows(rows: int, *, task: str, seed: int, limit: int | None, holdout: float, probe: int) -> Splits:
    """The row indices of each split, each tuple in ranking order.

    >>> s = split_rows(10, task="t", seed=0, limit=None, holdout=0.3, probe=2)
    >>> len(s.holdout), len(s.probe), len(s.train)
    (3, 2, 7)
    >>> set(s.holdout).isdisjoint(s.train) and set(s.probe) <= set(s.train)
    True
    """
    sampled, n_holdout, n_probe, _ = split_sizes(rows, limit=limit, holdout=holdout, probe=probe)
    ranked = sorted(range(rows), key=lambda i: rank_key(seed, task, i))[:sampled]
    train = tuple(ranked[n_holdout:])
    return Splits(holdout=tuple(ranked[:n_holdout]), probe=train[:n_probe], train=train)
