"""`orcac export`'s reads: the records as chat messages, or the held-out examples with the erase
message, for the plan's tasks in (task, row) order."""

from __future__ import annotations

import pyarrow as pa

from orcac.runtime.store.database import Store
from orcac.specs.plan import Plan

_TRAIN = """
    SELECT [{'role': 'system', 'content': system},
            {'role': 'user', 'content': "user"},
            {'role': 'assistant', 'content': assistant}] AS messages,
           task, strategy, split, row_index, record_id, teacher, gold
    FROM records
    WHERE task IN (SELECT task FROM tasks)
    ORDER BY task, row_index
"""

_HOLDOUT = """
    SELECT [{'role': 'system', 'content': tasks.system},
            {'role': 'user', 'content': prompt}] AS messages,
           task, tasks.strategy, split, row_index, gold
    FROM examples JOIN tasks USING (task)
    WHERE split = 'holdout'
    ORDER BY task, row_index
"""


def records(store: Store, plan: Plan, split: str = "train") -> pa.Table:
    """The rows an export writes, for the plan's tasks, in (task, row) order."""
    tasks = pa.table(
        {
            "task": list(plan.tasks),
            "strategy": [t.strategy for t in plan.tasks.values()],
            "system": [plan.erase[t.erase].system for t in plan.tasks.values()],
        }
    )
    return store.query(_TRAIN if split == "train" else _HOLDOUT, tasks=tasks)
