"""Build databases made by hand, for the train and eval tests and the benchmark.

`write_records` creates the `records` (and `examples`) tables a build would leave, with
Orca-like rows (`orca_rows`): an arithmetic question, numbered steps, a final "Answer:" line.
Their plan is `train_plan` in tests/support/plans.py.
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.support.plans import ERASE


def orca_rows(task: str, n: int, *, seed: int = 0, long_every: int = 5) -> list[dict]:
    """Orca-like (user, assistant, gold) rows with mixed lengths: a few long answers per batch."""
    rng = random.Random(f"{seed}-{task}")
    rows = []
    for i in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        op, result = ("+", a + b) if task != "mul" else ("*", a * b)
        steps = [f"{k}. We look at the numbers {a} and {b} again, carefully." for k in range(1, 2 + rng.randint(0, 2))]
        if i % long_every == 0:
            steps += [
                f"{k}. Checking the partial result once more, digit by digit."
                for k in range(len(steps) + 1, len(steps) + 12)
            ]
        steps.append(f"{len(steps) + 1}. {a} {op} {b} = {result}.")
        rows.append(
            {
                "task": task,
                "id": i,
                "user": f"What is {a} {op} {b}?",
                "assistant": "\n".join(steps) + f"\nAnswer: {result}",
                "gold": str(result),
            }
        )
    return rows


def write_records(db_path: Path, rows: list[dict], *, holdout: list[dict] = ()) -> Path:
    """Create the build's tables (orcac.runtime.store.database.SCHEMA) with these records and held-out examples."""
    import pyarrow as pa

    from orcac.runtime.store.database import Store

    with Store.open(db_path) as store:
        if rows:
            store.write(
                {
                    "records": pa.table(
                        {
                            "record_id": [f"{r['task']}-{r['id']}" for r in rows],
                            "task": [r["task"] for r in rows],
                            "strategy": ["steps"] * len(rows),
                            "split": ["train"] * len(rows),
                            "row_index": [r["id"] for r in rows],
                            "system": [ERASE] * len(rows),
                            "user": [r["user"] for r in rows],
                            "assistant": [r["assistant"] for r in rows],
                            "gold": [r["gold"] for r in rows],
                        }
                    )
                },
            )
        if holdout:
            store.write(
                {
                    "examples": pa.table(
                        {
                            "task": [r["task"] for r in holdout],
                            "row_index": [r["id"] for r in holdout],
                            "split": ["holdout"] * len(holdout),
                            "probe": [False] * len(holdout),
                            "prompt": [r["user"] for r in holdout],
                            "gold": [r["gold"] for r in holdout],
                        }
                    )
                },
            )
    return db_path
