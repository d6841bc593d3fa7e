"""How `orcac eval` scores an answer, and an arm's answers per task.

Each answer is scored twice with the shared checks (orcac/runtime/answers/checks.py):

  accuracy   the task's accept rules against the gold (`check_answer`, the same function
             that filtered the teacher's answers in `orcac build`), and a judged task's
             judges (orcac/runtime/commands/evaluate/judging.py: the build's judges, asked
             again about these answers, each judgement asked once and kept);
  adherence  the form the task's strategy asks for (`adheres`, the strategy's rules),
             e.g. numbered steps and a final "Answer:" line.

and which strategy's form each answer follows (`follows`: the one strategy of the plan whose
`expect` rules all hold, "none" or "several"): per task and arm, this shows whether the student
picked each task's own strategy, or one strategy for every task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orcac.runtime.answers.checks import Verdict, adheres, check_answer
from orcac.runtime.commands.evaluate.arms import Answer
from orcac.runtime.commands.evaluate.held_out import Held
from orcac.specs.forms import followed
from orcac.stats import wilson

METRICS = ("accuracy", "adherence")


@dataclass(frozen=True)
class Scored:
    held: Held
    answer: Answer
    accepted: bool | None  # None: the task checks only the form (its accuracy is n/a)
    reason: str
    adheres: bool | None  # None: the task's strategy has no adherence rules
    broken: tuple[str, ...]
    follows: str | None = None  # whose form it has: a strategy's name, "none", "several"; None: no strategy has a form


def correctness(plan, held: Held, answer: Answer) -> Verdict | None:
    """The answer under the task's accept rules but `follows(strategy)` and `judged(NAME)`:
    the form is what adherence measures (counting it twice would score a right answer in
    another form as wrong), and the judges are asked after, about the answers this passes.
    None: the task has no such rule but has others (a judge, a form)."""
    task = plan.tasks[held.task]
    rules = [r for r in task.accept if r.kind not in ("follows", "judged")]
    if rules or not task.accept:
        return check_answer(answer.text, answer.finish_reason, held.gold, rules, allow_truncated=task.allow_truncated)
    return None


def passes(plan) -> Callable[[Held, Answer], bool]:
    """Whether an answer goes on to the judges: it passes the task's other checks."""

    def passes(held: Held, answer: Answer) -> bool:
        verdict = correctness(plan, held, answer)
        return verdict is None or verdict.accepted

    return passes


def score(plan, held: Held, answer: Answer, judgements: list | None = None) -> Scored:
    """An answer's accuracy and its strategy adherence.

    Accuracy is `correctness`, then, where the task has judges and they were asked
    (`judgements`, one per judge; none for an answer `correctness` rejects), the first judge
    that rejects it. A task with no correctness rule whose judges were not asked has no
    accuracy to measure (None)."""
    task = plan.tasks[held.task]
    rules = plan.strategies[task.strategy].adherence if task.strategy in plan.strategies else ()
    verdict = correctness(plan, held, answer)
    if verdict is not None:
        accepted, reason = verdict.accepted, verdict.reason
    elif judgements is not None:
        accepted, reason = True, "accepted"
    else:
        accepted, reason = None, "no correctness check"
    if accepted and judgements:
        rejected = next((j for j in judgements if not j.accepted), None)
        if rejected is not None:
            accepted, reason = False, rejected.reason
    if rules:
        ok, broken = adheres(answer.text, rules)
    else:
        ok, broken = None, []
    forms = strategy_forms(plan)
    return Scored(held, answer, accepted, reason, ok, tuple(broken), followed(answer.text, forms) if forms else None)


def score_arm(
    plan, asked: dict[str, list[Held]], answers: dict[str, list[Answer]], judged: dict[tuple[str, int], list]
) -> dict[str, list[Scored]]:
    """task -> every answer of one arm scored, in held-out order; `judged`: (task, index) -> its
    judgements (judging.py), where the judges were asked."""
    return {
        task: [
            score(plan, h, a, judged.get((task, i)))
            for i, (h, a) in enumerate(zip(asked[task], answers[task], strict=True))
        ]
        for task in asked
    }


def strategy_forms(plan) -> dict:
    """The plan's strategies that declare a form, by name: the candidates an answer may follow."""
    return {name: s.adherence for name, s in sorted(plan.strategies.items()) if s.adherence}


def strategies_followed(model: str, scored: dict[str, list[Scored]], plan) -> list[dict]:
    """Per task, which strategy's form this arm's answers follow: one row per task with a count
    for each of the plan's strategies that have a form, "none" and "several". Empty when no
    strategy has a form.

    Where the trained student learned each task's own strategy, its row's count sits in the
    column of that task's strategy, as the prompted teacher's does; a student that collapsed
    onto one strategy has every task's count in one column."""
    columns = [*strategy_forms(plan), "none", "several"]
    if len(columns) == 2:
        return []
    rows = []
    for task, items in scored.items():
        counts = dict.fromkeys(columns, 0)
        for s in items:
            if s.follows is not None:
                counts[s.follows] += 1
        rows.append(
            {
                "model": model,
                "task": task,
                "strategy": plan.tasks[task].strategy,
                "examples": len(items),
                "counts": counts,
            }
        )
    return rows


def summarise(model: str, scored: dict[str, list[Scored]], plan, scores: dict | None = None) -> list[dict]:
    """One row per task; `scores`: (task, judge) -> the judge's mean score of this arm's answers."""
    rows = []
    for task, items in scored.items():
        n = len(items)
        judged = [s for s in items if s.adheres is not None]
        checked = [s for s in items if s.accepted is not None]
        rows.append(
            {
                "model": model,
                "task": task,
                "strategy": plan.tasks[task].strategy,
                "examples": n,
                "accepted": sum(bool(s.accepted) for s in checked),
                "checked": len(checked),
                "adherent": sum(bool(s.adheres) for s in judged),
                "adherence_n": len(judged),
                "truncated": sum(s.answer.finish_reason == "length" for s in items),
                "accuracy": sum(bool(s.accepted) for s in checked) / len(checked) if checked else None,
                "adherence": (sum(bool(s.adheres) for s in judged) / len(judged)) if judged else None,
                "judge_scores": {j: v for (t, j), v in sorted((scores or {}).items()) if t == task},
            }
        )
    return rows


def counts(row: dict, metric: str) -> tuple[int, int]:
    """(hits, n) behind one arm's rate: accepted of those checked, or adherent of those with a form."""
    if metric == "accuracy":
        return row["accepted"], row["checked"]
    return row["adherent"], row.get("adherence_n", row["examples"])


def interval(row: dict, metric: str) -> tuple[float, float] | None:
    """The 95% Wilson interval of one arm's rate (None where the rate is n/a)."""
    if row.get(metric) is None:
        return None
    return wilson(*counts(row, metric))


def overall(rows: list[dict]) -> dict:
    """The rows of several tasks as one: counts summed, rates over the summed counts."""
    n = sum(r["examples"] for r in rows)
    judged = [r for r in rows if r["adherence"] is not None]
    adherence_n = sum(r.get("adherence_n", r["examples"]) for r in judged)
    checked = [r for r in rows if r["accuracy"] is not None]
    checked_n = sum(r["checked"] for r in checked)
    accepted = sum(r["accepted"] for r in checked)
    adherent = sum(r["adherent"] for r in judged)
    return {
        "examples": n,
        "accepted": accepted,
        "checked": checked_n,
        "adherent": adherent,
        "adherence_n": adherence_n,
        "accuracy": accepted / checked_n if checked_n else None,
        "adherence": adherent / adherence_n if adherence_n else None,
    }
