"""Judges: answers that no gold can check, scored by a teacher against a rubric.

A task's `judged(NAME)` check (`JudgedRule` in the plan, the judge inside it whole) is a
second job per answer: the judge's teacher is sent one user message, the rubric rendered with
the task's prompt, the answer and the task's gold, and the score is read from what it answers
(`read_score`: its last `Score: N` line, or a JSON object's `score`). Judge jobs are made by
`make_job` like any teacher job, so they are content-addressed, stored in `responses`, never
asked twice, resumed after a kill, counted by the dry run, and retried and failed by the
same rules.

Only answers that pass the task's other checks are judged (the judge is the expensive check),
and only once they have all arrived: `orcac build` asks the teachers first, then the judges
(`orcac.runtime.commands.build_records.command`). An answer's verdict is then a pure function of the stored
answers (`judged`), so the records never depend on the order judges answered in. A judge
answer whose score cannot be read (or lies outside the scale) is a rejection that says so,
not a retry: the same request would get the same answer, and it stays stored under its id.
Each judgement (score, the judge's reasoning, its verdict) is a row of `judgements`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from orcac import costs
from orcac.runtime.answers.checks import Verdict
from orcac.runtime.answers.items import Item
from orcac.runtime.teachers.jobs import Job, make_job
from orcac.specs.plan import JudgedRule, JudgePlan, Plan, TaskPlan
from orcac.templates import failure_reason, render

AWAITING = "not judged yet"
FAILED = "judge call failed"

# "Score: 8", "**Score:** 8/10", "Final score = 7.5"
_SCORE_LINE = re.compile(
    r"^[\s*#>_-]*(?:final\s+)?score\s*[*_]*\s*[:=]\s*[*_]*\s*([-+]?\d+(?:\.\d+)?)\s*(?:/\s*\d+(?:\.\d+)?)?[\s*_.]*$",
    re.I | re.M,
)
_REASONING_KEYS = ("reasoning", "explanation", "reason", "rationale")


def rules(task: TaskPlan) -> tuple[JudgedRule, ...]:
    """The task's judges, in the order its `accept` lists them."""
    return tuple(r for r in task.accept if r.kind == "judged")


def judged_tasks(plan: Plan) -> set[str]:
    return {name for name, task in plan.tasks.items() if rules(task)}


# ---- the judge's job --------------------------------------------------------------------------


def messages(judge: JudgePlan, prompt: str, answer: str, gold: str | None) -> tuple[dict, ...]:
    """What the judge is shown: its rubric, rendered, as one user message."""
    row = {"prompt": prompt, "answer": answer}
    if gold is not None:
        row["gold"] = gold
    return ({"role": "user", "content": render(judge.rubric, row)},)


def job(plan: Plan, judge: JudgePlan, item: Item, answer: str) -> Job:
    """The judge's job for one answer (raises when the rubric cannot be rendered)."""
    return make_job(plan.teachers[judge.teacher], messages(judge, item.prompt, answer, item.gold))


def job_item(item: Item, judge_job: Job, judge: JudgePlan) -> Item:
    """The item a judge job is stored under (`jobs`): the task, row and record of the answer it
    judges, `judged(NAME)` where a teacher job names its strategy."""
    return replace(item, job=judge_job, strategy=f"judged({judge.name})")


# ---- reading the score -------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    value: float | None  # None: no score could be read
    reasoning: str | None
    problem: str | None = None  # why there is no score


def read_score(judge: JudgePlan, text: str | None, finish_reason: str | None = None) -> Score:
    """The judge's score and reasoning, as its `read` says; a score outside the scale is none.

    >>> j = JudgePlan(name="h", teacher="t", rubric="{{ answer }}", threshold=7, origin="x:1")
    >>> read_score(j, "Clear and right.\\n**Score:** 8/10")
    Score(value=8.0, reasoning='Clear and right.', problem=None)
    >>> read_score(j.model_copy(update={"read": "json"}), 'Here: {"score": 3, "reasoning": "vague"}')
    Score(value=3.0, reasoning='vague', problem=None)
    >>> read_score(j, "Score: 11").problem
    'score 11 is outside 1..10'
    """
    text = text or ""
    value, reasoning = _from_json(text) if judge.read == "json" else _from_score_line(text)
    if value is None:
        wanted = "JSON object with a numeric 'score'" if judge.read == "json" else "'Score: N' line"
        cut = " (it was cut off at max_tokens)" if finish_reason == "length" else ""
        return Score(None, reasoning, f"no score: the judge's answer has no {wanted}{cut}")
    if not judge.min <= value <= judge.max:
        return Score(None, reasoning, f"score {value:g} is outside {judge.min:g}..{judge.max:g}")
    return Score(value, reasoning)


