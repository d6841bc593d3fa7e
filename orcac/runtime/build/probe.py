"""The probe phase: a task's strategy chosen by measured performance, before its main run.

    result = run_probes(plan, root, store, plan_path=path, reprobe=False)
    plan = result.plan          # probed tasks now have strategy = the winner

A task whose plan has `probe` (the spec said `strategy = best_of(a, b, by = accept, probe = N)`)
and no valid decision gets its probe rows (`orcac.sampling`: drawn from the non-held-out rows)
answered by its teacher under every candidate strategy. Each answer is scored with
`checks.check_answer` against the gold, exactly as the build accepts answers; the candidate with
the highest pass rate wins, a tie goes to the one that used fewer tokens, then to the first
name, so the choice never depends on timing.

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
from fractions import Fraction
from pathlib import Path

from orcac.errors import OrcacError, printable
from orcac.runtime.build.checks import check_answer
from orcac.specs.plan import CandidateScore, Decision, Plan, ProbePlan, TaskPlan

DECISIONS_TABLE = """
    task VARCHAR, key VARCHAR, strategy VARCHAR, chosen BOOLEAN, score DOUBLE, passed BIGINT,
    total BIGINT, prompt_tokens BIGINT, completion_tokens BIGINT, cost DOUBLE,
    PRIMARY KEY (task, key, strategy)"""


# ---- scoring and choosing (pure) ---------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One probe row answered under one candidate, with its verdict."""

    strategy: str
    row_index: int
    accepted: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


def score(strategy: str, answers: Iterable[Answer]) -> CandidateScore:
    """A candidate's pass rate and spend over its probe answers.

    >>> a = [Answer("s", 0, True, 10, 5), Answer("s", 1, False, 10, 7)]
    >>> score("s", a).score, score("s", a).passed, score("s", a).total
    (0.5, 1, 2)
    """
    mine = [a for a in answers if a.strategy == strategy]
    passed = sum(a.accepted for a in mine)
    return CandidateScore(
        strategy=strategy,
        score=passed / len(mine) if mine else 0.0,
        passed=passed,
        total=len(mine),
        prompt_tokens=sum(a.prompt_tokens for a in mine),
        completion_tokens=sum(a.completion_tokens for a in mine),
        cost=round(sum(a.cost for a in mine), 10),  # float sums differ in the last bits by order
    )


def _rank(s: CandidateScore) -> tuple:
    # Fraction, not the float score: 1/3 and 2/6 are a tie, whatever rounding says.
    rate = Fraction(s.passed, s.total) if s.total else Fraction(0)
    return (-rate, s.prompt_tokens + s.completion_tokens, s.strategy)


def choose(scores: Iterable[CandidateScore]) -> str:
    """The winner: highest pass rate, then fewest tokens (prompt + completion), then name.

    >>> def s(name, passed, tokens): return CandidateScore(strategy=name, score=0, passed=passed,
    ...     total=4, prompt_tokens=tokens, completion_tokens=0, cost=0)
    >>> choose([s("direct", 2, 10), s("step", 3, 90)])
    'step'
    >>> choose([s("verbose", 3, 90), s("terse", 3, 40)])
    'terse'
    >>> choose([s("b", 3, 40), s("a", 3, 40)])
    'a'
    """
    scores = list(scores)
    if not scores:
        raise ValueError("no candidates to choose from")
    return min(scores, key=_rank).strategy


def decide(probe: ProbePlan, answers: Iterable[Answer]) -> Decision:
    """The Decision for `probe.key`: every candidate scored, in declared order, and the winner."""
    answers = list(answers)
    scores = tuple(score(name, answers) for name in probe.candidates)
    return Decision(chosen=choose(scores), key=probe.key, scores=scores)


def is_decided(task: TaskPlan, *, reprobe: bool = False) -> bool:
    """Whether the task's recorded decision may be reused (always True for a task without a probe)."""
    probe = task.probe
    if probe is None:
        return True
    decision = probe.decision
    return (
        not reprobe
        and decision is not None
        and decision.key == probe.key
        and decision.chosen in probe.candidates
    )


def pending(plan: Plan, *, reprobe: bool = False, tasks: Iterable[str] | None = None) -> list[str]:
    """The tasks that need a probe before their main run, in name order."""
    names = sorted(plan.tasks if tasks is None else tasks)
    return [name for name in names if not is_decided(plan.tasks[name], reprobe=reprobe)]


