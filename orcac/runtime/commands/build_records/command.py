"""`orcac build`: teacher jobs for every train example, checked, erased, stored in DuckDB.

    plan ─▶ examples (per task) ─▶ items (example × strategy ─▶ content-addressed job)
         ─▶ answered before? reuse the stored response : run it (teachers.run_jobs)
            (before: this database, then the machine's answer cache, then the same request
             under another max_tokens that stopped short of this one: orcac.runtime.commands.build_records.reuse)
         ─▶ check (orcac.runtime.answers.checks) ─▶ record (system = erase message) ─▶ erasure audit
    a judged task's answers that pass: ─▶ judge jobs, once the teachers are done (judges.py)
         ─▶ verdicts settled from the stored answers ─▶ records
    a task with `answer`: its rows' own answers ─▶ check ─▶ record, with no job (orcac.runtime.answers.given)

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
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orcac import costs
from orcac.errors import printable
from orcac.runtime.answers import given, judges
from orcac.runtime.answers.checks import Verdict, kept_samples
from orcac.runtime.answers.erasure import RECORD_FIELDS, audit, raise_on_leaks
from orcac.runtime.answers.items import Item, Work, plan_work
from orcac.runtime.commands.build_records import reuse
from orcac.runtime.commands.build_records.progress import BuildProgress, Tally, summary_table
from orcac.runtime.commands.build_records.tables import (
    FLUSH_SECONDS,
    Rows,
    _write_examples,
    flush_every,
    record_fields,
    verdict_for,
)
from orcac.runtime.context import RunContext
from orcac.runtime.store import builds
from orcac.runtime.store.answer_cache import AnswerCache
from orcac.runtime.store.database import Flusher, Store
from orcac.runtime.store.queries import echoed_records
from orcac.runtime.teachers.jobs import Job, Outcome
from orcac.specs.plan import Plan
from orcac.specs.plan_file import plan_sha256

if TYPE_CHECKING:
    import pyarrow as pa  # imported where tables are built: a re-run that writes nothing skips it


# ---- the recipe ------------------------------------------------------------------------------


def command(context: RunContext, args) -> int:
    """`orcac build`, stage by stage (BuildRecipe)."""
    build = BuildRecipe(context)
    build.setup(args)
    try:
        build.probe()
        build.plan_items()
        if build.dry_run:
            return build.estimate()
        build.run_jobs()
        build.summary()
        return 0
    finally:
        build.cleanup()


class BuildRecipe:
    """`orcac build`, read top to bottom (torchtune's recipe shape):

        setup       the command's settings (the answer cache and the database open once, with
                    the first stage that reads them: a build stopped before, on a bad
                    source, leaves no file behind)
        probe       best_of tasks get their strategy (--dry-run: its calls are counted)
        plan_items  examples x strategy -> content-addressed jobs (orcac.runtime.answers.items)
        estimate    --dry-run: what the build would ask and cost; nothing is called or written
        run_jobs    stored answers reused, the rest asked; each checked and recorded (run_build)
        summary     the table, warnings, and the erasure audit's verdict
        cleanup     the database and the cache closed, whatever happened

    One database connection and one answer cache serve the probe and the main run; the
    probe's decision reaches the main run as the plan it returns, never through the file.
    """

    def __init__(self, context: RunContext):
        self.context = context
        self.plan = context.plan  # the probe's decisions replace it
        self.opened = False
        self.cache: AnswerCache | None = None
        self.store: Store | None = None
        self.work: Work | None = None
        self.result: BuildResult | None = None

    def setup(self, args) -> None:
        self.dry_run = bool(getattr(args, "dry_run", False))
        self.reprobe = bool(getattr(args, "reprobe", False))
        self.limit = getattr(args, "limit", None)
        self.progress = not getattr(args, "no_progress", False)
        self.use_cache = not getattr(args, "no_cache", False)

    def _open(self) -> Store | None:
        """The answer cache and the build's database, opened once, by the first stage that
        needs them. A dry run writes nothing: it reads the cache and the database only where
        they exist (the store is then None)."""
        if not self.opened:
            self.opened = True
            self.cache = AnswerCache.open(enabled=self.use_cache, create=not self.dry_run)
            db = self.context.db
            if not self.dry_run:
                self.store = Store.open(db, spec=self.plan.spec)
            elif db.exists():
                self.store = Store.open(db, read_only=True, spec=self.plan.spec)
        return self.store

    def probe(self) -> None:
        from orcac.runtime.commands.build_records import probe

        if not probe.needed(self.plan):
            return
        store = self._open()
        if self.dry_run:
            probe.dry_run_phase(self.context, store, self.cache, reprobe=self.reprobe)
            return
        self.context = probe.run_phase(self.context, store, self.cache, reprobe=self.reprobe)
        self.plan = self.context.plan

    def plan_items(self) -> None:
        self.work = plan_work(self.plan, self.context.root, limit=self.limit, estimate=self.dry_run)
        for note in self.work.skipped:
            print(f"note: {printable(note)}", file=sys.stderr)
        for problem in self.work.problems:
            print(f"warning: {printable(problem)}", file=sys.stderr)

    def estimate(self) -> int:
        store = self._open()
        return _dry_run(self.plan, store, self.work, self.cache)

    def run_jobs(self) -> None:
        store = self._open()
        self.result = run_build(
            self.plan, self.context.root, store, self.work, progress=self.progress, cache=self.cache
        )

    def summary(self) -> None:
        from rich.console import Console

        result = self.result
        echoed = echoed_records(self.store)
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)  # a log file: room for the whole table (yield with its interval included)
        console.print(summary_table(result.tallies, result.elapsed))
        if echoed:  # kept because nothing checked for it: the student would learn to point at nothing
            counts = ", ".join(f"{task} {n}" for task, n in echoed.items())
            print(
                f"warning: {sum(echoed.values())} record(s) point at a prompt the student never sees ({counts}): "
                "add no_echo to the task's accept, or to its strategy's expect",
                file=sys.stderr,
            )
        failed = sum(sum(t.failed.values()) for t in result.tallies.values())
        if failed:
            print(f"{failed} job(s) failed after retries: run the same command to retry them", file=sys.stderr)
        raise_on_leaks(result.leaks)

    def cleanup(self) -> None:
        try:
            if self.store is not None:
                self.store.close()
        finally:
            if self.cache is not None:
                self.cache.close()


# ---- the dry run -----------------------------------------------------------------------------


def _dry_run(plan: Plan, store: Store | None, work: Work, cache: AnswerCache | None) -> int:
    """The dry run over what this database (None: none yet) and the answer cache hold
    (neither is written)."""
    jobs = {i.job.id: i.job for i in work.items}
    passes = lambda item, text, finish: verdict_for(plan, item, text, finish)  # noqa: E731

    def cached(ids: list[str]) -> set[str]:
        return set(cache.get(ids)) if cache is not None else set()

    if store is None:
        found = reuse.find(plan, None, jobs, (), cache)
        answered = {job_id: (a.text, a.finish_reason) for job_id, (a, _, _) in found.answers.items()}
        judged = judges.estimate(plan, work.items, answered, passes, cached)
        return dry_run(plan, work, answered, judged, set(), found.notes())
    answered = builds.stored_answers(store, list(jobs))
    found = reuse.find(plan, store, jobs, answered, cache)
    answered |= {job_id: (a.text, a.finish_reason) for job_id, (a, _, _) in found.answers.items()}
    judged = judges.estimate(
        plan, work.items, answered, passes, lambda ids: set(judges.stored(store, ids).texts) | cached(ids)
    )
    settled = set(builds.stored_checks(store, [g.record_id for g in work.given]))
    return dry_run(plan, work, answered, judged, settled, found.notes())


def unique_jobs(items: list[Item], answered: dict) -> Iterator[Job]:
    seen: set[str] = set()
    for item in items:
        if item.job.id not in answered and item.job.id not in seen:
            seen.add(item.job.id)
            yield item.job


def dry_run(
    plan: Plan,
    work: Work,
    answered: dict,
    judged: list[judges.JudgeEstimate] = (),
    settled: set[str] = frozenset(),
    notes: list[str] = (),
) -> int:
    """Per task: answers wanted (rows x samples), answered before, calls to make, answers from
    the source (no call), the calls' prompt tokens (orcac.costs.prompt_tokens) and cost
    (litellm's price map, as the plan's estimate prices them); then the judges' calls
    (`judged`, orcac.runtime.answers.judges.estimate), counted and priced on their own (the
    plan's task estimate adds them in, so its cost per call is not the teacher's). `settled`:
    record ids of answers from sources whose verdict is stored already. `notes`: where cached
    answers came from besides this database (orcac.runtime.commands.build_records.reuse.Found.notes)."""
    by_task: dict[str, list[Item]] = defaultdict(list)
    for item in work.items:
        by_task[item.task].append(item)
    rows = []
    for name, items in sorted(by_task.items()):
        pending = {i.job.id: i for i in items if i.job.id not in answered}
        tokens = sum(costs.prompt_tokens(i.job.messages) for i in pending.values())
        cost = costs.calls_cost(plan.teachers[plan.tasks[name].teacher], tokens, len(pending))
        rows.append((name, len(items), len(items) - len(pending), len(pending), 0, tokens, cost))
    from_source: dict[str, list[str]] = defaultdict(list)
    for g in work.given:
        from_source[g.task].append(g.record_id)
    for name, ids in from_source.items():
        rows.append((name, len(ids), sum(i in settled for i in ids), 0, len(ids), 0, 0.0))
    rows.sort(key=lambda row: row[0])
    task_costs = [row[6] for row in rows]
    known = sum(c for c in task_costs if c is not None)
    total = (
        "unknown"
        if task_costs and all(c is None for c in task_costs)
        else f"${known:,.4f}" + ("+?" if None in task_costs else "")
    )
    rows.append(("total", *(sum(row[k] for row in rows) for k in range(1, 6)), total))
    print(
        f"{'task':<24} {'answers':>8} {'cached':>7} {'calls':>7} {'from source':>11} {'prompt tokens':>14} {'est. cost':>10}"
    )
    for name, examples, cached, calls, given_rows, tokens, cost in rows:
        shown = cost if isinstance(cost, str) else costs.shown(cost)
        print(f"{name:<24} {examples:>8} {cached:>7} {calls:>7} {given_rows:>11} {tokens:>14,} {shown:>10}")
    for note in notes:
        print(f"cached: {note}")
    judges.print_estimate(list(judged))
    from orcac.runtime.teachers.batch import dry_run_notes

    for note in dry_run_notes(plan.teachers, unique_jobs(work.items, answered)):
        print(note)
    called = {plan.tasks[name].teacher for name, _, _, calls, *_ in rows if calls and name in plan.tasks}
    called |= {
        rule.judge.teacher
        for r in judged
        if r.calls
        for rule in judges.rules(plan.tasks[r.task])
        if rule.judge.name == r.judge
    }
    for warning in missing_keys(plan, called):
        print(f"warning: {warning}", file=sys.stderr)
    print("dry run: nothing was called")
    return 0


def missing_keys(plan: Plan, teachers: set[str]) -> list[str]:
    """The teachers a build would call whose API key variable (`api_key = env("NAME")`) is
    unset: the build itself would stop at its first call to each."""
    return [
        f"teacher {name}: the environment variable {t.api_key_env} is not set; "
        f"`orcac build` stops at its first call to {name} until it holds the provider's API key"
        for name, t in sorted(plan.teachers.items())
        if name in teachers and t.api_key_env and not os.environ.get(t.api_key_env)
    ]


# ---- the main run: reuse, ask, check, record --------------------------------------------------


@dataclass
class BuildResult:
    tallies: dict[tuple[str, str], Tally]
    elapsed: float
    calls: int
    leaks: list


def run_build(
    plan: Plan, root: Path, store: Store, work: Work, *, progress: bool = True, cache: AnswerCache | None = None
) -> BuildResult:
    """Reuse stored answers, run the rest, write everything; returns counts and the audit's leaks.
    With the machine's answer `cache`, jobs it answers are copied in, not asked, and every new
    answer goes into it too (orcac.runtime.commands.build_records.reuse)."""
    started = time.monotonic()
    run_id = builds.start_run(store, plan_sha256(plan))
    # a tally per (task, strategy): what the summary table shows
    tallies: dict[tuple[str, str], Tally] = defaultdict(Tally)
    by_job: dict[str, list[Item]] = defaultdict(list)
    rows_of: dict[tuple[str, str], set[int]] = defaultdict(set)
    for item in work.items:
        by_job[item.job.id].append(item)
        tallies[(item.task, item.strategy)].items += 1
        rows_of[(item.task, item.strategy)].add(item.row_index)
    for key, found in rows_of.items():
        tallies[key].rows = len(found)

    # answered before (this database, the answer cache, another max_tokens) or by the source:
    # checked and recorded now, with no call
    reuse.bring_in(plan, store, {job_id: items[0] for job_id, items in by_job.items()}, cache)
    answered = _settle_cached(plan, store, work, tallies)
    _settle_given(plan, store, work, tallies)
    # the rest: marked pending, then asked, each answer checked as it comes and stored in batches
    pending = list(unique_jobs(work.items, answered))
    if pending:
        rows = Rows(plan)
        for job in pending:
            rows.job(by_job[job.id][0], "pending", 0, None)
        store.write(rows.tables())

    stored = len(by_job) - len(pending)
    if stored:
        print(
            f"build: resuming: {stored:,} of {len(by_job):,} answers stored, asking {len(pending):,}"
            if pending
            else f"build: all {stored:,} answers stored, asking none",
            file=sys.stderr,
            flush=True,
        )
    display = BuildProgress(
        len(pending),
        live=None if progress else False,
        stored=stored,
        passed=sum(t.passed for t in tallies.values()),
        rejected=sum(sum(t.rejected.values()) for t in tallies.values()),
    )
    status = "failed"
    calls = 0
    try:
        if pending:
            calls = _run_pending(plan, root, store, pending, by_job, tallies, display, started, cache)
            _settle_samples(plan, store, work, tallies)
        calls += _run_judges(
            plan, root, store, work, tallies, started, asked=bool(pending), progress=progress, cache=cache
        )
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        builds.end_run(store, run_id, status, calls, sum(t.cost for t in tallies.values()))
    # the erasure audit over every stored record: its leaks fail the build after the summary
    leaks = audit(plan, store) + given.audit(plan, store, work.given)
    return BuildResult(dict(tallies), time.monotonic() - started, calls, leaks)


def _settle_cached(plan: Plan, store: Store, work: Work, tallies: dict[tuple[str, str], Tally]) -> dict:
    """Before the calls: the examples, and verdicts for jobs answered by earlier builds, counted."""
    _write_examples(plan, store, work.examples)
    answered, verdicts = _settle(plan, store, work, work.items)
    for item in work.items:
        if item.job.id in answered:
            verdict = verdicts[item.record_id]
            tally = tallies[(item.task, item.strategy)]
            tally.cached += 1
            tally.count(verdict.accepted, verdict.reason)
    return answered


def _settle_given(plan: Plan, store: Store, work: Work, tallies: dict[tuple[str, str], Tally]) -> None:
    """Answers from sources: checked and erased, no call; only what differs from the store is
    written, in one transaction, so a re-run writes nothing and a kill loses nothing."""
    if not work.given:
        return
    checks, records = _stored_verdicts(store, [g.record_id for g in work.given])
    instructions = given.Instructions(plan)
    changed = Rows(plan)
    unaccepted: list[str] = []
    for g in work.given:
        verdict = given.verdict(plan, g, instructions)
        record = given.record(plan, g) if verdict.accepted else None
        tally = tallies[(g.task, given.SHOWN)]
        tally.items += 1
        tally.rows += 1
        if checks.get(g.record_id) == (verdict.accepted, verdict.reason) and records.get(g.record_id) == record:
            tally.cached += 1
        else:
            changed.given(g, verdict, record)
            if record is None and g.record_id in records:
                unaccepted.append(g.record_id)
        tally.count(verdict.accepted, verdict.reason)
    store.write(changed.tables(), drop={"records": ("record_id", unaccepted)})


def _run_pending(
    plan, root, store, pending, by_job, tallies, display, started, cache: AnswerCache | None = None
) -> int:
    from orcac.runtime.teachers.batch import run_online_and_batch

    def convert(batch: list[tuple[Outcome, list]]) -> dict[str, pa.Table]:
        rows = Rows(plan)
        for outcome, verdicts in batch:
            items = by_job[outcome.job_id]
            rows.job(items[0], outcome.status, outcome.attempts, outcome.error, outcome.reason)
            if outcome.status == "ok":
                rows.response(outcome, items[0].job)
                for item, verdict in zip(items, verdicts):
                    rows.verdict(item, verdict.accepted, verdict.reason, outcome.text)
        return rows.tables()

    # Into the machine's answer cache once in this database: a kill between the two writes
    # leaves an answer only here, and the next build puts it in (reuse.backfill).
    flusher = Flusher(
        store,
        convert,
        every=flush_every(plan),
        seconds=FLUSH_SECONDS,
        on_flush=reuse.keeper(plan, cache, lambda entry: (entry[0], by_job[entry[0].job_id][0].job)),
    )
    count = 0

    def on_outcome(outcome: Outcome) -> None:
        nonlocal count
        count += 1
        items = by_job[outcome.job_id]
        reason = display.answered(outcome)
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
            checked = verdict_for(plan, item, outcome.text, outcome.finish_reason)
            display.verdict(checked.accepted)  # passed the checks: kept or not is decided after the calls
            # a judged task's answer that passes waits for its judges (_run_judges): no record yet
            verdict, _ = judges.judged(plan, item, outcome.text, checked, judges.NONE)
            verdicts.append(verdict)
            tally.count(verdict.accepted, verdict.reason)
        flusher.add((outcome, verdicts))

    display.start()
    try:
        asyncio.run(run_online_and_batch(plan.teachers, pending, on_outcome, store, root=root, on_batch=display.batch))
    finally:
        display.stop()
        flusher.close()
    return count


def _settle_samples(plan: Plan, store: Store, work: Work, tallies: dict[tuple[str, str], Tally]) -> None:
    """After the calls: each sampled row's choice among all its answers (the calls judged each
    answer alone as it came in, in whatever order the teacher finished them)."""
    sampled = [i for i in work.items if plan.tasks[i.task].sampling.samples > 1]
    if not sampled:
        return
    _settle(plan, store, work, sampled, on_change=_recount(tallies))


def _run_judges(
    plan: Plan,
    root: Path,
    store: Store,
    work: Work,
    tallies: dict[tuple[str, str], Tally],
    started: float,
    *,
    asked: bool,
    progress: bool = True,
    cache: AnswerCache | None = None,
) -> int:
    """After the teachers: every answer of a judged task that passes its other checks and has
    no stored judgement is sent to its judges (one job per judge and answer, stored like any
    job), then those tasks' verdicts are settled from what is stored. Returns the calls made;
    none, and nothing written, when every judge answer is stored and no answer is new (`asked`)."""
    names = judges.judged_tasks(plan)
    items = [i for i in work.items if i.task in names]
    if not items:
        return 0
    answered = builds.stored_answers(store, list({i.job.id for i in items}))
    wanted = judges.wanted(plan, items, answered, lambda i, t, f: verdict_for(plan, i, t, f))
    done = judges.stored(store, list(wanted)).texts
    missing = {job_id: pair for job_id, pair in wanted.items() if job_id not in done}
    if missing:  # from the machine's answer cache, or asked under another max_tokens
        copied = reuse.bring_in(
            plan,
            store,
            {job_id: judges.job_item(item, job, judge) for job_id, (job, item, judge) in missing.items()},
            cache,
        )
        missing = {job_id: pair for job_id, pair in missing.items() if job_id not in copied}
        asked = asked or bool(copied)
    calls = 0
    if missing:
        rows = Rows(plan)
        for job, item, judge in missing.values():
            rows.job(judges.job_item(item, job, judge), "pending", 0, None)
        store.write(rows.tables())
        calls = _ask_judges(plan, root, store, missing, tallies, started, progress, cache)
    if missing or asked:
        _settle(plan, store, work, items, on_change=_recount(tallies))
    return calls


def _ask_judges(
    plan, root, store, missing: dict, tallies, started: float, progress: bool, cache: AnswerCache | None = None
) -> int:
    """The judge jobs, through the same calls (limits, retries, batches) as the teachers'."""
    from orcac.runtime.teachers.batch import run_online_and_batch

    def convert(batch: list[Outcome]) -> dict[str, pa.Table]:
        rows = Rows(plan)
        for outcome in batch:
            job, item, judge = missing[outcome.job_id]
            rows.job(judges.job_item(item, job, judge), outcome.status, outcome.attempts, outcome.error, outcome.reason)
            if outcome.status == "ok":
                rows.response(outcome, job)
        return rows.tables()

    display = BuildProgress(len(missing), live=None if progress else False, label="judges")
    flusher = Flusher(
        store,
        convert,
        every=flush_every(plan),
        seconds=FLUSH_SECONDS,
        on_flush=reuse.keeper(plan, cache, lambda o: (o, missing[o.job_id][0])),
    )

    def on_outcome(outcome: Outcome) -> None:
        item = missing[outcome.job_id][1]
        reason = display.answered(outcome)
        tally = tallies[(item.task, item.strategy)]
        tally.judge_calls += 1
        tally.last_s = time.monotonic() - started
        tally.prompt_tokens += outcome.prompt_tokens
        tally.completion_tokens += outcome.completion_tokens
        tally.cost += outcome.cost
        if reason:
            tally.failed[f"judge {reason}"] += 1
        else:
            judge = missing[outcome.job_id][2]
            display.verdict(
                judges.verdict_of(judge, judges.read_score(judge, outcome.text, outcome.finish_reason)).accepted
            )
        flusher.add(outcome)

    display.start()
    try:
        jobs = [job for job, _, _ in missing.values()]
        asyncio.run(run_online_and_batch(plan.teachers, jobs, on_outcome, store, root=root, on_batch=display.batch))
    finally:
        display.stop()
        flusher.close()
    return len(missing)


