"""`orcac eval`'s judges: a judged task's judges score every arm's answers, as they scored the
teacher's in `orcac build`, so the task's accuracy is the share its judges keep.

Each answer that passes the task's other checks is shown to each of its judges: the same
rubric, message and content-addressed job as the build's (`orcac.runtime.build.judges`), run
by the same teacher runtime, scored by the same `read_score` and threshold. A judge answer is
asked once: every one is kept in `eval_judge_answers` by job id as it arrives (a stopped eval
keeps those it got), and any eval that needs the same judgement again (a re-run, or the same
answer from another arm) reads it from there, or from the build's `responses`. Each run's
verdicts are rows of `eval_judgements`. `eval { judges = false }` asks no judge.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orcac.runtime.build import judges
from orcac.templates import failure_reason

FLUSH_EVERY = 64  # judge answers written to the database in batches of this many


@dataclass(frozen=True)
class EvalJudgement:
    """One judge's verdict on one eval answer."""

    judge: str
    job_id: str | None  # None: the rubric could not be rendered for this answer
    score: float | None
    reasoning: str | None
    accepted: bool
    reason: str


def judged_tasks(plan, asked: dict) -> list[str]:
    return [task for task in asked if judges.rules(plan.tasks[task])]


def judge_keys(plan, asked: dict) -> list:
    """The teachers the judges of these tasks call (for `require_keys` before anything runs)."""
    names = {rule.judge.teacher for task in judged_tasks(plan, asked) for rule in judges.rules(plan.tasks[task])}
    return [plan.teachers[name] for name in sorted(names)]


def judge_answers(plan, root: Path, db_path: Path, arm: str, asked: dict, answers: dict,
                  passes: Callable) -> dict[tuple[str, int], list[EvalJudgement]]:
    """(task, index) -> its judgements, for every answer of a judged task: none for one that
    fails the task's other checks (`passes(held, answer)` is false), else one per judge."""
    from orcac.runtime.teachers.jobs import make_job

    wanted: dict[tuple[str, int], list] = {}  # -> [(judge, job or None, problem)]
    jobs: dict[str, object] = {}
    for task in judged_tasks(plan, asked):
        for i, held in enumerate(asked[task]):
            answer = answers[task][i]
            wanted[(task, i)] = []
            if not passes(held, answer):
                continue
            for rule in judges.rules(plan.tasks[task]):
                try:
                    messages = judges.messages(rule.judge, held.prompt, answer.text, held.gold)
                except Exception as error:  # a rubric that fails on this answer: its verdict says why
                    wanted[(task, i)].append((rule.judge, None, failure_reason(error)))
                    continue
                job = make_job(plan.teachers[rule.judge.teacher], messages)
                jobs.setdefault(job.id, job)
                wanted[(task, i)].append((rule.judge, job, None))
    if not wanted:
        return {}
    heard = _stored(db_path, list(jobs))
    todo = [job for job_id, job in jobs.items() if job_id not in heard]
    failed: set[str] = set()
    if todo:
        _ask(plan, root, db_path, todo, {job.id: judge.name for pairs in wanted.values() for judge, job, _ in pairs if job},
             heard, failed)
    print(f"  {arm}: judges: {len(jobs) - len(todo)} judgements reused, {len(todo)} asked"
          + (f", {len(failed)} failed" if failed else ""), file=sys.stderr, flush=True)
    out = {}
    for key, pairs in wanted.items():
        out[key] = [_verdict(judge, job, problem, heard) for judge, job, problem in pairs]
    return out


def _verdict(judge, job, problem: str | None, heard: dict) -> EvalJudgement:
    if job is None:
        return EvalJudgement(judge.name, None, None, None, False, f"judged({judge.name}): the rubric failed: {problem}")
    if job.id not in heard:
        return EvalJudgement(judge.name, job.id, None, None, False, f"judged({judge.name}): {judges.FAILED}")
    text, finish = heard[job.id]
    score = judges.read_score(judge, text, finish)
    verdict = judges.verdict_of(judge, score)
    return EvalJudgement(judge.name, job.id, score.value, score.reasoning, verdict.accepted, verdict.reason)


def _ask(plan, root: Path, db_path: Path, todo: list, judge_of: dict[str, str], heard: dict, failed: set) -> None:
    """Run the judge jobs, keeping each answer in `eval_judge_answers` as it comes (in batches,
    and whatever is pending when the run stops, by an error or Ctrl-C)."""
    from orcac.runtime.store.database import open_database
    from orcac.runtime.teachers.calls import run_jobs

    pending: list[tuple] = []

    def flush() -> None:
        if not pending:
            return
        con = open_database(db_path)
        try:
            con.executemany("INSERT OR IGNORE INTO eval_judge_answers VALUES (?, ?, ?, ?, ?, ?, ?)", pending)
        finally:
            con.close()
        pending.clear()

    def on_outcome(outcome) -> None:
        if outcome.status != "ok":
            failed.add(outcome.job_id)  # asked again by the next eval
            return
        heard[outcome.job_id] = (outcome.text, outcome.finish_reason)
        pending.append((outcome.job_id, judge_of[outcome.job_id], outcome.text, outcome.finish_reason,
                        outcome.prompt_tokens, outcome.completion_tokens, outcome.cost))
        if len(pending) >= FLUSH_EVERY:
            flush()

    try:
        asyncio.run(run_jobs(plan.teachers, todo, on_outcome, root=root))
    finally:
        flush()


def _stored(db_path: Path, job_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """job id -> (text, finish reason) of the judge answers an earlier eval or build stored."""
    if not job_ids or not db_path.is_file():
        return {}
    from orcac.runtime.store.database import open_database

    con = open_database(db_path, read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        found: dict[str, tuple[str, str | None]] = {}
        for table in ("responses", "eval_judge_answers"):
            if table in tables:
                found.update({job_id: (text, finish) for job_id, text, finish in con.execute(
                    f"SELECT job_id, text, finish_reason FROM {table} WHERE job_id IN (SELECT unnest(?::VARCHAR[]))",
                    [job_ids],
                ).fetchall()})
    finally:
        con.close()
    return found


def store(con, run_id: str, arm: str, asked: dict, judgements: dict[tuple[str, int], list[EvalJudgement]]) -> None:
    """This run's verdicts, a row per answer and judge."""
    rows = [
        (run_id, arm, task, asked[task][i].row_index, j.judge, j.job_id, j.score, j.reasoning, j.accepted, j.reason)
        for (task, i), found in judgements.items()
        for j in found
    ]
    if rows:
        con.executemany("INSERT INTO eval_judgements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def mean_scores(judgements: dict[tuple[str, int], list[EvalJudgement]]) -> dict[tuple[str, str], float | None]:
    """(task, judge) -> the mean of the scores read (None: the judge scored none)."""
    scores: dict[tuple[str, str], list[float]] = {}
    for (task, _), found in judgements.items():
        for j in found:
            bucket = scores.setdefault((task, j.judge), [])
            if j.score is not None:
                bucket.append(j.score)
    return {key: (sum(v) / len(v) if v else None) for key, v in scores.items()}