def _from_score_line(text: str) -> tuple[float | None, str | None]:
    found = list(_SCORE_LINE.finditer(text))
    if not found:
        return None, text.strip() or None
    last = found[-1]
    rest = (text[: last.start()] + text[last.end() :]).strip()
    return float(last.group(1)), rest or None


def _from_json(text: str) -> tuple[float | None, str | None]:
    decoder = json.JSONDecoder()
    chosen = None
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict) and "score" in value:
            chosen = value  # the last one wins, as the last score line does
    if chosen is None:
        return None, text.strip() or None
    score = chosen["score"]
    if isinstance(score, str):
        try:
            score = float(score.strip())
        except ValueError:
            score = None
    reasoning = next((chosen[k] for k in _REASONING_KEYS if isinstance(chosen.get(k), str)), None)
    if isinstance(score, bool) or not isinstance(score, int | float) or score != score:
        return None, reasoning
    return float(score), reasoning


def verdict_of(judge: JudgePlan, score: Score) -> Verdict:
    """Kept when the score is at least the threshold; the reason names the judge and the score."""
    if score.value is None:
        return Verdict(False, f"judged({judge.name}): {score.problem}")
    if score.value < judge.threshold:
        return Verdict(False, f"judged({judge.name}): score {score.value:g} below {judge.threshold:g}")
    return Verdict(True, "accepted")


_BELOW = re.compile(r"^(judged\([^)]*\)): score \S+ (below \S+)$")


def grouped_reason(reason: str) -> str:
    """A rejection's reason with a judge's score left out, for counting rejections by cause:
    `judged(h): score 4 below 7` and `judged(h): score 5 below 7` are both `judged(h): below 7`.

    >>> grouped_reason("judged(h): score 4 below 7"), grouped_reason("contains")
    ('judged(h): below 7', 'contains')
    """
    return _BELOW.sub(r"\1: \2", reason)


# ---- an answer's judgements ------------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """One judge's verdict on one answer: a row of `judgements`."""

    item_id: str
    judge: str
    job_id: str
    task: str
    row_index: int
    score: float | None
    reasoning: str | None
    accepted: bool
    reason: str

    def stored(self) -> tuple:
        return (self.judge, self.job_id, self.score, self.reasoning, self.accepted, self.reason)


@dataclass(frozen=True)
class Answers:
    """The judges' stored answers: job id -> (text, finish reason), and the ids that failed."""

    texts: dict[str, tuple[str, str | None]]
    failed: frozenset[str] = frozenset()


NONE = Answers({})


def jobs_for(plan: Plan, item: Item, answer: str) -> list[tuple[JudgePlan, Job | None, str | None]]:
    """(judge, its job, or None and why the rubric could not be rendered) per judge of the task."""
    out = []
    for rule in rules(plan.tasks[item.task]):
        try:
            out.append((rule.judge, job(plan, rule.judge, item, answer), None))
        except Exception as error:  # noqa: BLE001 - a rubric that fails on this answer: its verdict says why
            out.append((rule.judge, None, failure_reason(error)))
    return out


def judged(
    plan: Plan, item: Item, answer: str | None, verdict: Verdict, answers: Answers
) -> tuple[Verdict, list[Judgement]]:
    """The answer's verdict once its judges are heard: `verdict` (its other checks) when that
    is a rejection or the task has no judge; else the first judge that rejects it, or accepted.
    Every judge of the task is asked (in one round), so each has its judgement."""
    if not verdict.accepted or not rules(plan.tasks[item.task]):
        return verdict, []
    final, found = verdict, []
    for judge, judge_job, problem in jobs_for(plan, item, answer or ""):
        if judge_job is None:
            this = Verdict(False, f"judged({judge.name}): the rubric failed: {problem}")
        elif judge_job.id in answers.texts:
            text, finish = answers.texts[judge_job.id]
            score = read_score(judge, text, finish)
            this = verdict_of(judge, score)
            found.append(
                Judgement(
                    item.record_id,
                    judge.name,
                    judge_job.id,
                    item.task,
                    item.row_index,
                    score.value,
                    score.reasoning,
                    this.accepted,
                    this.reason,
                )
            )
        else:
            this = Verdict(False, f"judged({judge.name}): {FAILED if judge_job.id in answers.failed else AWAITING}")
        if final.accepted and not this.accepted:
            final = this
    return final, found


def wanted(
    plan: Plan, items: Iterable[Item], answered: dict, verdict: Callable
) -> dict[str, tuple[Job, Item, JudgePlan]]:
    """judge job id -> (job, the item whose answer it judges, the judge) for every answered item
    of a judged task whose answer passes its other checks (`verdict(item, text, finish)`).
    A job two items share (the same answer to the same prompt) is listed once, by the first."""
    out: dict[str, tuple[Job, Item, JudgePlan]] = {}
    judged_names = judged_tasks(plan)
    for item in items:
        if item.task not in judged_names or item.job.id not in answered:
            continue
        text, finish = answered[item.job.id]
        if not verdict(item, text, finish).accepted:
            continue
        for judge, judge_job, _ in jobs_for(plan, item, text):
            if judge_job is not None and judge_job.id not in out:
                out[judge_job.id] = (judge_job, item, judge)
    return out


