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


def portion_size(available: int, share: float | None, at_most: int | None) -> int:
    """How many of `available` records a stage takes: a share (rounded half up, at least one
    when any are there), at most a number, or all.

    >>> portion_size(10, 0.3, None), portion_size(10, None, 4), portion_size(3, None, 4), portion_size(10, None, None)
    (3, 4, 3, 10)
    >>> portion_size(1, 0.3, None), portion_size(0, 0.5, None)
    (1, 0)
    """
    if share is not None:
        return min(available, max(1 if available else 0, int(available * share + 0.5)))
    if at_most is not None:
        return min(available, at_most)
    return available


def portion(
    record_ids: list[str], *, seed: int, stage: str, task: str, share: float | None, at_most: int | None
) -> list[str]:
    """The records a stage takes of a task, ranked by sha256(seed, stage, task, record id), so
    the choice depends on nothing but those (not on the build's order); returned in the
    order given.

    >>> ids = [f"r{i}" for i in range(10)]
    >>> kept = portion(ids, seed=0, stage="s", task="t", share=0.3, at_most=None)
    >>> len(kept), kept == portion(list(reversed(ids)), seed=0, stage="s", task="t", share=0.3, at_most=None)[::-1]
    (3, True)
    """
    n = portion_size(len(record_ids), share, at_most)
    if n == len(record_ids):
        return list(record_ids)
    chosen = set(
        sorted(record_ids, key=lambda r: hashlib.sha256(f"{seed}\x1f{stage}\x1f{task}\x1f{r}".encode()).digest())[:n]
    )
    return [r for r in record_ids if r in chosen]
