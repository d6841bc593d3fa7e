"""The probe's reads and writes of the build's database (orcac.runtime.commands.build_records.probe):
its decisions, one row per candidate, and the stored answers a probe score needs."""

from __future__ import annotations

from orcac.runtime.store.database import Store, in_list
from orcac.specs.plan import Decision


def write_decision(store: Store, task: str, decision: Decision) -> None:
    """Upsert one row per candidate; rows for the task's earlier keys stay, as history."""
    import pyarrow as pa

    rows = [
        {
            "task": task,
            "key": decision.key,
            "strategy": s.strategy,
            "chosen": s.strategy == decision.chosen,
            "score": s.score,
            "passed": s.passed,
            "total": s.total,
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "cost": s.cost,
        }
        for s in decision.scores
    ]
    store.write({"decisions": pa.Table.from_pylist(rows)})


def decision_recorded(store: Store, task: str, key: str) -> bool:
    """Whether the task's decision under this probe key is stored."""
    return bool(store.rows("SELECT 1 FROM decisions WHERE task = ? AND key = ? LIMIT 1", [task, key]))


ANSWER_COLUMNS = ("job_id", "text", "finish_reason", "prompt_tokens", "completion_tokens", "cost")


def probe_answers(store: Store, job_ids: list[str]) -> dict[str, dict]:
    """Stored answers by job id (ANSWER_COLUMNS), with the token counts and cost a probe score needs."""
    if not job_ids:
        return {}
    found = store.rows(
        f"SELECT {', '.join(ANSWER_COLUMNS)} FROM responses WHERE {in_list('job_id')}", [sorted(set(job_ids))]
    )
    return {row[0]: dict(zip(ANSWER_COLUMNS, row)) for row in found}
