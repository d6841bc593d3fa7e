"""What the build writes: outcomes, verdicts and records as the store's tables, and how often.

Outcomes are written in batches, each in one transaction (response, verdict and record
together), as soon as about as many answers as are in flight have arrived (`flush_every`)
or FLUSH_SECONDS have passed: a kill re-pays what was in flight and about as much again,
whatever the teacher's speed (benchmarks/bench_kill.py, BENCHMARKS.md).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING

from orcac.runtime.answers.checks import Verdict, check_answer
from orcac.runtime.answers.erasure import RECORD_FIELDS, erased
from orcac.runtime.answers.examples import Example
from orcac.runtime.answers.given import Given
from orcac.runtime.answers.items import Item
from orcac.runtime.store import builds
from orcac.runtime.store.database import Store
from orcac.runtime.teachers.jobs import Job, Outcome, job_limit
from orcac.specs.plan import Plan

if TYPE_CHECKING:
    import pyarrow as pa  # imported where tables are built: a re-run that writes nothing skips it


FLUSH_SECONDS = 0.25


FLUSH_AT_LEAST = 32  # answers: a write costs milliseconds whatever its size, so not one per answer


def flush_every(plan: Plan) -> int:
    """Answers buffered before a write: what can be in flight at once (every teacher's
    concurrency), so what a kill loses beyond those in flight is about as many again.

    While a write runs, answers gather for the next one, so a fast teacher gets larger
    batches by itself; the bound is what may wait, not the batch size.
    """
    return max(FLUSH_AT_LEAST, sum(max(1, t.concurrency) for t in plan.teachers.values()))


def _write_examples(plan: Plan, store: Store, examples: dict[str, list[Example]]) -> None:
    """Store the examples that are new or changed, and forget rows the plan no longer samples."""
    desired = [
        (e.task, e.row_index, e.split, e.probe, e.prompt, e.gold, plan.tasks[e.task].source.sha256)
        for task in examples.values()
        for e in task
    ]
    stored = builds.stored_examples(store, list(examples))
    for task, rows in examples.items():
        builds.forget_examples(store, task, [e.row_index for e in rows])
    new = [row for row in desired if row not in stored]
    if new:
        import pyarrow as pa

        columns = list(zip(*new))
        store.write(
            {
                "examples": pa.table(
                    {
                        name: pa.array(
                            column,
                            pa.int64() if name == "row_index" else pa.bool_() if name == "probe" else pa.string(),
                        )
                        for name, column in zip(builds.EXAMPLE_COLUMNS, columns)
                    }
                )
            }
        )


def record_fields(plan: Plan, item: Item, text: str | None) -> tuple:
    """The erased record for an accepted answer (see erasure.erased), in RECORD_FIELDS order."""
    return erased(plan, item.task, item.strategy, item.prompt, text, item.gold)


class Rows:
    """Column lists for jobs, responses, checks and records, turned into Arrow tables at once."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.jobs: dict[str, list] = defaultdict(list)
        self.responses: dict[str, list] = defaultdict(list)
        self.checks: dict[str, list] = defaultdict(list)
        self.records: dict[str, list] = defaultdict(list)
        self.judgements: dict[str, list] = defaultdict(list)

    def job(self, item: Item, status: str, attempts: int, error: str | None, reason: str | None = None) -> None:
        """`reason`: a failed job's (Outcome.reason), kept beside its error text for the report to count by."""
        j = self.jobs
        j["job_id"].append(item.job.id)
        j["task"].append(item.task)
        j["strategy"].append(item.strategy)
        j["row_index"].append(item.row_index)
        j["teacher"].append(item.job.teacher)
        j["model"].append(self.plan.teachers[item.job.teacher].model)
        j["messages"].append(json.dumps(item.job.messages, ensure_ascii=False))
        j["status"].append(status)
        j["attempts"].append(attempts)
        j["error"].append(error)
        j["reason"].append(reason)

    def response(
        self,
        o: Outcome,
        job: Job,
        *,
        asked_under: int | None = None,
        origin: str = "teacher",
        reused_from: str | None = None,
    ) -> None:
        """`job`'s answer: from its teacher, or copied (`origin`, schema.py) from an answer asked
        under max_tokens `asked_under` (default: the teacher's, which its job id hashes)."""
        r = self.responses
        r["job_id"].append(o.job_id)
        r["family"].append(job.family or None)
        r["max_tokens"].append(
            asked_under if asked_under is not None else job_limit(self.plan.teachers[job.teacher], job)
        )
        r["origin"].append(origin)
        r["reused_from"].append(reused_from)
        r["text"].append(o.text)
        r["finish_reason"].append(o.finish_reason)
        r["prompt_tokens"].append(o.prompt_tokens)
        r["completion_tokens"].append(o.completion_tokens)
        r["cost"].append(float(o.cost))
        r["latency_s"].append(float(o.latency_s))
        r["model"].append(o.model)
        r["attempts"].append(o.attempts)

    def verdict(self, item: Item, accepted: bool, reason: str, text: str | None) -> None:
        record = record_fields(self.plan, item, text) if accepted else None
        self._checked(item.record_id, item.job.id, item.task, item.strategy, item.row_index, accepted, reason, record)

    def given(self, g: Given, verdict: Verdict, record: tuple | None) -> None:
        """An answer from the source: a check, and a record if accepted; no job, no strategy."""
        self._checked(g.record_id, None, g.task, None, g.row_index, verdict.accepted, verdict.reason, record)

    def _checked(
        self,
        record_id: str,
        job_id: str | None,
        task: str,
        strategy: str | None,
        row_index: int,
        accepted: bool,
        reason: str,
        record: tuple | None,
    ) -> None:
        c = self.checks
        c["item_id"].append(record_id)
        c["job_id"].append(job_id)
        c["task"].append(task)
        c["strategy"].append(strategy)
        c["row_index"].append(row_index)
        c["accepted"].append(accepted)
        c["reason"].append(reason)
        if record is not None:
            r = self.records
            r["record_id"].append(record_id)
            r["task"].append(task)
            r["split"].append("train")
            r["row_index"].append(row_index)
            r["job_id"].append(job_id)
            for name, value in zip(RECORD_FIELDS, record):
                r[name].append(value)

    def judgement(self, j) -> None:
        """One judge's verdict on one answer (an orcac.runtime.answers.judges.Judgement)."""
        for name in ("item_id", "judge", "job_id", "task", "row_index", "score", "reasoning", "accepted", "reason"):
            self.judgements[name].append(getattr(j, name))

    def tables(self) -> dict[str, pa.Table]:
        if not (self.jobs or self.responses or self.checks or self.records or self.judgements):
            return {}
        import pyarrow as pa

        out = {}
        for name in ("jobs", "responses", "checks", "records", "judgements"):
            columns = getattr(self, name)
            if columns:
                # A column of only None (no errors yet, say) has no type to infer: make it text.
                out[name] = pa.table(
                    {k: pa.array(v, None if any(x is not None for x in v) else pa.string()) for k, v in columns.items()}
                )
        return out


def verdict_for(plan: Plan, item: Item, text: str | None, finish_reason: str | None):
    task = plan.tasks[item.task]
    form = plan.strategies[item.strategy].adherence if item.strategy in plan.strategies else ()
    return check_answer(text, finish_reason, item.gold, task.accept, allow_truncated=task.allow_truncated, form=form)