# ---- the stages' shared parts: verdicts and records settled from stored answers ----------------


def _settle(plan: Plan, store: Store, work: Work, items: list[Item], on_change=None) -> tuple[dict, dict]:
    """Verdicts and records for `items` from their stored answers; returns those answers and
    the verdicts (by record id).

    Recomputed from the stored text (a changed rule or erase message takes effect), but only
    rows that differ are written, so a re-run of a finished build writes next to nothing.
    `on_change(item, before, after)` hears of each verdict that differs from the stored one.
    """
    answered = builds.stored_answers(store, list({i.job.id for i in items}))
    cached = [i for i in items if i.job.id in answered]
    judged = judges.stored(
        store, list(judges.wanted(plan, cached, answered, lambda i, t, f: verdict_for(plan, i, t, f)))
    )
    checks, records = _stored_verdicts(store, [i.record_id for i in cached])
    verdicts, judgements = final_verdicts(plan, cached, answered, judged)
    changed = Rows(plan)
    rejudged = _changed_judgements(plan, store, cached, judgements, changed)
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
        keep={
            "records": ("record_id", work.keep),
            "checks": ("item_id", work.keep),
            "judgements": ("item_id", work.keep),
        },
        drop={"records": ("record_id", unaccepted), "judgements": ("item_id", rejudged)},
    )
    return answered, verdicts