def stored(store, ids: list[str]) -> Answers:
    """The stored answers of these judge jobs, and which of the others failed for good."""
    from orcac.runtime.store import builds  # duckdb's: the dry runs that never open a database skip it

    if not ids:
        return NONE
    texts = builds.stored_answers(store, ids)
    rest = [i for i in ids if i not in texts]
    failed = builds.failed_ids(store, rest) if rest else set()
    return Answers(texts, frozenset(failed))


def stored_judgements(store, item_ids: list[str]) -> dict[str, set[tuple]]:
    """item id -> its stored judgements (as `Judgement.stored` tuples)."""
    from orcac.runtime.store import builds

    return builds.stored_judgements(store, item_ids)


# ---- the dry run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeEstimate:
    task: str
    judge: str
    answers: int  # answers it would judge: those in and passing, plus those still to come
    cached: int  # judged by an earlier build
    calls: int
    prompt_tokens: int
    cost: float | None


def estimate(
    plan: Plan, items: list[Item], answered: dict, verdict: Callable, lookup: Callable[[list[str]], set[str]]
) -> list[JudgeEstimate]:
    """Per task and judge, what judging would call: exact for answers already in (only those
    that pass the other checks), and, for answers still to come, one call each, as if every
    one passed (an upper bound), its prompt the rubric with an answer of the teacher's
    max_tokens. `lookup(ids)`: the ids already answered."""
    names = judged_tasks(plan)
    mine = [i for i in items if i.task in names]
    if not mine:
        return []
    known = wanted(plan, mine, answered, verdict)
    done = lookup(list(known))
    rows: dict[tuple[str, str], list] = {}
    seen: set[str] = set()
    for item in mine:
        task = plan.tasks[item.task]
        if item.job.id in answered:
            text, finish = answered[item.job.id]
            if not verdict(item, text, finish).accepted:
                continue
            jobs = [(judge, j) for judge, j, _ in jobs_for(plan, item, text) if j is not None]
        else:
            jobs = [(rule.judge, None) for rule in rules(task)]
        for judge, judge_job in jobs:
            row = rows.setdefault((item.task, judge.name), [0, 0, 0, 0])
            row[0] += 1
            if judge_job is not None and (judge_job.id in done or judge_job.id in seen):
                row[1] += 1
                continue
            if judge_job is not None:
                seen.add(judge_job.id)
                tokens = costs.prompt_tokens(judge_job.messages)
            else:  # an answer still to come: as long as the teacher may make it
                tokens = costs.prompt_tokens(unanswered_messages(judge, item)) + plan.teachers[task.teacher].max_tokens
            row[2] += 1
            row[3] += tokens
    out = []
    judges = {r.judge.name: r.judge for t in plan.tasks.values() for r in rules(t)}
    for (task, name), (n, cached, calls, tokens) in sorted(rows.items()):
        teacher = plan.teachers[judges[name].teacher]
        price = costs.calls_cost(teacher, tokens, calls)
        out.append(JudgeEstimate(task, name, n, cached, calls, tokens, price))
    return out


def unanswered_messages(judge: JudgePlan, item) -> tuple[dict, ...]:
    """The judge's message for an answer not made yet (an empty one), for counting its prompt;
    `item`: anything with the task's `prompt` and `gold`."""
    try:
        return messages(judge, item.prompt, "", item.gold)
    except Exception:  # noqa: BLE001 - counted by the rubric's own length
        return ({"role": "user", "content": judge.rubric},)


def print_estimate(rows: list[JudgeEstimate], print_=print) -> None:
    """The judges' section of `orcac build --dry-run`, in the build's column layout."""
    if not rows:
        return
    print_("judges, after the answers (one call per answer that passes the task's other checks; answers")
    print_("not in yet are counted as if every one passed):")
    print_(
        f"{'task':<24} {'judge':<14} {'answers':>7} {'cached':>7} {'calls':>7} {'prompt tokens':>14} {'est. cost':>10}"
    )
    for r in rows:
        print_(
            f"{r.task:<24} {r.judge:<14} {r.answers:>7} {r.cached:>7} {r.calls:>7} {r.prompt_tokens:>14,} "
            f"{costs.shown(r.cost):>10}"
        )
    total = costs.shown_total(r.cost for r in rows)
    print_(
        f"{'judge total':<24} {'':<14} {sum(r.answers for r in rows):>7} {sum(r.cached for r in rows):>7} "
        f"{sum(r.calls for r in rows):>7} {sum(r.prompt_tokens for r in rows):>14,} {total:>10}"
    )
