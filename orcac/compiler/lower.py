"""Pass `lower`: Spec + what `check` read -> Plan. Paths become relative to the plan file.

One `lower_*` function per declaration kind. Each copies the keys it holds by the settings
table (orcac/specs/settings.py), which names the plan field of every key; only what is
computed (paths, counts, a probe and its key, the resolved system text) is written here.

Also where strategy decisions are carried: a task with `best_of(...)` gets a ProbePlan
whose `key` hashes everything the choice depends on; if the previous decisions (the plan
already on disk's, or those a build's probe hands in: `compile_spec(decisions=...)`) hold
one with that key, the choice is kept (strategy and system filled in), so a recompile
never forgets a probe's result and never keeps a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from orcac import costs as est
from orcac import sampling
from orcac.compiler.check import Facts
from orcac.sources.read import render_row, sha256_files
from orcac.sources.sql import rebase_query
from orcac.specs import settings
from orcac.specs.diagnostics import Diagnostics
from orcac.specs.plan import (
    SEED_RULE,
    AdherenceRule,
    CheckRule,
    Decision,
    DemonstrationPlan,
    DistillPlan,
    ErasePlan,
    Estimate,
    EvalPlan,
    JudgedRule,
    JudgePlan,
    LoraPlan,
    Plan,
    PortionPlan,
    ProbePlan,
    SamplingPlan,
    SourcePlan,
    SplitCounts,
    StagePlan,
    StrategyPlan,
    StudentPlan,
    TaskEstimate,
    TaskPlan,
    TeacherPlan,
    TrainPlan,
    spec_stem,
)
from orcac.specs.spec import (
    BestOf,
    EraseDecl,
    EvalDecl,
    JudgeDecl,
    Named,
    SourceExpr,
    Spec,
    StageDecl,
    StrategyDecl,
    StudentDecl,
    TaskDecl,
    TeacherDecl,
    TrainDecl,
)
from orcac.templates import failure_reason


def rel(p: Path, plan_dir: Path) -> str:
    return Path(os.path.relpath(Path(p).resolve(), plan_dir.resolve())).as_posix()


def lower(
    spec: Spec,
    facts: Facts,
    *,
    base: Path,
    plan_path: Path,
    files: dict[str, Path],
    decisions: Mapping[str, Decision],
    diags: Diagnostics,
) -> Plan | None:
    """The Plan, one `lower_*` per declaration kind; None when a task's rows gave errors.
    `decisions`: task -> its previous probe decision, kept where its key still holds."""
    plan_dir = plan_path.resolve().parent

    def origin(decl) -> str:
        file, line = decl.origin.rsplit(":", 1)
        p = files.get(file)
        return f"{rel(p, plan_dir) if p is not None else file}:{line}"

    strategies = {s.name: s for s in spec.strategies}
    teachers = {t.name: t for t in spec.teachers}
    judges = {j.name: lower_judge(j, origin(j)) for j in spec.judges}
    tasks: dict[str, TaskPlan] = {}
    estimates: dict[str, TaskEstimate] = {}
    for task in spec.tasks:
        sf = facts.sources.get(task.name)
        if sf is None or sf.data is None:
            continue
        old = decisions.get(task.name)
        assert task.source is not None  # facts exist only for a task with a source
        source = lower_source(task.source, sf, base=base, plan_dir=plan_dir)
        if task.answer is not None:
            tasks[task.name] = lower_task(task, source, None, strategies, old, judges=judges, teachers=teachers)
            estimates[task.name] = _estimate_given(task, tasks[task.name], sf.data, diags)
            continue
        assert task.teacher is not None  # resolve gave every task without `answer` one
        teacher = teachers[task.teacher.name]
        tasks[task.name] = lower_task(task, source, teacher, strategies, old, judges=judges, teachers=teachers)
        estimates[task.name] = _estimate(task, tasks[task.name], sf.data, strategies, teacher, diags, teachers)

    if diags:
        return None

    used_strategies = sorted(
        {
            name
            for t in tasks.values()
            for name in (t.probe.candidates if t.probe else (t.strategy,))
            if name is not None
        }
    )
    erases = {e.name: e for e in spec.erases}
    return Plan(
        language=spec.version,
        spec=rel(Path(spec.path), plan_dir),
        teachers={t.name: lower_teacher(t) for t in spec.teachers},
        students={s.name: lower_student(s) for s in spec.students},
        strategies={name: lower_strategy(strategies[name], origin(strategies[name])) for name in used_strategies},
        erase={
            name: lower_erase(erases[name], origin(erases[name])) for name in sorted({t.erase for t in tasks.values()})
        },
        tasks=tasks,
        train=None
        if spec.train is None
        else lower_train(spec.train, tasks, spec_path=spec.path, base=base, plan_dir=plan_dir),
        eval=EvalPlan() if spec.eval is None else lower_eval(spec.eval),
        estimate=_total(estimates),
    )


def _copy(block: str, decl, into: str = "", **lowered) -> dict:
    """The plan fields of `decl`'s keys, named by the settings table: each value as the
    declaration holds it (a reference as its name), or as `lowered` gives it. `into`: only the
    keys the plan holds in that nested record (a task's `sampling`)."""
    out = dict(lowered)
    for key in settings.keys(block):
        record, _, name = key.plan_name.rpartition(".")
        if record == into and name not in out:
            value = getattr(decl, key.field)
            out[name] = value.name if isinstance(value, Named) else value
    return out


def lower_teacher(t: TeacherDecl) -> TeacherPlan:
    return TeacherPlan(**_copy("teacher", t, name=t.name, params=t.params))


def lower_student(s: StudentDecl) -> StudentPlan:
    return StudentPlan(**_copy("student", s, name=s.name))


def lower_strategy(s: StrategyDecl, origin: str) -> StrategyPlan:
    adherence = tuple(
        AdherenceRule(kind=r.kind, pattern=r.pattern, value=r.value, description=r.description) for r in s.expect
    )
    demonstrations = tuple(DemonstrationPlan(**_copy("demonstration", d)) for d in s.demonstrations)
    return StrategyPlan(
        **_copy("strategy", s, name=s.name, adherence=adherence, demonstrations=demonstrations, origin=origin)
    )


def lower_erase(e: EraseDecl, origin: str) -> ErasePlan:
    return ErasePlan(**_copy("erase", e, name=e.name, origin=origin))


def lower_source(src: SourceExpr, sf, *, base: Path, plan_dir: Path) -> SourcePlan:
    """Paths relative to the plan; what `check` read: sha256, columns, rows."""
    query = rebase_query(src.query, base, plan_dir) if src.query is not None else None
    sha = sf.sha256
    if src.kind == "sql" and query != src.query:
        # The hash covers the query as the plan holds it, which is what the runtime re-hashes
        # (orcac/runtime/answers/source_rows.py): rebased for a plan written elsewhere (-o).
        sha = sha256_files(sf.files, extra=query or "")
    if sf.hub is not None:  # a Hub dataset: pinned by its commit, not a path
        return SourcePlan(
            kind="hf",
            repo=sf.hub.repo,
            config=src.config,
            split=src.split,
            revision=src.revision,
            commit=sf.hub.commit,
            files=sf.hub.names,
            sha256=sha,
            columns=sf.columns,
            rows=sf.rows,
        )
    return SourcePlan(
        kind=src.kind,
        path=rel(base / src.path, plan_dir) if src.path is not None else None,
        split=src.split,
        query=query,
        files=tuple(rel(f, plan_dir) for f in sf.files) if src.kind == "sql" else (),
        network=src.network,
        sha256=sha,
        columns=sf.columns,
        rows=sf.rows,
    )


def lower_judge(j: JudgeDecl, origin: str) -> JudgePlan:
    return JudgePlan(**_copy("judge", j, name=j.name, origin=origin))


def lower_check(c, judges: dict[str, JudgePlan]) -> CheckRule | JudgedRule:
    """One of a task's checks; `judged(NAME)` carries its judge whole, rubric and all, so the
    plan shows what each task's answers are scored by (and a plan without judges has none)."""
    if c.kind == "judged":
        return JudgedRule(kind="judged", judge=judges[c.judge.name])
    return CheckRule(kind=c.kind, pattern=c.pattern, tolerance=c.tolerance)


def lower_task(
    task: TaskDecl,
    source: SourcePlan,
    teacher: TeacherDecl | None,
    strategies: dict,
    old: Decision | None,
    *,
    judges: dict[str, JudgePlan] | None = None,
    teachers: dict[str, TeacherDecl] | None = None,
) -> TaskPlan:
    """The task with its split counts; a `best_of` becomes a probe, its previous decision
    (`old`) carried while the probe's key holds. A task with `answer` has no teacher
    and no strategy (resolve left both out)."""
    # resolve applied the defaults: these are set on every task that reaches lower
    assert task.accept is not None and task.holdout is not None and task.samples is not None
    accept = tuple(lower_check(c, judges or {}) for c in task.accept)
    probe_size = task.strategy.probe if isinstance(task.strategy, BestOf) else 0
    sampled, n_holdout, n_probe, n_train = sampling.split_sizes(
        source.rows, limit=task.limit, holdout=task.holdout, probe=probe_size
    )
    probe = None
    if isinstance(task.strategy, BestOf):
        assert teacher is not None  # a best_of task is answered by a teacher
        probe = lower_probe(task, source, teacher, strategies, accept, old, teachers or {})
        chosen = probe.decision.chosen if probe.decision else None
    else:
        chosen = task.strategy.name if task.strategy is not None else None
    return TaskPlan(
        **_copy(
            "task",
            task,
            name=task.name,
            source=source,
            strategy=chosen,
            system=strategies[chosen].system if chosen else None,
            probe=probe,
            accept=accept,
            sampling=SamplingPlan(
                **_copy("task", task, into="sampling", seeds=SEED_RULE if task.samples > 1 else None)
            ),
            counts=SplitCounts(rows=source.rows, sampled=sampled, holdout=n_holdout, probe=n_probe, train=n_train),
        )
    )


def lower_probe(
    task: TaskDecl,
    source: SourcePlan,
    teacher: TeacherDecl,
    strategies: dict,
    accept,
    old: Decision | None,
    teachers: dict[str, TeacherDecl],
) -> ProbePlan:
    assert isinstance(task.strategy, BestOf)
    names = [c.name for c in task.strategy.candidates]
    key = probe_key(task, source.sha256, [(n, *_shown(strategies[n])) for n in names], teacher, accept, teachers)
    decision = old if old is not None and old.key == key and old.chosen in names else None
    return ProbePlan(**_copy("best_of()", task.strategy, candidates=tuple(names), key=key, decision=decision))


def lower_train(t: TrainDecl, tasks: dict[str, TaskPlan], *, spec_path: str, base: Path, plan_dir: Path) -> TrainPlan:
    output = t.output or f".orca/{spec_stem(spec_path)}/student"
    stages = tuple(lower_stage(s, tasks) for s in t.stages)
    lora = None if t.lora is None else LoraPlan(**_copy("lora", t.lora))
    distill = None if t.distill is None else DistillPlan(**_copy("distill", t.distill))
    return TrainPlan(
        **_copy("train", t, output=rel(base / output, plan_dir), lora=lora, distill=distill, stages=stages)
    )


def lower_stage(s: StageDecl, tasks: dict[str, TaskPlan]) -> StagePlan:
    """A stage, with how many records each task can give it: its training rows x keep (the
    build keeps at most that many), then the stage's portion of them."""
    portions = {
        p.name: PortionPlan(share=p.share, at_most=p.at_most)
        for p in s.tasks
        if p.share is not None or p.at_most is not None
    }
    examples = {}
    for p in s.tasks:
        task = tasks.get(p.name)
        if task is not None:
            examples[p.name] = sampling.portion_size(task.counts.train * task.sampling.keep, p.share, p.at_most)
    return StagePlan(
        **_copy(
            "stage",
            s,
            name=s.name,
            tasks=tuple(p.name for p in s.tasks),
            train_examples=sum(examples.values()),
            examples=examples,
            portions=portions,
        )
    )


def lower_eval(ev: EvalDecl) -> EvalPlan:
    return EvalPlan(**_copy("eval", ev))


def _total(estimates: dict[str, TaskEstimate]) -> Estimate:
    costs = [e.cost for e in estimates.values()]
    return Estimate(
        calls=sum(e.calls for e in estimates.values()),
        probe_calls=sum(e.probe_calls for e in estimates.values()),
        from_source=sum(e.from_source for e in estimates.values()),
        judge_calls=sum(e.judge_calls for e in estimates.values()),
        prompt_tokens=sum(e.prompt_tokens for e in estimates.values()),
        cost=None if any(c is None for c in costs) else round(sum(c for c in costs if c is not None), 6),
        tasks=estimates,
    )


def _shown(strategy) -> tuple:
    """What a strategy shows the teacher: its system text and demonstrations (only when it has
    some, so that keys of strategies without them stay what they were)."""
    demos = [[d.user, d.assistant] for d in strategy.demonstrations]
    return (strategy.system, demos) if demos else (strategy.system,)


def _answers_by(teacher) -> dict:
    """What of a teacher's settings determines its answers, as a probe's key holds it."""
    return {
        **{key.name: getattr(teacher, key.field) for key in settings.answer_keys()},
        # only when one server is named, so that keys of specs without one do not move
        **({"api_base": api_base} if (api_base := settings.answer_api_base(teacher.api_base)) else {}),
        "params": teacher.params,
    }


def _judged_key(accept, teachers: dict) -> dict:
    """A probe key's part for the judges of its checks: each judge's teacher (its rubric and
    scale are in the checks themselves). Empty without judges, so other keys do not move."""
    names = sorted({r.judge.teacher for r in accept if r.kind == "judged"})
    return {"judges": {name: _answers_by(teachers[name]) for name in names}} if names else {}


def _check_key(rule) -> dict:
    """A check as a probe's key holds it: a judge without where it was written (moving the
    declaration changes no score)."""
    return rule.model_dump(mode="json", exclude={"judge": {"origin"}} if rule.kind == "judged" else None)


def probe_key(
    task: TaskDecl, source_sha: str, candidates: list[tuple[str, str]], teacher, accept, teachers=None
) -> str:
    """sha256 over everything a probe's choice depends on (and nothing else)."""
    assert isinstance(task.strategy, BestOf)
    what = {
        "task": task.name,
        "prompt": task.prompt,
        "gold": task.gold,
        "source": source_sha,
        "candidates": candidates,
        "teacher": _answers_by(teacher),
        "probe": task.strategy.probe,
        "seed": task.seed,
        "limit": task.limit,
        "holdout": task.holdout,
        "accept": [_check_key(r) for r in accept],
        **_judged_key(accept, teachers or {}),
        "allow_truncated": task.allow_truncated,
        # only when set, so that keys of specs written before sampling existed do not move
        **({"temperature": task.temperature} if task.temperature is not None else {}),
    }
    blob = json.dumps(what, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _shown_chars(strategy) -> int:
    return len(strategy.system) + sum(len(d.user) + len(d.assistant) for d in strategy.demonstrations)


def _estimate(
    task: TaskDecl, plan: TaskPlan, rows: list[dict], strategies, teacher, diags: Diagnostics, teachers: dict
) -> TaskEstimate:
    assert task.seed is not None and task.holdout is not None and task.prompt is not None  # resolved
    splits = sampling.split_rows(
        len(rows), task=task.name, seed=task.seed, limit=task.limit, holdout=task.holdout, probe=plan.counts.probe
    )
    user_chars: dict[int, int] = {}
    failed = []
    for i in splits.train:
        try:
            user_chars[i] = len(render_row(task.prompt, rows[i]))
        except Exception as error:  # noqa: BLE001 - a row's problem, not the plan's: reported, and left out of the estimate
            failed.append((i, f"task {task.name}: row {i + 1} skipped: {failure_reason(error)}"))
    _warn_rows([message for _, message in sorted(failed)], task.name, diags)
    probe_rows = [i for i in splits.probe if i in user_chars]
    train_rows = [i for i in splits.train if i in user_chars]
    if plan.probe is not None and plan.probe.decision is None:
        lengths = [_shown_chars(strategies[c]) for c in plan.probe.candidates]
        sys_len = max(lengths)
        extra = len(lengths) - 1
        probe_calls = len(probe_rows) * len(lengths)
        # the winner's probe answers are reused as training rows: one call each saved
        probe_tokens = sum(est.tokens(n + user_chars[i]) for i in probe_rows for n in sorted(lengths)[:extra])
    else:
        shown = _shown_chars(strategies[plan.strategy]) if plan.strategy else 0
        sys_len, extra, probe_calls, probe_tokens = shown, 0, 0, 0
    n = plan.sampling.samples  # every sample is a call; the probe asks sample 0 only
    calls = len(train_rows) * n + len(probe_rows) * extra
    prompt_tokens = n * sum(est.tokens(sys_len + user_chars[i]) for i in train_rows) + probe_tokens
    cost = est.cost(teacher.model, prompt_tokens, calls, teacher.max_tokens, batch=teacher.mode == "batch")
    judge_calls = 0
    # At most every answer is judged (the main run's and the probe's, one per call), each with
    # a prompt of the rubric, the task's prompt and an answer of up to the teacher's max_tokens.
    asked = [user_chars[i] for i in train_rows] * n + [user_chars[i] for i in probe_rows] * extra
    for rule in plan.accept:
        if rule.kind != "judged":
            continue
        judge = teachers[rule.judge.teacher]
        tokens = sum(est.tokens(len(rule.judge.rubric) + chars) + teacher.max_tokens for chars in asked)
        judged = est.cost(judge.model, tokens, len(asked), judge.max_tokens, batch=judge.mode == "batch")
        cost = None if cost is None or judged is None else round(cost + judged, 6)
        judge_calls += len(asked)
        prompt_tokens += tokens
    return TaskEstimate(
        calls=calls,
        probe_calls=probe_calls,
        judge_calls=judge_calls,
        prompt_tokens=prompt_tokens,
        cost=cost,
    )


def _estimate_given(task: TaskDecl, plan: TaskPlan, rows: list[dict], diags: Diagnostics) -> TaskEstimate:
    """A task whose answers come from its source: no call, no token, no cost; its train rows
    that render are counted apart (`from_source`)."""
    assert task.seed is not None and task.holdout is not None  # resolved
    splits = sampling.split_rows(
        len(rows), task=task.name, seed=task.seed, limit=task.limit, holdout=task.holdout, probe=0
    )
    templates = [t for t in (task.prompt, task.answer, task.instruction) if t is not None]
    rendered, failed = 0, []
    for i in splits.train:
        try:
            for template in templates:
                render_row(template, rows[i])
            rendered += 1
        except Exception as error:  # noqa: BLE001 - a row's problem, not the plan's: reported, and not counted
            failed.append(f"task {task.name}: row {i + 1} skipped: {failure_reason(error)}")
    _warn_rows(failed, task.name, diags)
    return TaskEstimate(calls=0, probe_calls=0, from_source=rendered, prompt_tokens=0, cost=0.0)


SHOWN_ROW_WARNINGS = 20  # per task; `orcac build` reports every skipped row as it meets it


def _warn_rows(failed: list[str], task: str, diags: Diagnostics) -> None:
    for message in failed[:SHOWN_ROW_WARNINGS]:
        diags.warning(message)
    if len(failed) > SHOWN_ROW_WARNINGS:
        diags.warning(
            f"task {task}: {len(failed) - SHOWN_ROW_WARNINGS:,} more rows skipped (every one is listed by `orcac build`)"
        )