def final_verdicts(
    plan: Plan, items: list[Item], answered: dict, judged: judges.Answers = judges.NONE
) -> tuple[dict[str, Verdict], list[judges.Judgement]]:
    """record_id -> verdict for every answered item: the task's checks on its own answer, its
    judges' (from their stored answers, `judged`) for one that passes them, then, for a task
    with several samples, rejection sampling's choice among each row's answers. With the
    judgements made."""
    verdicts: dict[str, Verdict] = {}
    judgements: list[judges.Judgement] = []
    rows: dict[tuple, list[Item]] = defaultdict(list)
    for item in items:
        if item.job.id not in answered:
            continue
        text, finish = answered[item.job.id]
        verdict, found = judges.judged(plan, item, text, verdict_for(plan, item, text, finish), judged)
        verdicts[item.record_id] = verdict
        judgements += found
        if plan.tasks[item.task].sampling.samples > 1:
            rows[(item.task, item.strategy, item.row_index)].append(item)
    for (task, _, _), samples in rows.items():
        by_sample = {item.sample: item for item in samples}
        answers = [(i.sample, answered[i.job.id][0], verdicts[i.record_id].accepted) for i in samples]
        for sample, why in kept_samples(answers, plan.tasks[task].sampling.keep).items():
            verdicts[by_sample[sample].record_id] = Verdict(False, why)
    return verdicts, judgements


