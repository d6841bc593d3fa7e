"""The probe phase: a task's strategy chosen by measured performance, before its main run.

    result = run_probes(plan, root, store, plan_path=path, reprobe=False)
    plan = result.plan          # probed tasks now have strategy = the winner

A task whose plan has `probe` (the spec said `strategy = best_of(a, b, by = accept, probe = N)`)
and no valid decision gets its probe rows (`orcac.sampling`: drawn from the non-held-out rows)
answered by its teacher under every candidate strategy. Each answer is scored with
`checks.check_answer` against the gold, exactly as the build accepts answers; the candidate with
the highest pass rate wins, a tie goes to the one that used fewer tokens, then to the first
name, so the choice never depends on timing. The build says when candidates tied and which
rule chose (`choice.tie_message`; the decision records it as `tie_break`), and warns when the
probe's answers are too few to tell the winner from another candidate (`choice.noise`).

A decision stays valid while `decision.key == probe.key`. The compiler's key covers the task,
its data, the candidates and the teacher, so a change to any of them probes again; `--reprobe`
forces it. The decision goes to DuckDB (`decisions`, one row per candidate) and back into the
plan file, so a reviewer sees in the diff which strategy was chosen and why.

Probe requests are ordinary content-addressed teacher jobs with the very messages the main run
sends for the same row (system = the candidate's text, user = the rendered prompt). A killed
probe resumes without paying twice, and the winner's probe answers are found done by the main
run, which turns those that pass the checks into records. The losers' answers stay in
`responses` only: no record is ever made from them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orcac.errors import OrcacError, printable
from orcac.runtime.answers import judges
from orcac.runtime.answers.checks import check_answer
from orcac.runtime.commands.build_records import reuse
from orcac.runtime.commands.build_records.probe.choice import Answer, decide, noise, tie_message
from orcac.runtime.commands.build_records.probe.decisions import apply_decision, pending, record, resolve_decided
from orcac.runtime.context import Recompile
from orcac.runtime.store.answer_cache import AnswerCache
from orcac.runtime.store.probes import decision_recorded, probe_answers, write_decision
from orcac.specs.plan import Decision, Plan

# ---- the jobs ----------------------------------------------------------------------------


def probe_items(plan: Plan, task_name: str, examples: Iterable) -> list:
    """One build `Item` per (probe row, candidate): rows in ranking order, candidates as declared.

    Made by the build's own `items_for_task`, so a probe job is, byte for byte, the job the
    main run makes for that row under that strategy (its sample 0, when the task samples).
    """
    from orcac.runtime.answers.items import items_for_task

    task = plan.tasks[task_name]
    rows = [e for e in examples if e.probe and e.split == "train"]
    per_candidate = [items_for_task(plan, task, rows, name, samples=1) for name in task.probe.candidates]
    return [item for row in zip(*per_candidate) for item in row]


# ---- running -----------------------------------------------------------------------------


@dataclass
class ProbeResult:
    plan: Plan
    decisions: dict[str, Decision] = field(default_factory=dict)  # task -> decision (new or reused)
    probed: list[str] = field(default_factory=list)  # tasks probed in this build
    calls: int = 0  # teacher calls made by the probe in this build
    cached: int = 0  # probe jobs answered by an earlier build


def _log(message: str) -> None:
    print(printable(message), file=sys.stderr)


def _call(
    plan: Plan, root: Path, store, items: dict, jobs: list, done: dict[str, dict], cache: AnswerCache | None = None
) -> dict[str, list[str]]:
    """Run `jobs`, storing each outcome as the build does (jobs + responses, batched
    transactions); fills `done` with the answers; returns failure reasons by task."""
    from orcac.runtime.commands.build_records.tables import FLUSH_SECONDS, Rows, flush_every
    from orcac.runtime.store.database import Flusher
    from orcac.runtime.teachers.calls import run_jobs

    def convert(batch: list) -> dict:
        rows = Rows(plan)
        for outcome in batch:
            rows.job(items[outcome.job_id], outcome.status, outcome.attempts, outcome.error, outcome.reason)
            if outcome.status == "ok":
                rows.response(outcome, items[outcome.job_id].job)
        return rows.tables()

    failures: dict[str, list[str]] = {}

    def on_outcome(outcome) -> None:
        flusher.add(outcome)
        if outcome.status == "ok":
            done[outcome.job_id] = {
                "text": outcome.text,
                "finish_reason": outcome.finish_reason,
                "prompt_tokens": outcome.prompt_tokens,
                "completion_tokens": outcome.completion_tokens,
                "cost": outcome.cost,
            }
        else:
            failures.setdefault(items[outcome.job_id].task, []).append(outcome.error or "failed")

    flusher = Flusher(
        store,
        convert,
        every=flush_every(plan),
        seconds=FLUSH_SECONDS,
        on_flush=reuse.keeper(plan, cache, lambda o: (o, items[o.job_id].job)),
    )
    try:
        asyncio.run(run_jobs(plan.teachers, jobs, on_outcome, root=root))
    finally:
        flusher.close()
    return failures


def run_probes(
    plan: Plan,
    root: Path,
    store,
    *,
    plan_path: Path | None = None,
    reprobe: bool = False,
    tasks: Iterable[str] | None = None,
    examples: Callable[[str], list] | None = None,
    log: Callable[[str], None] = _log,
    recompile: Recompile | None = None,
    cache: AnswerCache | None = None,
) -> ProbeResult:
    """Probe every task that needs it, record the decisions, return the plan to build with.

    `examples(task) -> list[Example]` defaults to `examples.materialize(plan, root, task)`
    (render problems left for the main run to report).
    `plan_path`: the plan file to rewrite with the new decisions (None: DuckDB only), through
    `recompile` when there is one (`decisions.record`)
    Raises OrcacError when a probe job fails for good, after recording the other tasks'
    decisions: a task is never decided on part of its sample, and a re-run retries only the
    failed jobs. `cache`: the machine's answer cache (orcac.runtime.store.answer_cache), read
    before asking and given every answer, as the main run does (orcac.runtime.commands.build_records.reuse).
    """
    names = sorted(plan.tasks if tasks is None else tasks)
    todo = pending(plan, reprobe=reprobe, tasks=names)
    result = ProbeResult(plan=resolve_decided(plan))
    for name in names:
        task = result.plan.tasks[name]
        if task.probe is not None and name not in todo:
            result.decisions[name] = task.probe.decision
            if not decision_recorded(store, name, task.probe.decision.key):  # a fresh --db gets it too
                write_decision(store, name, task.probe.decision)
    if not todo:
        return result

    load = examples or (lambda name: _quiet(plan, root, name))
    items: dict[str, object] = {}
    by_task: dict[str, list] = {}
    for name in todo:
        task = plan.tasks[name]
        if task.gold is None and task.probe.metric != "judge":
            raise OrcacError(
                f"task {name}: best_of() scores candidates against the gold answer, and the task has none",
                hint="give the task a gold template, or choose its strategy by hand",
            )
        found = probe_items(plan, name, load(name))
        if not found:
            raise OrcacError(
                f"task {name}: no probe rows to score its candidates on",
                hint="the probe sample is drawn from non-held-out rows: raise `limit` or lower `holdout`",
            )
        by_task[name] = found
        for item in found:
            items.setdefault(item.job.id, item)

    reuse.bring_in(plan, store, items, cache)
    done = probe_answers(store, list(items))
    result.cached = len(done)
    missing = [item.job for job_id, item in items.items() if job_id not in done]
    failures: dict[str, list[str]] = {}
    if missing:
        log(
            f"probe: {len(missing)} teacher call(s) to choose a strategy for {', '.join(todo)}"
            + (f" ({len(done)} answered by an earlier build)" if done else "")
        )
        failures = _call(plan, root, store, items, missing, done, cache)
        result.calls = len(missing)
    judged = _judge(plan, root, store, [i for n in todo if n not in failures for i in by_task[n]], done, failures, log)
    result.calls += judged.calls

    for name in todo:
        if name in failures:
            continue
        task = plan.tasks[name]
        answers = []
        for item in by_task[name]:
            row = done[item.job.id]
            verdict, found = _verdict(plan, item, row, judged.answers)
            first = found[0].score if found else None  # by = judge: the task's one judge
            lowest = judges.rules(task)[0].judge.min if judges.rules(task) else 0.0
            answers.append(
                Answer(
                    item.strategy,
                    item.row_index,
                    verdict.accepted,
                    int(row["prompt_tokens"] or 0),
                    int(row["completion_tokens"] or 0),
                    float(row["cost"] or 0.0),
                    judged=lowest if first is None else first,
                )
            )
        decision = decide(task.probe, answers)
        tie = tie_message(name, decision, task.probe.metric)
        if tie is not None:
            log(f"probe: {tie}")
        for line in noise(decision, task.probe.metric):
            log(f"warning: task {name}: {line}")
        write_decision(store, name, decision)
        result.plan = apply_decision(result.plan, name, decision)
        result.decisions[name] = decision
        result.probed.append(name)
    if plan_path is not None and result.probed:
        result.plan = record(result.plan, Path(plan_path), root, recompile)
    if failures:
        name, reasons = sorted(failures.items())[0]
        raise OrcacError(
            f"task {name}: {len(reasons)} probe call(s) failed ({reasons[0]}); no strategy was chosen for "
            f"{', '.join(sorted(failures))}",
            hint="run the build again: answered probe calls are kept, only the failed ones are retried",
        )
    return result


# ---- judges: a probe answer of a judged task is judged as the main run would judge it ----------


def _checked(plan: Plan, item, text: str | None, finish: str | None):
    """A probe answer's verdict by its task's checks, as the build gives it (judges apart)."""
    task = plan.tasks[item.task]
    return check_answer(
        text,
        finish,
        item.gold,
        task.accept,
        allow_truncated=task.allow_truncated,
        form=plan.strategies[item.strategy].adherence,
    )


def _verdict(plan: Plan, item, row: dict, answers):
    """A probe answer's verdict, the task's judges included, and their judgements."""
    verdict = _checked(plan, item, row["text"], row["finish_reason"])
    return judges.judged(plan, item, row["text"], verdict, answers)


@dataclass
class _Judged:
    answers: object  # judges.Answers
    calls: int = 0


def _judge(plan: Plan, root: Path, store, items: list, done: dict, failures: dict, log) -> _Judged:
    """The judge jobs of the probe answers that pass their tasks' other checks: the jobs the
    main run makes for the winner's answers, so those are never asked again. A failed one
    fails its task's probe (`failures`), as a failed teacher call does."""
    answered = {i.job.id: (done[i.job.id]["text"], done[i.job.id]["finish_reason"]) for i in items}
    wanted = judges.wanted(plan, items, answered, lambda i, t, f: _checked(plan, i, t, f))
    stored = judges.stored(store, list(wanted))
    missing = {job_id: triple for job_id, triple in wanted.items() if job_id not in stored.texts}
    if not missing:
        return _Judged(stored)
    log(f"probe: {len(missing)} judge call(s) for the probe answers")
    found: dict[str, dict] = {}
    failed = _call(
        plan,
        root,
        store,
        {k: judges.job_item(i, j, judge) for k, (j, i, judge) in missing.items()},
        [j for j, _, _ in missing.values()],
        found,
    )
    for task, reasons in failed.items():
        failures.setdefault(task, []).extend(reasons)
    texts = {**stored.texts, **{k: (v["text"], v["finish_reason"]) for k, v in found.items()}}
    return _Judged(judges.Answers(texts), len(missing))


def _quiet(plan: Plan, root: Path, name: str) -> list:
    from orcac.runtime.answers.examples import materialize

    return materialize(plan, root, name, report=lambda problem: None)  # the main run reports them