def apply_decision(plan: Plan, task_name: str, decision: Decision) -> Plan:
    """The plan with the decision recorded on the task and its strategy and system resolved."""
    task = plan.tasks[task_name]
    if task.probe is None:
        raise ValueError(f"task {task_name} has no probe")
    strategy = plan.strategies[decision.chosen]
    probe = task.probe.model_copy(update={"decision": decision})
    task = task.model_copy(update={"probe": probe, "strategy": strategy.name, "system": strategy.system})
    return plan.model_copy(update={"tasks": {**plan.tasks, task_name: task}})


def resolve_decided(plan: Plan) -> Plan:
    """Tasks whose valid decision is recorded but whose strategy is unset get it filled in.

    The compiler may lower a decided best_of with strategy None; the main run needs it set.
    """
    for name, task in sorted(plan.tasks.items()):
        if task.probe is not None and task.strategy is None and is_decided(task):
            plan = apply_decision(plan, name, task.probe.decision)
    return plan


# ---- the jobs ----------------------------------------------------------------------------


def probe_items(plan: Plan, task_name: str, examples: Iterable) -> list:
    """One build `Item` per (probe row, candidate): rows in ranking order, candidates as declared.

    Made by the build's own `items_for_task`, so a probe job is, byte for byte, the job the
    main run makes for that row under that strategy (its sample 0, when the task samples).
    """
    from orcac.runtime.build.command import items_for_task

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


def ensure_table(store) -> None:
    store.execute(f"CREATE TABLE IF NOT EXISTS decisions ({DECISIONS_TABLE})")


def write_decision(store, task: str, decision: Decision) -> None:
    """Upsert one row per candidate; rows for the task's earlier keys stay, as history."""
    import pyarrow as pa

    ensure_table(store)
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


_ANSWER_COLUMNS = ("job_id", "text", "finish_reason", "prompt_tokens", "completion_tokens", "cost")


def _recorded(store, task: str, key: str) -> bool:
    return bool(store.rows("SELECT 1 FROM decisions WHERE task = ? AND key = ? LIMIT 1", [task, key]))


def _answered(store, ids: list[str]) -> dict[str, dict]:
    """Stored answers by job id, with the token counts and cost a probe score needs."""
    from orcac.runtime.store.database import in_list

    if not ids:
        return {}
    found = store.rows(
        f"SELECT {', '.join(_ANSWER_COLUMNS)} FROM responses WHERE {in_list('job_id')}", [sorted(set(ids))]
    )
    return {row[0]: dict(zip(_ANSWER_COLUMNS, row)) for row in found}


def _log(message: str) -> None:
    print(printable(message), file=sys.stderr)