def _stored_verdicts(store: Store, ids: list[str]) -> tuple[dict, dict]:
    """The stored (accepted, reason) by item id, and the stored record's fields by record id."""
    return builds.stored_checks(store, ids), builds.stored_records(store, ids, RECORD_FIELDS)


def _changed_judgements(plan: Plan, store: Store, items: list[Item], judgements: list, rows: Rows) -> list[str]:
    """Adds to `rows` the judgements that differ from the stored ones; returns the item ids whose
    stored judgements are replaced (dropped first: a judge the task no longer has goes too)."""
    judged_names = judges.judged_tasks(plan)
    ids = [i.record_id for i in items if i.task in judged_names]
    before = judges.stored_judgements(store, ids) if ids else {}
    now: dict[str, list] = defaultdict(list)
    for j in judgements:
        now[j.item_id].append(j)
    redo = [i for i in sorted(set(before) | set(now)) if before.get(i, set()) != {j.stored() for j in now.get(i, ())}]
    for item_id in redo:
        for j in now.get(item_id, ()):
            rows.judgement(j)
    return redo


def _recount(tallies: dict[tuple[str, str], Tally]):
    """A `_settle` callback that moves a changed verdict from its old count to its new one."""

    def recount(item: Item, before, after: Verdict) -> None:
        if before is None:
            return
        tally = tallies[(item.task, item.strategy)]
        tally.count(*before, times=-1)
        tally.count(after.accepted, after.reason)

    return recount
