"""Answers a build finds before it calls: in the machine's answer cache, or asked under another max_tokens.

    found = find(plan, store, jobs, answered, cache)   # read-only: the dry run counts it
    adopt(plan, store, found, jobs, item_of)           # the build: copied into its database

Two ways a job not in this database is answered without a call:

- **The answer cache** (orcac/runtime/store/answer_cache.py) holds its id: another spec, or
  another database, asked the same request. Copied with `origin = 'cache'`.
- **Another limit.** Every answer is stored with its family (the job id without max_tokens,
  `family_id`) and the limit it was asked under. An answer that stopped by itself
  (finish_reason `stop`) is the answer under any limit it fits: any larger one, and a smaller
  one that its completion tokens fit under. So raising max_tokens asks again only the answers
  that were cut off (`length`), and lowering it reuses every answer no longer than the new
  limit. Copied with `origin = 'reused'` and `reused_from` the job it was asked as.
  Everything else that determines an answer (model, messages, temperature, ...) is in the
  family too, so it still changes which answers are found. At temperature 0 a reused answer
  is the one the teacher would give again; above it, it is one the teacher could give under
  the new limit, but the answers kept this way lean towards the short ones (those that had
  stopped are kept, only the cut ones are drawn again).

Copied rows cost 0 in this database (the call was paid once, where it was asked) and keep
their tokens; their jobs rows say `ok` after 0 attempts.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from orcac.errors import printable
from orcac.runtime.answers.items import Item
from orcac.runtime.commands.build_records.tables import Rows
from orcac.runtime.store import builds
from orcac.runtime.store.answer_cache import Answer, AnswerCache
from orcac.runtime.store.database import Store
from orcac.runtime.teachers.calls import MAX_CHARS_PER_TOKEN
from orcac.runtime.teachers.jobs import Job, Outcome, job_limit
from orcac.specs.plan import Plan

FROM_CACHE = "cache"
REUSED = "reused"


@dataclass
class Found:
    """Answers for jobs this database lacks: job id -> (answer, origin, the job it was asked as)."""

    answers: dict[str, tuple[Answer, str, str | None]] = field(default_factory=dict)
    reused_from: Counter = field(default_factory=Counter)  # (old max_tokens, new) -> answers
    cache: AnswerCache | None = None

    @property
    def from_cache(self) -> int:
        return sum(origin == FROM_CACHE for _, origin, _ in self.answers.values())

    def notes(self) -> list[str]:
        """What was found, in words: the dry run prints them, and the build as notes."""
        out = []
        if self.from_cache:
            out.append(f"{self.from_cache:,} answer(s) from the answer cache ({self.cache.path})")
        for (old, new), count in sorted(self.reused_from.items()):
            why = "they stopped before it" if old < new else f"they stopped within {new} tokens"
            out.append(f"{count:,} answer(s) reused from max_tokens {old} ({why})")
        return out


def find(
    plan: Plan, store: Store | None, jobs: dict[str, Job], answered: Iterable[str], cache: AnswerCache | None
) -> Found:
    """Answers, without a call, for the `jobs` not in `answered` (this database's): by id from
    the cache, else by family from this database or the cache. Reads only."""
    answered = set(answered)
    missing = {job_id: job for job_id, job in jobs.items() if job_id not in answered}
    found = Found(cache=cache)
    if not missing:
        return found
    if cache is not None:
        for job_id, answer in cache.get(list(missing)).items():
            found.answers[job_id] = (answer, FROM_CACHE, None)
    rest = [job for job_id, job in missing.items() if job_id not in found.answers and job.family]
    if not rest:
        return found
    families = sorted({job.family for job in rest})
    candidates: dict[str, dict[str, Answer]] = {}
    for answer in _stopped_in_database(store, families) + (cache.families(families) if cache else []):
        candidates.setdefault(answer.family, {}).setdefault(answer.job_id, answer)
    for job in rest:
        teacher = plan.teachers[job.teacher]
        limit = job_limit(teacher, job)
        fits = [
            a
            for a in candidates.get(job.family, {}).values()
            if _answers_under(a, limit) and a.job_id != job.id and len(a.text) <= limit * MAX_CHARS_PER_TOKEN
        ]
        if fits:
            # the answer asked under the largest limit first, then by id: the same choice every time
            answer = min(fits, key=lambda a: (-(a.max_tokens or 0), a.job_id))
            found.answers[job.id] = (answer, REUSED, answer.job_id)
            found.reused_from[(answer.max_tokens, limit)] += 1
    return found


def _answers_under(answer: Answer, limit: int) -> bool:
    """An answer that stopped by itself is the answer under `limit` if it was asked under no
    more than that, or its completion fits it (a provider that reports no usage says 0:
    then only the first)."""
    if answer.finish_reason != "stop":
        return False
    return (answer.max_tokens is not None and answer.max_tokens <= limit) or 0 < answer.completion_tokens <= limit


def _stopped_in_database(store: Store | None, families: list[str]) -> list[Answer]:
    if store is None:
        return []
    rows = builds.stopped_answers(store, families)
    return [Answer(*(row[:6]), int(row[6] or 0), int(row[7] or 0), float(row[8] or 0.0), row[9]) for row in rows]


def adopt(plan: Plan, store: Store, found: Found, jobs: dict[str, Job], item_of: dict[str, Item]) -> None:
    """Write the found answers into this database as its own (one transaction), and mark them
    used in the cache (`orcac cache prune --older-than` keeps what builds still read)."""
    if not found.answers:
        return
    rows = Rows(plan)
    for job_id, (answer, origin, source) in found.answers.items():
        outcome = Outcome.reused(
            job_id,
            answer.text,
            finish_reason=answer.finish_reason,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            model=answer.answer_model,
        )
        rows.job(item_of[job_id], "ok", 0, None)
        rows.response(outcome, jobs[job_id], asked_under=answer.max_tokens, origin=origin, reused_from=source)
    store.write(rows.tables())
    if found.cache is not None:
        found.cache.touch([a.job_id for a, origin, _ in found.answers.values() if origin == FROM_CACHE])


def bring_in(plan: Plan, store: Store, item_of: dict[str, Item], cache: AnswerCache | None) -> set[str]:
    """Before asking for these items' jobs: this database's answers the cache lacks go into it
    (`backfill`), and answers it lacks come from the cache or another max_tokens (`find`),
    copied in (`adopt`), with a note on stderr saying how many and why. Returns the ids copied in."""
    jobs = {job_id: item.job for job_id, item in item_of.items()}
    answered = builds.answered_ids(store, list(jobs))
    backfill(plan, store, {job_id: jobs[job_id] for job_id in answered}, cache)
    found = find(plan, store, jobs, answered, cache)
    adopt(plan, store, found, jobs, item_of)
    for note in found.notes():
        print(f"note: {printable(note)}", file=sys.stderr)
    return set(found.answers)


def backfill(plan: Plan, store: Store, jobs: dict[str, Job], cache: AnswerCache | None) -> int:
    """Put into the cache the answers this database asked for these jobs that it lacks: those
    of a build from before the cache, or of one killed between its two writes. Returns how many."""
    if cache is None or not jobs:
        return 0
    ids = builds.teacher_answered_ids(store, list(jobs))
    absent = sorted(cache.missing(ids))  # ids first: a finished build re-run reads no text
    if not absent:
        return 0
    rows = builds.answers_with_usage(store, absent)
    answers = []
    for job_id, text, finish, prompt_tokens, completion_tokens, cost, model in rows:
        job = jobs[job_id]
        teacher = plan.teachers[job.teacher]  # its job id hashes the limit it was asked under
        answers.append(
            Answer(
                job_id,
                job.family or None,
                teacher.model,
                job_limit(teacher, job),
                text,
                finish,
                int(prompt_tokens or 0),
                int(completion_tokens or 0),
                float(cost or 0.0),
                model,
            )
        )
    return cache.put(answers)


def keeper(plan: Plan, cache: AnswerCache | None, job_of):
    """A Flusher `on_flush` that puts a flushed batch's answers into the cache, after they are
    in this database; `job_of(entry) -> (outcome, job)` reads one buffered entry."""
    if cache is None:
        return None

    def keep(batch: list) -> None:
        answers = []
        for entry in batch:
            outcome, job = job_of(entry)
            if outcome.status == "ok":  # never a failure
                teacher = plan.teachers[job.teacher]
                answers.append(Answer.of(outcome, job, teacher.model, job_limit(teacher, job)))
        cache.put(answers)

    return keep