def _call(plan: Plan, root: Path, store, items: dict, jobs: list, done: dict[str, dict]) -> dict[str, list[str]]:
    """Run `jobs`, storing each outcome as the build does (jobs + responses, batched
    transactions); fills `done` with the answers; returns failure reasons by task."""
    from orcac.runtime.build.command import FLUSH_SECONDS, Rows, flush_every
    from orcac.runtime.store.database import Flusher
    from orcac.runtime.teachers.calls import run_jobs

    def convert(batch: list) -> dict:
        rows = Rows(plan)
        for outcome in batch:
            rows.job(items[outcome.job_id], outcome.status, outcome.attempts, outcome.error)
            if outcome.status == "ok":
                rows.response(outcome)
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

    flusher = Flusher(store, convert, every=flush_every(plan), seconds=FLUSH_SECONDS)
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
) -> ProbeResult:
    """Probe every task that needs it, record the decisions, return the plan to build with.

    `examples(task) -> list[Example]` defaults to `examples.materialize(plan, root, task)`
    (render problems left for the main run to report).
    `plan_path`: the plan file to rewrite with the new decisions (None: DuckDB only).
    Raises OrcacError when a probe job fails for good, after recording the other tasks'
    decisions: a task is never decided on part of its sample, and a re-run retries only the
    failed jobs.
    """
    names = sorted(plan.tasks if tasks is None else tasks)
    todo = pending(plan, reprobe=reprobe, tasks=names)
    result = ProbeResult(plan=resolve_decided(plan))
    ensure_table(store)
    for name in names:
        task = result.plan.tasks[name]
        if task.probe is not None and name not in todo:
            result.decisions[name] = task.probe.decision
            if not _recorded(store, name, task.probe.decision.key):  # a fresh --db gets it too
                write_decision(store, name, task.probe.decision)
    if not todo:
        return result

    load = examples or (lambda name: _quiet(plan, root, name))
    items: dict[str, object] = {}
    by_task: dict[str, list] = {}
    for name in todo:
        task = plan.tasks[name]
        if task.gold is None:
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

    done = _answered(store, list(items))
    result.cached = len(done)
    missing = [item.job for job_id, item in items.items() if job_id not in done]
    failures: dict[str, list[str]] = {}
    if missing:
        log(f"probe: {len(missing)} teacher call(s) to choose a strategy for {', '.join(todo)}"
            + (f" ({len(done)} answered by an earlier build)" if done else ""))
        failures = _call(plan, root, store, items, missing, done)
        result.calls = len(missing)

    for name in todo:
        if name in failures:
            continue
        task = plan.tasks[name]
        answers = []
        for item in by_task[name]:
            row = done[item.job.id]
            verdict = check_answer(
                row["text"], row["finish_reason"], item.gold, task.accept, allow_truncated=task.allow_truncated,
                form=plan.strategies[item.strategy].adherence,
            )
            answers.append(
                Answer(
                    item.strategy,
                    item.row_index,
                    verdict.accepted,
                    int(row["prompt_tokens"] or 0),
                    int(row["completion_tokens"] or 0),
                    float(row["cost"] or 0.0),
                )
            )
        decision = decide(task.probe, answers)
        write_decision(store, name, decision)
        result.plan = apply_decision(result.plan, name, decision)
        result.decisions[name] = decision
        result.probed.append(name)
    if plan_path is not None and result.probed:
        result.plan = record(result.plan, Path(plan_path), root)
    if failures:
        name, reasons = sorted(failures.items())[0]
        raise OrcacError(
            f"task {name}: {len(reasons)} probe call(s) failed ({reasons[0]}); no strategy was chosen for "
            f"{', '.join(sorted(failures))}",
            hint="run the build again: answered probe calls are kept, only the failed ones are retried",
        )
    return result


def record(plan: Plan, plan_path: Path, root: Path) -> Plan:
    """Write the decisions into the plan file; returns the plan as written.

    The file must read as `orcac plan` would write it now, or `orcac plan --check` would call
    it stale: so after writing the decisions, the spec is recompiled (the compiler carries a
    decision whose key matches) and that plan is written instead, unless the recompile
    changes more than the estimate (the spec was edited since the plan: the plan the build
    was given wins).
    """
    from orcac import compiler

    compiler.write_plan(plan, plan_path)
    spec = root / plan.spec
    if not spec.is_file():
        return plan
    try:
        fresh = compiler.compile_spec(spec, plan_path)
    except OrcacError:
        return plan
    if fresh.model_copy(update={"estimate": plan.estimate}) != plan:
        return plan
    compiler.write_plan(fresh, plan_path)
    return fresh


# ---- what the user sees ------------------------------------------------------------------


def decision_table(decisions: dict[str, Decision], probed: Iterable[str] = ()):
    """A rich table: task, candidate, score, passed/total, tokens, cost, chosen."""
    from rich.table import Table

    probed = set(probed)
    table = Table(title="strategy decisions", title_justify="left")
    for column, justify in (
        ("task", "left"),
        ("candidate", "left"),
        ("score", "right"),
        ("passed/total", "right"),
        ("tokens", "right"),
        ("cost", "right"),
        ("chosen", "center"),
    ):
        table.add_column(column, justify=justify)
    for name in sorted(decisions):
        decision = decisions[name]
        label = name if name in probed else f"{name} (recorded)"
        for number, s in enumerate(decision.scores):
            table.add_row(
                label if number == 0 else "",
                s.strategy,
                f"{s.score:.1%}",
                f"{s.passed}/{s.total}",
                f"{s.prompt_tokens + s.completion_tokens:,}",
                f"${s.cost:.4f}",
                "yes" if s.strategy == decision.chosen else "",
                end_section=number == len(decision.scores) - 1,
            )
    return table


@dataclass(frozen=True)
class ProbeEstimate:
    candidates: int
    rows: int  # probe rows
    jobs: int  # rows x candidates
    cached: int  # answered by an earlier build
    calls: int  # jobs - cached
    prompt_tokens: int  # characters / 4 over the messages of the calls, as the build estimates
    cost: float | None  # at litellm's prices (completions at max_tokens); None where unknown


