"""`orcac eval`'s judges: a judged task's judges score every arm's answers, as they scored the
teacher's in `orcac build`, so the task's accuracy is the share its judges keep.

Each answer that passes the task's other checks is shown to each of its judges: the same
rubric, message and content-addressed job as the build's (`orcac.runtime.answers.judges`), run
by the same teacher runtime, scored by the same `read_score` and threshold. A judge answer is
asked once (`orcac.runtime.commands.evaluate.calls`: kept by job id as it arrives), so a re-run, or the
same answer from another arm, asks no judge again. Each run's verdicts are rows of
`eval_judgements`. `eval { judges = false }` asks no judge.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orcac.runtime.answers import judges
from orcac.runtime.commands.evaluate import calls
from orcac.templates import failure_reason


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


def judge_jobs(plan, asked: dict, answers: dict, passes: Callable) -> tuple[dict, dict]:
    """What the judges are to be asked: ((task, index) -> [(judge, its job, or None and why
    the rubric could not be rendered)], job id -> job, each once) for every answer of a judged
    task; an answer that fails the task's other checks (`passes(held, answer)` is false), or
    that is not there (None), gets no judge."""
    from orcac.runtime.teachers.jobs import make_job

    wanted: dict[tuple[str, int], list] = {}
    jobs: dict[str, object] = {}
    for task in judged_tasks(plan, asked):
        for i, held in enumerate(asked[task]):
            answer = answers[task][i]
            wanted[(task, i)] = []
            if answer is None or not passes(held, answer):
                continue
            for rule in judges.rules(plan.tasks[task]):
                try:
                    messages = judges.messages(rule.judge, held.prompt, answer.text, held.gold)
                except Exception as error:  # noqa: BLE001 - a rubric that fails on this answer: its verdict says why
                    wanted[(task, i)].append((rule.judge, None, failure_reason(error)))
                    continue
                job = make_job(plan.teachers[rule.judge.teacher], messages)
                jobs.setdefault(job.id, job)
                wanted[(task, i)].append((rule.judge, job, None))
    return wanted, jobs


def judge_answers(
    plan, root: Path, db_path: Path, arm: str, asked: dict, answers: dict, passes: Callable
) -> dict[tuple[str, int], list[EvalJudgement]]:
    """(task, index) -> its judgements, for every answer of a judged task: none for one that
    fails the task's other checks (`passes(held, answer)` is false), else one per judge."""
    wanted, jobs = judge_jobs(plan, asked, answers, passes)
    if not wanted:
        return {}
    heard = calls.stored(db_path, jobs)
    todo = [job for job_id, job in jobs.items() if job_id not in heard]
    purpose = {job.id: f"judged({judge.name})" for pairs in wanted.values() for judge, job, _ in pairs if job}
    asked, failed = calls.ask(plan, root, db_path, todo, purpose, label=f"{arm}: judges")
    heard.update(asked)
    print(
        f"  {arm}: judges: {len(jobs) - len(todo)} judgements reused, {len(todo)} asked"
        + (f", {len(failed)} failed" if failed else ""),
        file=sys.stderr,
        flush=True,
    )
    return {
        key: [_verdict(judge, job, problem, heard) for judge, job, problem in pairs] for key, pairs in wanted.items()
    }


def _verdict(judge, job, problem: str | None, heard: dict) -> EvalJudgement:
    if job is None:
        return EvalJudgement(judge.name, None, None, None, False, f"judged({judge.name}): the rubric failed: {problem}")
    if job.id not in heard:
        return EvalJudgement(judge.name, job.id, None, None, False, f"judged({judge.name}): {judges.FAILED}")
    answer = heard[job.id]
    score = judges.read_score(judge, answer.text, answer.finish_reason)
    verdict = judges.verdict_of(judge, score)
    return EvalJudgement(judge.name, job.id, score.value, score.reasoning, verdict.accepted, verdict.reason)


def mean_scores(judgements: dict[tuple[str, int], list[EvalJudgement]]) -> dict[tuple[str, str], float | None]:
    """(task, judge) -> the mean of the scores read (None: the judge scored none)."""
    scores: dict[tuple[str, str], list[float]] = {}
    for (task, _), found in judgements.items():
        for j in found:
            bucket = scores.setdefault((task, j.judge), [])
            if j.score is not None:
                bucket.append(j.score)
    return {key: (sum(v) / len(v) if v else None) for key, v in scores.items()}
