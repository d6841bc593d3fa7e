"""`orcac build`: teacher jobs for every train example, checked, erased, stored in DuckDB.

    plan ─▶ examples (per task) ─▶ items (example × strategy ─▶ content-addressed job)
         ─▶ answered before? reuse the stored response : run it (teachers.run_jobs)
         ─▶ check (orcac.runtime.build.checks) ─▶ record (system = erase message) ─▶ erasure audit

Resuming is the same command: a job whose answer is stored is never sent again, so a build
killed at any moment (Ctrl-C, kill -9) redoes only what it had not flushed, and a finished
build re-run makes zero calls. Jobs that failed for good (after retries) are sent again by
the next build. Outcomes are written in batches, each in one transaction (response, verdict
and record together), as soon as about as many answers as are in flight have arrived
(`flush_every`) or FLUSH_SECONDS have passed: a kill re-pays what was in flight and about as
much again, whatever the teacher's speed (benchmarks/bench_kill.py, BENCHMARKS.md).

Checks and records are recomputed from stored responses on every build (cheap, no calls), so a
changed check rule or erase message takes effect without paying for answers again; records
that the current plan no longer produces (another strategy, a removed task) are deleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import platform
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orcac.errors import OrcacError, printable
from orcac.runtime.build.checks import Verdict, check_answer, kept_samples
from orcac.runtime.build.erasure import RECORD_FIELDS, audit, erased, raise_on_leaks, record_id, teacher_messages
from orcac.runtime.build.examples import Example, RenderProblem, materialize
from orcac.runtime.build.progress import BuildProgress, Tally, summary_table
from orcac.runtime.store.database import Flusher, Store, default_path, in_list
from orcac.runtime.teachers.calls import Job, Outcome, make_job
from orcac.specs.plan import Plan, TaskPlan

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


# ---- loading the plan ---------------------------------------------------------------------


def load(spec: str) -> tuple[Plan, Path, str]:
    """(plan, root, the plan's spec name) for a .orca spec (compiled, as `orcac plan` does) or a .plan.yaml."""
    from orcac.compiler import load_plan

    path = Path(spec)
    if not path.is_file():
        raise OrcacError(f"{spec}: no such file")
    loaded = load_plan(path)
    return loaded.plan, Path(loaded.root), loaded.plan.spec


def db_path(args, root: Path, spec: str) -> Path:
    return Path(args.db) if getattr(args, "db", None) else default_path(root, spec)


# ---- items: one example answered under one strategy -----------------------------------------


@dataclass(frozen=True)
class Item:
    task: str
    strategy: str
    row_index: int
    prompt: str
    gold: str | None
    job: Job
    record_id: str
    sample: int = 0  # which of the task's samples of this row


def sample_options(task: TaskPlan, row_index: int, sample: int) -> dict:
    """Request parameters of one sample's job that are not the teacher's: the task's own
    temperature, and with several samples a seed per job (SEED_RULE), so that each sample is
    its own content-addressed job and a provider that takes a seed answers it the same way."""
    options: dict = {}
    if task.sampling.temperature is not None:
        options["temperature"] = task.sampling.temperature
    if task.sampling.samples > 1:
        digest = hashlib.sha256(f"{task.name}\x1f{row_index}\x1f{sample}\x1f{task.seed}".encode()).digest()
        options["seed"] = int.from_bytes(digest[:4], "big") % 2**31
    return options


def items_for_task(
    plan: Plan, task: TaskPlan, examples: list[Example], strategy: str, *, samples: int | None = None
) -> list[Item]:
    """The teacher jobs for a task's train examples under one strategy, `samples` per example
    (default: the task's; the probe asks sample 0 only). The probe's seam too."""
    system = task.system if strategy == task.strategy and task.system is not None else None
    teacher = plan.teachers[task.teacher]
    items = []
    for example in examples:
        if example.split != "train":
            continue
        messages = teacher_messages(plan, strategy, example.prompt, system)
        for sample in range(task.sampling.samples if samples is None else samples):
            job = make_job(teacher, messages, sample_options(task, example.row_index, sample))
            items.append(
                Item(task.name, strategy, example.row_index, example.prompt, example.gold, job,
                     record_id(task.name, example.row_index, job.id), sample)
            )
    return items


@dataclass
class Work:
    """Everything a build does, computed from the plan before anything is called."""

    examples: dict[str, list[Example]]
    items: list[Item]  # what this build answers (after --limit)
    keep: list[str]  # record ids the plan produces (before --limit): the rest are stale
    skipped: list[str]  # notes for tasks left out
    problems: list[RenderProblem]


def plan_work(plan: Plan, root: Path, *, limit: int | None = None, estimate: bool = False) -> Work:
    """The build's items. A task without a strategy (its probe undecided) is skipped, or with
    `estimate` (a dry run before the probe) counted under its first candidate."""
    examples: dict[str, list[Example]] = {}
    items: list[Item] = []
    keep: list[str] = []
    skipped: list[str] = []
    problems: list[RenderProblem] = []
    for name, task in sorted(plan.tasks.items()):
        strategy = task.strategy
        if strategy is None:
            if not (estimate and task.probe and task.probe.candidates):
                skipped.append(f"task {name}: skipped: its strategy probe has not been decided yet")
                continue
            strategy = task.probe.candidates[0]
            skipped.append(f"task {name}: its probe has not run yet: main-run calls estimated with {strategy}")
        examples[name] = materialize(plan, root, name, report=problems.append)
        task_items = items_for_task(plan, task, examples[name], strategy)
        keep += [i.record_id for i in task_items]
        items += task_items[:limit] if limit is not None else task_items
    return Work(examples, items, keep, skipped, problems)


# ---- rows for the store ------------------------------------------------------------------------


def _write_examples(plan: Plan, store: Store, examples: dict[str, list[Example]]) -> None:
    """Store the examples that are new or changed, and forget rows the plan no longer samples."""
    desired = [
        (e.task, e.row_index, e.split, e.probe, e.prompt, e.gold, plan.tasks[e.task].source.sha256)
        for task in examples.values() for e in task
    ]
    stored = set(store.rows(
        "SELECT task, row_index, split, probe, prompt, gold, source_sha256 FROM examples "
        "WHERE task IN (SELECT unnest(?::VARCHAR[]))", [list(examples)]
    ))
    for task, rows in examples.items():
        store.execute(
            "DELETE FROM examples WHERE task = ? AND row_index NOT IN (SELECT unnest(?::BIGINT[]))",
            [task, [e.row_index for e in rows]],
        )
    new = [row for row in desired if row not in stored]
    if new:
        import pyarrow as pa

        names = ("task", "row_index", "split", "probe", "prompt", "gold", "source_sha256")
        columns = list(zip(*new))
        store.write({"examples": pa.table({
            name: pa.array(column, pa.int64() if name == "row_index" else pa.bool_() if name == "probe" else pa.string())
            for name, column in zip(names, columns)
        })})


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

    def job(self, item: Item, status: str, attempts: int, error: str | None) -> None:
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

    def response(self, o: Outcome) -> None:
        r = self.responses
        r["job_id"].append(o.job_id)
        r["text"].append(o.text)
        r["finish_reason"].append(o.finish_reason)
        r["prompt_tokens"].append(o.prompt_tokens)
        r["completion_tokens"].append(o.completion_tokens)
        r["cost"].append(float(o.cost))
        r["latency_s"].append(float(o.latency_s))
        r["model"].append(o.model)
        r["attempts"].append(o.attempts)

    def verdict(self, item: Item, accepted: bool, reason: str, text: str | None) -> None:
        c = self.checks
        c["item_id"].append(item.record_id)
        c["job_id"].append(item.job.id)
        c["task"].append(item.task)
        c["strategy"].append(item.strategy)
        c["row_index"].append(item.row_index)
        c["accepted"].append(accepted)
        c["reason"].append(reason)
        if accepted:
            r = self.records
            r["record_id"].append(item.record_id)
            r["task"].append(item.task)
            r["split"].append("train")
            r["row_index"].append(item.row_index)
            r["job_id"].append(item.job.id)
            for name, value in zip(RECORD_FIELDS, record_fields(self.plan, item, text)):
                r[name].append(value)

    def tables(self) -> dict[str, pa.Table]:
        if not (self.jobs or self.responses or self.checks or self.records):
            return {}
        import pyarrow as pa

        out = {}
        for name in ("jobs", "responses", "checks", "records"):
            columns = getattr(self, name)
            if columns:
                # A column of only None (no errors yet, say) has no type to infer: make it text.
                out[name] = pa.table({
                    k: pa.array(v, None if any(x is not None for x in v) else pa.string())
                    for k, v in columns.items()
                })
        return out


# ---- the build ---------------------------------------------------------------------------------


def verdict_for(plan: Plan, item: Item, text: str | None, finish_reason: str | None):
    task = plan.tasks[item.task]
    form = plan.strategies[item.strategy].adherence if item.strategy in plan.strategies else ()
    return check_answer(text, finish_reason, item.gold, task.accept, allow_truncated=task.allow_truncated, form=form)


def _plan_sha256(plan: Plan) -> str:
    return hashlib.sha256(plan.model_dump_json().encode()).hexdigest()


def _stored_answers(store: Store, job_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    found = store.rows(f"SELECT job_id, text, finish_reason FROM responses WHERE {in_list('job_id')}", [job_ids])
    return {job_id: (text, finish) for job_id, text, finish in found}


def unique_jobs(items: list[Item], answered: dict) -> Iterator[Job]:
    seen: set[str] = set()
    for item in items:
        if item.job.id not in answered and item.job.id not in seen:
            seen.add(item.job.id)
            yield item.job


def dry_run(plan: Plan, work: Work, answered: dict) -> int:
    """Per task: examples, answered before, calls to make, their prompt tokens (chars / 4) and
    cost (the plan's estimate per call, which came from litellm's price map)."""
    by_task: dict[str, list[Item]] = defaultdict(list)
    for item in work.items:
        by_task[item.task].append(item)
    rows = []
    for name, items in sorted(by_task.items()):
        pending = {i.job.id: i for i in items if i.job.id not in answered}
        tokens = sum(sum(len(m["content"]) for m in i.job.messages) // 4 for i in pending.values())
        estimate = plan.estimate.tasks.get(name)
        per_call = estimate.cost / estimate.calls if estimate and estimate.cost is not None and estimate.calls else None
        cost = None if per_call is None and pending else (per_call or 0.0) * len(pending)
        rows.append((name, len(items), len(items) - len(pending), len(pending), tokens, cost))
    costs = [row[5] for row in rows]
    known = sum(c for c in costs if c is not None)
    total = "unknown" if costs and all(c is None for c in costs) else f"${known:,.4f}" + ("+?" if None in costs else "")
    rows.append(("total", *(sum(row[k] for row in rows) for k in range(1, 5)), total))
    print(f"{'task':<24} {'examples':>8} {'cached':>7} {'calls':>7} {'prompt tokens':>14} {'est. cost':>10}")
    for name, examples, cached, calls, tokens, cost in rows:
        shown = cost if isinstance(cost, str) else "unknown" if cost is None else f"${cost:,.4f}"
        print(f"{name:<24} {examples:>8} {cached:>7} {calls:>7} {tokens:>14,} {shown:>10}")
    from orcac.runtime.teachers.batch import dry_run_notes

    for note in dry_run_notes(plan.teachers, unique_jobs(work.items, answered)):
        print(note)
    print("dry run: nothing was called")
    return 0


def command(args) -> int:
    plan, root, spec = load(args.spec)
    path = db_path(args, root, spec)
    if getattr(args, "cancel", False):
        from orcac.runtime.teachers.batch import cancel_command

        return cancel_command(plan, path)
    # best_of tasks get their strategy from the probe first (--dry-run: its calls are counted).
    from orcac.runtime.build import probe

    plan = probe.phase(plan, root, path, args)
    work = plan_work(plan, root, limit=getattr(args, "limit", None), estimate=getattr(args, "dry_run", False))
    for note in work.skipped:
        print(f"note: {printable(note)}", file=sys.stderr)
    for problem in work.problems:
        print(f"warning: {printable(problem)}", file=sys.stderr)
    if getattr(args, "dry_run", False):
        answered = {}
        if path.exists():
            with Store.open(path, read_only=True, spec=plan.spec) as store:
                answered = _stored_answers(store, [i.job.id for i in work.items])
        return dry_run(plan, work, answered)
    with Store.open(path, spec=plan.spec) as store:
        result = run_build(plan, root, store, work, progress=not getattr(args, "no_progress", False))
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file: room for the whole table
    console.print(summary_table(result.tallies, result.elapsed))
    failed = sum(sum(t.failed.values()) for t in result.tallies.values())
    if failed:
        print(f"{failed} job(s) failed after retries: run the same command to retry them", file=sys.stderr)
    raise_on_leaks(result.leaks)
    return 0


@dataclass
class BuildResult:
    tallies: dict[tuple[str, str], Tally]
    elapsed: float
    calls: int
    leaks: list


def run_build(plan: Plan, root: Path, store: Store, work: Work, *, progress: bool = True) -> BuildResult:
    """Reuse stored answers, run the rest, write everything; returns counts and the audit's leaks."""
    started = time.monotonic()
    run_id = uuid.uuid4().hex
    import duckdb

    from orcac import __version__

    store.execute(
        "INSERT INTO runs (run_id, plan_sha256, orcac_version, python, duckdb_version, started, status) "
        "VALUES (?, ?, ?, ?, ?, now(), 'running')",
        [run_id, _plan_sha256(plan), __version__, platform.python_version(), duckdb.__version__],
    )
    tallies: dict[tuple[str, str], Tally] = defaultdict(Tally)
    by_job: dict[str, list[Item]] = defaultdict(list)
    for item in work.items:
        by_job[item.job.id].append(item)
        tallies[(item.task, item.strategy)].items += 1

    answered = _settle_cached(plan, store, work, tallies)
    pending = list(unique_jobs(work.items, answered))
    if pending:
        rows = Rows(plan)
        for job in pending:
            rows.job(by_job[job.id][0], "pending", 0, None)
        store.write(rows.tables())

    display = BuildProgress(len(pending), live=None if progress else False)
    status = "failed"
    calls = 0
    try:
        if pending:
            calls = _run_pending(plan, root, store, pending, by_job, tallies, display, started)
            _settle_samples(plan, store, work, tallies)
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        store.execute(
            "UPDATE runs SET ended = now(), status = ?, calls = ?, cost = ? WHERE run_id = ?",
            [status, calls, sum(t.cost for t in tallies.values()), run_id],
        )
    leaks = audit(plan, store)
    return BuildResult(dict(tallies), time.monotonic() - started, calls, leaks)


def final_verdicts(plan: Plan, items: list[Item], answered: dict) -> dict[str, Verdict]:
    """record_id -> verdict for every answered item: the task's checks on its own answer, then,
    for a task with several samples, rejection sampling's choice among each row's answers."""
    verdicts: dict[str, Verdict] = {}
    rows: dict[tuple, list[Item]] = defaultdict(list)
    for item in items:
        if item.job.id not in answered:
            continue
        text, finish = answered[item.job.id]
        verdicts[item.record_id] = verdict_for(plan, item, text, finish)
        if plan.tasks[item.task].sampling.samples > 1:
            rows[(item.task, item.strategy, item.row_index)].append(item)
    for (task, _, _), samples in rows.items():
        by_sample = {item.sample: item for item in samples}
        answers = [(i.sample, answered[i.job.id][0], verdicts[i.record_id].accepted) for i in samples]
        for sample, why in kept_samples(answers, plan.tasks[task].sampling.keep).items():
            verdicts[by_sample[sample].record_id] = Verdict(False, why)
    return verdicts


def _settle(plan: Plan, store: Store, work: Work, items: list[Item], on_change=None) -> tuple[dict, dict]:
    """Verdicts and records for `items` from their stored answers; returns those answers and
    the verdicts (by record id).

    Recomputed from the stored text (a changed rule or erase message takes effect), but only
    rows that differ are written, so a re-run of a finished build writes next to nothing.
    `on_change(item, before, after)` hears of each verdict that differs from the stored one.
    """
    answered = _stored_answers(store, list({i.job.id for i in items}))
    cached = [i for i in items if i.job.id in answered]
    ids = [i.record_id for i in cached]
    checks = {r[0]: (r[1], r[2]) for r in store.rows(
        f"SELECT item_id, accepted, reason FROM checks WHERE {in_list('item_id')}", [ids])}
    fields = ", ".join(f'"{f}"' for f in RECORD_FIELDS)
    records = {r[0]: tuple(r[1:]) for r in store.rows(
        f"SELECT record_id, {fields} FROM records WHERE {in_list('record_id')}", [ids])}
    verdicts = final_verdicts(plan, cached, answered)
    changed = Rows(plan)
    unaccepted: list[str] = []
    for item in cached:
        text, _ = answered[item.job.id]
        verdict = verdicts[item.record_id]
        record = record_fields(plan, item, text) if verdict.accepted else None
        before = checks.get(item.record_id)
        if before != (verdict.accepted, verdict.reason) or records.get(item.record_id) != record:
            changed.verdict(item, verdict.accepted, verdict.reason, text)
            if record is None and item.record_id in records:
                unaccepted.append(item.record_id)
            if on_change is not None:
                on_change(item, before, verdict)
    store.write(
        changed.tables(),
        keep={"records": ("record_id", work.keep), "checks": ("item_id", work.keep)},
        drop={"records": ("record_id", unaccepted)},
    )
    return answered, verdicts


def _settle_cached(plan: Plan, store: Store, work: Work, tallies: dict[tuple[str, str], Tally]) -> dict:
    """Before the calls: the examples, and verdicts for jobs answered by earlier builds, counted."""
    _write_examples(plan, store, work.examples)
    answered, verdicts = _settle(plan, store, work, work.items)
    for item in work.items:
        if item.job.id in answered:
            verdict = verdicts[item.record_id]
            tally = tallies[(item.task, item.strategy)]
            tally.cached += 1
            if verdict.accepted:
                tally.accepted += 1
            else:
                tally.rejected[verdict.reason] += 1
    return answered


def _settle_samples(plan: Plan, store: Store, work: Work, tallies: dict[tuple[str, str], Tally]) -> None:
    """After the calls: each sampled row's choice among all its answers (the calls judged each
    answer alone as it came in, in whatever order the teacher finished them)."""
    sampled = [i for i in work.items if plan.tasks[i.task].sampling.samples > 1]
    if not sampled:
        return

    def recount(item: Item, before, after: Verdict) -> None:
        if before is None:
            return
        tally = tallies[(item.task, item.strategy)]
        accepted, reason = before
        if accepted:
            tally.accepted -= 1
        else:
            tally.rejected[reason] -= 1
        if after.accepted:
            tally.accepted += 1
        else:
            tally.rejected[after.reason] += 1

    _settle(plan, store, work, sampled, on_change=recount)


def _run_pending(plan, root, store, pending, by_job, tallies, display, started) -> int:
    from orcac.runtime.teachers.batch import run_online_and_batch

    def convert(batch: list[tuple[Outcome, list]]) -> dict[str, pa.Table]:
        rows = Rows(plan)
        for outcome, verdicts in batch:
            items = by_job[outcome.job_id]
            rows.job(items[0], outcome.status, outcome.attempts, outcome.error)
            if outcome.status == "ok":
                rows.response(outcome)
                for item, verdict in zip(items, verdicts):
                    rows.verdict(item, verdict.accepted, verdict.reason, outcome.text)
        return rows.tables()

    flusher = Flusher(store, convert, every=flush_every(plan), seconds=FLUSH_SECONDS)
    count = 0

    def on_outcome(outcome: Outcome) -> None:
        nonlocal count
        count += 1
        items = by_job[outcome.job_id]
        reason = (outcome.error or "failed").split(":")[0] if outcome.status == "failed" else None
        display.outcome(failed_reason=reason, prompt_tokens=outcome.prompt_tokens,
                        completion_tokens=outcome.completion_tokens, cost=outcome.cost)
        verdicts = []
        now = time.monotonic() - started
        for n, item in enumerate(items):
            tally = tallies[(item.task, item.strategy)]
            tally.calls += 1
            tally.last_s = now
            if n == 0:  # tokens and cost once per call, not once per item sharing it
                tally.prompt_tokens += outcome.prompt_tokens
                tally.completion_tokens += outcome.completion_tokens
                tally.cost += outcome.cost
            if reason:
                tally.failed[reason] += 1
                continue
            verdict = verdict_for(plan, item, outcome.text, outcome.finish_reason)
            verdicts.append(verdict)
            display.verdict(verdict.accepted)
            if verdict.accepted:
                tally.accepted += 1
            else:
                tally.rejected[verdict.reason] += 1
        flusher.add((outcome, verdicts))

    display.start()
    try:
        asyncio.run(run_online_and_batch(plan.teachers, pending, on_outcome, store, root=root, on_batch=display.batch))
    finally:
        display.stop()
        flusher.close()
    return count