def estimate(
    plan: Plan,
    root: Path,
    *,
    answered: Callable[[list[str]], Iterable[str]] = lambda ids: (),
    reprobe: bool = False,
    examples: Callable[[str], list] | None = None,
) -> dict[str, ProbeEstimate]:
    """What the probe phase would call, per pending task, for `--dry-run`. Calls nothing.

    `answered(job_ids)` gives the ids already stored (from the build's database, if any).
    """
    from orcac import costs as prices
    from orcac.runtime.build import examples as examples_module

    load = examples or (lambda name: examples_module.materialize(plan, root, name))
    out = {}
    for name in pending(plan, reprobe=reprobe):
        task = plan.tasks[name]
        items = probe_items(plan, name, load(name))
        cached = set(answered([i.job.id for i in items]))
        calls = {i.job.id: i for i in items if i.job.id not in cached}
        tokens = sum(sum(len(m["content"]) for m in i.job.messages) // 4 for i in calls.values())
        teacher = plan.teachers[task.teacher]
        out[name] = ProbeEstimate(
            candidates=len(task.probe.candidates),
            rows=len(items) // max(1, len(task.probe.candidates)),
            jobs=len(items),
            cached=len(items) - len(calls),
            calls=len(calls),
            prompt_tokens=tokens,
            cost=prices.cost(teacher.model, tokens, len(calls), teacher.max_tokens),
        )
    return out


def print_estimate(estimates: dict[str, ProbeEstimate], print_=print) -> None:
    """The probe section of `orcac build --dry-run`, in the build's column layout."""
    if not estimates:
        return
    print_("strategy probes, before the main run (the winner's answers become training rows there;")
    print_("a task still to be decided is left out of the main run's counts below):")
    print_(f"{'task':<24} {'rows x cand.':>12} {'cached':>7} {'calls':>7} {'prompt tokens':>14} {'est. cost':>10}")
    calls = tokens = 0
    cost = 0.0
    unknown = False
    for name, e in sorted(estimates.items()):
        shown = "unknown" if e.cost is None else f"${e.cost:,.4f}"
        unknown = unknown or e.cost is None
        print_(f"{name:<24} {f'{e.rows} x {e.candidates}':>12} {e.cached:>7} {e.calls:>7} {e.prompt_tokens:>14,} {shown:>10}")
        calls += e.calls
        tokens += e.prompt_tokens
        cost += e.cost or 0.0
    total = "unknown" if unknown and not cost else f"${cost:,.4f}" + (" + unknown" if unknown else "")
    print_(f"{'probe total':<24} {'':>12} {'':>7} {calls:>7} {tokens:>14,} {total:>10}")


# ---- the build's seam --------------------------------------------------------------------


def plan_file_for(spec: str | Path) -> Path:
    """The plan file `orcac build SPEC` reads: the spec's `.plan.yaml`, or SPEC itself."""
    from orcac.compiler import plan_path_for

    spec = Path(spec)
    return plan_path_for(spec) if spec.suffix == ".orca" else spec


def phase(plan: Plan, root: Path, db: Path, args) -> Plan:
    """`orcac build`'s probe phase: the plan the main run builds with.

    With `--dry-run`, prints what the probes would call and returns the plan unchanged.
    Otherwise probes what needs it (`--reprobe`: every best_of task), writes decisions to
    the database and the plan file, and prints the decision table.
    """
    if not any(t.probe is not None for t in plan.tasks.values()):
        return plan
    reprobe = bool(getattr(args, "reprobe", False))
    from orcac.runtime.store.database import Store

    if getattr(args, "dry_run", False):
        if Path(db).exists():
            with Store.open(db, read_only=True, spec=plan.spec) as store:
                found = estimate(plan, root, answered=lambda ids: _answered(store, ids), reprobe=reprobe)
        else:
            found = estimate(plan, root, reprobe=reprobe)
        print_estimate(found)
        return plan
    from rich.console import Console

    with Store.open(db, spec=plan.spec) as store:
        result = run_probes(plan, root, store, plan_path=plan_file_for(args.spec), reprobe=reprobe)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file: room for the whole table
    console.print(decision_table(result.decisions, result.probed))
    return result.plan


def _quiet(plan: Plan, root: Path, name: str) -> list:
    from orcac.runtime.build.examples import materialize

    return materialize(plan, root, name, report=lambda problem: None)  # the main run reports them
