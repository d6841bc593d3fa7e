"""`orcac eval --dry-run`: the teacher calls an eval would make, and what they would cost,
before anything runs: the prompted arm's answers and the judges' scores. The base and trained
arms are the student, on this machine: no call, no cost, but their answers are judged.

Counted as `orcac build --dry-run` counts (orcac.costs: prompt tokens are characters / 4,
every completion as long as its budget). Calls already kept (`eval_calls`, the build's
`responses`) are cached and cost nothing. A judge's calls are exact where the answers are
known (the prompted arm's, once kept) and, for answers still to come, an upper bound: one
call per answer, as if every one passed the task's other checks, its prompt the rubric with
an answer of `eval.max_new_tokens`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orcac import costs
from orcac.runtime.answers import judges
from orcac.runtime.commands.evaluate import calls, judging


@dataclass(frozen=True)
class Line:
    arm: str
    task: str
    who: str  # the teacher, or `judged(NAME)`
    answers: int  # what it is asked about: examples (prompted), answers (a judge)
    cached: int
    calls: int
    prompt_tokens: int
    cost: float | None


def dry_run(lines: list[Line], arms: list[str], *, print_=print) -> int:
    """Print `estimate`'s lines, with totals; call nothing."""
    print_(
        f"{'arm':<9} {'task':<20} {'asks':<20} {'answers':>7} {'cached':>7} {'calls':>7} {'prompt tokens':>14} {'est. cost':>10}"
    )
    for line in lines:
        print_(
            f"{line.arm:<9} {line.task:<20} {line.who:<20} {line.answers:>7} {line.cached:>7} {line.calls:>7} "
            f"{line.prompt_tokens:>14,} {costs.shown(line.cost):>10}"
        )
    total = costs.shown_total(line.cost for line in lines)
    print_(
        f"{'total':<9} {'':<20} {'':<20} {sum(x.answers for x in lines):>7} {sum(x.cached for x in lines):>7} "
        f"{sum(x.calls for x in lines):>7} {sum(x.prompt_tokens for x in lines):>14,} {total:>10}"
    )
    local = [arm for arm in arms if arm != "prompted"]
    if local:
        print_(f"{' and '.join(local)}: the student on this machine, no calls")
    if any(line.who.startswith("judged(") for line in lines):
        print_("judges: answers not in yet are counted as if every one passed the task's other checks")
    print_("dry run: nothing was called")
    return 0


def estimate(
    plan,
    db_path,
    arms: list[str],
    held: dict,
    *,
    prompted: tuple[dict, dict],
    prompted_held: dict,
    prompted_answers: dict,
    passes: Callable,
) -> list[Line]:
    """One line for the prompted arm per task, and one per arm, task and judge.
    `prompted`: the prompted arm's (jobs, index), as `arms.prompted_jobs` makes them, for
    its tasks (`prompted_held`); `prompted_answers`: task -> its answers kept so far (None
    where there is none yet)."""
    lines: list[Line] = []
    if "prompted" in arms:
        jobs, index = prompted
        heard = calls.stored(db_path, jobs)
        for task in prompted_held:
            mine = {job_id: jobs[job_id] for job_id, places in index.items() if any(t == task for t, _ in places)}
            todo = [job for job_id, job in mine.items() if job_id not in heard]
            teacher = plan.teachers[plan.tasks[task].teacher]
            tokens = sum(costs.prompt_tokens(job.messages) for job in todo)
            lines.append(
                Line(
                    "prompted",
                    task,
                    teacher.name,
                    len(prompted_held[task]),
                    len(mine) - len(todo),
                    len(todo),
                    tokens,
                    costs.calls_cost(teacher, tokens, len(todo), plan.eval.max_new_tokens),
                )
            )
    if plan.eval.judges:
        for arm in arms:
            asked = prompted_held if arm == "prompted" else held
            answers = prompted_answers if arm == "prompted" else None
            lines += _judge_lines(plan, db_path, arm, asked, answers, passes)
    return lines


def _judge_lines(plan, db_path, arm: str, asked: dict, answers: dict | None, passes: Callable) -> list[Line]:
    lines = []
    known = answers or {task: [None] * len(rows) for task, rows in asked.items()}
    wanted, jobs = judging.judge_jobs(plan, asked, known, passes)
    heard = calls.stored(db_path, jobs)
    for task in judging.judged_tasks(plan, asked):
        for rule in judges.rules(plan.tasks[task]):
            judge, teacher = rule.judge, plan.teachers[rule.judge.teacher]
            n = cached = calls_ = tokens = 0
            seen: set[str] = set()
            for i, held in enumerate(asked[task]):
                if known[task][i] is not None:  # exact: judged only if it passes, maybe cached
                    for this, job, _ in wanted[(task, i)]:
                        if this.name != judge.name or job is None:
                            continue
                        n += 1
                        if job.id in heard or job.id in seen:
                            cached += 1
                            continue
                        seen.add(job.id)
                        calls_ += 1
                        tokens += costs.prompt_tokens(job.messages)
                else:  # still to come: one call, its answer as long as the arm may make it
                    n += 1
                    calls_ += 1
                    tokens += costs.prompt_tokens(judges.unanswered_messages(judge, held)) + plan.eval.max_new_tokens
            lines.append(
                Line(
                    arm,
                    task,
                    f"judged({judge.name})",
                    n,
                    cached,
                    calls_,
                    tokens,
                    costs.calls_cost(teacher, tokens, calls_),
                )
            )
    return lines
