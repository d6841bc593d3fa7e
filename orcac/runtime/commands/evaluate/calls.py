"""The teacher calls `orcac eval` makes (the prompted arm's answers, the judges' scores), each
made once: kept in `eval_calls` by job id as they arrive, so an eval stopped half-way (an
error, Ctrl-C, SIGTERM) keeps what it paid for, and any later eval that needs the same job,
content-addressed like every teacher job, reads it instead of asking again. The build's
`responses` are read too: the same job id is the same request; and so is the machine's answer
cache (orcac/runtime/store/answer_cache.py; ORCAC_ANSWER_CACHE=off turns it off), which every
answer eval is given goes into as well. Answers read from the cache are recorded where eval
records every answer it scores (`eval_answers`, `eval_judgements`).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

FLUSH_EVERY = 64  # answers written to the database in batches of this many
PROGRESS_EVERY_S = 5.0  # a progress line at most this often (a hosted judge may take minutes)


@dataclass(frozen=True)
class Heard:
    text: str
    finish_reason: str | None
    completion_tokens: int


def stored(db_path: Path | None, job_ids: Iterable[str]) -> dict[str, Heard]:
    """job id -> the answer an earlier eval (or the build) stored for it."""
    job_ids = list(job_ids)
    if db_path is None or not job_ids or not Path(db_path).is_file():
        return _cached(job_ids)
    from orcac.runtime.store import evaluations
    from orcac.runtime.store.database import Store

    with Store.open(db_path, read_only=True) as store:
        rows = evaluations.stored_answers(store, job_ids)
    if rows is None:
        return {}
    heard = {job_id: Heard(text, finish, tokens or 0) for job_id, text, finish, tokens in rows}
    return heard | _cached([job_id for job_id in job_ids if job_id not in heard])


def _cached(job_ids: list[str]) -> dict[str, Heard]:
    """The machine's answer cache's answers to these jobs (read only: nothing is created)."""
    from orcac.runtime.store.answer_cache import AnswerCache

    cache = AnswerCache.open(create=False, quiet=True) if job_ids else None
    if cache is None:
        return {}
    with cache:
        return {job_id: Heard(a.text, a.finish_reason, a.completion_tokens) for job_id, a in cache.get(job_ids).items()}


def ask(
    plan, root: Path, db_path: Path, jobs: list, purpose: dict[str, str], *, label: str
) -> tuple[dict[str, Heard], set[str]]:
    """Run `jobs` through the teacher runtime; returns (job id -> answer, ids that failed).
    Each answer is written to `eval_calls` (with `purpose[job_id]`: "prompted" or the judge's
    `judged(NAME)`) in batches as it comes, and whatever is pending when the run stops.
    A line `  LABEL: done/total calls, Ns` goes to stderr at most every PROGRESS_EVERY_S."""
    from orcac.runtime.store import evaluations
    from orcac.runtime.store.answer_cache import Answer, AnswerCache
    from orcac.runtime.teachers.calls import run_jobs
    from orcac.runtime.teachers.jobs import job_limit

    by_id = {job.id: job for job in jobs}
    cache = AnswerCache.open() if jobs else None
    keep: list = []  # answers for the cache, put in once they are in the database
    heard: dict[str, Heard] = {}
    failed: set[str] = set()
    pending: list[dict] = []
    started = last = time.monotonic()

    def flush() -> None:
        if not pending:
            return
        with evaluations.writing(db_path) as store:
            evaluations.insert_calls(store, pending)
        pending.clear()
        if cache is not None:
            cache.put(keep)
        keep.clear()

    def on_outcome(outcome) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            done = len(heard) + len(failed) + 1
            print(f"  {label}: {done}/{len(jobs)} calls, {now - started:.0f}s", file=sys.stderr, flush=True)
        if outcome.status != "ok":
            failed.add(outcome.job_id)  # not kept: the next eval asks it again
            return
        heard[outcome.job_id] = Heard(outcome.text, outcome.finish_reason, outcome.completion_tokens)
        pending.append(
            {
                "job_id": outcome.job_id,
                "purpose": purpose[outcome.job_id],
                "text": outcome.text,
                "finish_reason": outcome.finish_reason,
                "prompt_tokens": outcome.prompt_tokens,
                "completion_tokens": outcome.completion_tokens,
                "cost": outcome.cost,
            }
        )
        job = by_id[outcome.job_id]
        teacher = plan.teachers[job.teacher]
        keep.append(Answer.of(outcome, job, teacher.model, job_limit(teacher, job)))
        if len(pending) >= FLUSH_EVERY:
            flush()

    try:
        if jobs:
            asyncio.run(run_jobs(plan.teachers, jobs, on_outcome, root=root))
    finally:
        flush()
        if cache is not None:
            cache.close()
    return heard, failed
