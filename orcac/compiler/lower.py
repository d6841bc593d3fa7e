"""Pass `lower`: Spec + what `check` read -> Plan. Paths become relative to the plan file.

Also where strategy decisions are carried: a task with `best_of(...)` gets a ProbePlan
whose `key` hashes everything the choice depends on; if the plan already on disk holds
a Decision with that key, the choice is kept (strategy and system filled in), so a
recompile never forgets a probe's result and never keeps a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from orcac import sampling
from orcac import costs as est
from orcac.compiler.check import Facts
from orcac.specs.diagnostics import Diagnostics
from orcac.sources.read import rebase_query, render_row
from orcac.specs.plan import (
    CheckRule,
    DemonstrationPlan,
    SEED_RULE,
    SamplingPlan,
    EvalPlan,
    ErasePlan,
    Estimate,
    LoraPlan,
    Plan,
    ProbePlan,
    SourcePlan,
    SplitCounts,
    StagePlan,
    StrategyPlan,
    StudentPlan,
    TaskEstimate,
    TaskPlan,
    TeacherPlan,
    TrainPlan,
    AdherenceRule,
    spec_stem,
)
from orcac.specs import settings
from orcac.specs.spec import BestOf, Spec, TaskDecl
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
    previous: Plan | None,
    diags: Diagnostics,
) -> Plan | None:
    plan_dir = plan_path.resolve().parent

    def origin(decl) -> str:
        file, line = decl.origin.rsplit(":", 1)
        p = files.get(file)
        return f"{rel(p, plan_dir) if p is not None else file}:{line}"

    strategies = {s.name: s for s in spec.strategies}
    erases = {e.name: e for e in spec.erases}
    teachers = {t.name: t for t in spec.teachers}
    used_strategies: set[str] = set()
    used_erases: set[str] = set()

    tasks: dict[str, TaskPlan] = {}
    estimates: dict[str, TaskEstimate] = {}
    for task in spec.tasks:
        sf = facts.sources.get(task.name)
        if sf is None or sf.data is None:
            continue
        teacher = teachers[task.teacher.name]
        src = task.source
        source = SourcePlan(
            kind=src.kind,
            path=rel(base / src.path, plan_dir) if src.path is not None else None,
            split=src.split,
            query=rebase_query(src.query, base, plan_dir) if src.query is not None else None,
            files=tuple(rel(f, plan_dir) for f in sf.files) if src.kind == "sql" else (),
            network=src.network,
            sha256=sf.sha256,
            columns=sf.columns,
            rows=sf.rows,
        )
        accept = tuple(CheckRule(kind=c.kind, pattern=c.pattern, tolerance=c.tolerance) for c in task.accept)
        probe_size = task.strategy.probe if isinstance(task.strategy, BestOf) else 0
        sampled, n_holdout, n_probe, n_train = sampling.split_sizes(
            sf.rows, limit=task.limit, holdout=task.holdout, probe=probe_size
        )
        counts = SplitCounts(rows=sf.rows, sampled=sampled, holdout=n_holdout, probe=n_probe, train=n_train)

        probe = None
        if isinstance(task.strategy, BestOf):
            names = [c.name for c in task.strategy.candidates]
            used_strategies.update(names)
            key = probe_key(task, sf.sha256, [(n, *_shown(strategies[n])) for n in names], teacher, accept)
            decision = None
            if previous is not None and task.name in previous.tasks:
                old = previous.tasks[task.name].probe
                if old is not None and old.decision is not None and old.decision.key == key and old.decision.chosen in names:
                    decision = old.decision
            probe = ProbePlan(candidates=tuple(names), size=probe_size, key=key, decision=decision)
            chosen = decision.chosen if decision else None
        else:
            chosen = task.strategy.name
            used_strategies.add(chosen)
        used_erases.add(task.erase.name)

        tasks[task.name] = TaskPlan(
            name=task.name,
            category=task.category,
            source=source,
            prompt=task.prompt,
            gold=task.gold,
            teacher=teacher.name,
            erase=task.erase.name,
            strategy=chosen,
            system=strategies[chosen].system if chosen else None,
            probe=probe,
            accept=accept,
            allow_truncated=task.allow_truncated,
            sampling=SamplingPlan(
                samples=task.samples,
                keep=task.keep,
                temperature=task.temperature,
                seeds=SEED_RULE if task.samples > 1 else None,
            ),
            limit=task.limit,
            seed=task.seed,
            holdout=task.holdout,
            counts=counts,
        )
        estimates[task.name] = _estimate(task, tasks[task.name], sf.data, strategies, teacher, diags)

    if diags:
        return None

    train = None
    if spec.train is not None:
        t = spec.train
        output = t.output or f".orca/{spec_stem(spec.path)}/student"
        lora = None
        if t.lora is not None:
            lora = LoraPlan(r=t.lora.r, alpha=t.lora.alpha, dropout=t.lora.dropout, target_modules=t.lora.targets)
        stages = tuple(
            StagePlan(
                name=s.name,
                tasks=tuple(r.name for r in s.tasks),
                epochs=s.epochs,
                train_examples=sum(tasks[r.name].counts.train for r in s.tasks if r.name in tasks),
            )
            for s in t.stages
        )
        train = TrainPlan(
            student=t.student.name,
            max_length=t.max_length,
            packing=t.packing,
            lr=t.lr,
            schedule=t.schedule,
            warmup_ratio=t.warmup,
            batch_size=t.batch_size,
            grad_accum=t.grad_accum,
            seed=t.seed,
            precision=t.precision,
            lora=lora,
            output=rel(base / output, plan_dir),
            stages=stages,
        )
    ev = spec.eval
    eval_plan = EvalPlan() if ev is None else EvalPlan(max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size, prompted=ev.prompted)

    costs = [e.cost for e in estimates.values()]
    estimate = Estimate(
        calls=sum(e.calls for e in estimates.values()),
        probe_calls=sum(e.probe_calls for e in estimates.values()),
        prompt_tokens=sum(e.prompt_tokens for e in estimates.values()),
        cost=None if any(c is None for c in costs) else round(sum(costs), 6),
        tasks=estimates,
    )
    return Plan(
        language=spec.version,
        spec=rel(Path(spec.path), plan_dir),
        teachers={
            t.name: TeacherPlan(
                name=t.name,
                model=t.model,
                api_key_env=t.api_key,
                api_base=t.api_base,
                temperature=t.temperature,
                top_p=t.top_p,
                max_tokens=t.max_tokens,
                seed=t.seed,
                concurrency=t.concurrency,
                adaptive=t.adaptive,
                rpm=t.rpm,
                tpm=t.tpm,
                timeout_s=t.timeout,
                max_retries=t.max_retries,
                batch_size=t.batch_size,
                threads=t.threads,
                precision=t.precision,
                transport=t.transport,
                mode=t.mode,
                params=t.params,
            )
            for t in spec.teachers
        },
        students={s.name: StudentPlan(name=s.name, model=s.model, chat_template=s.chat_template) for s in spec.students},
        strategies={
            name: StrategyPlan(
                name=name,
                system=strategies[name].system,
                adherence=tuple(
                    AdherenceRule(kind=r.kind, pattern=r.pattern, value=r.value, description=r.description)
                    for r in strategies[name].expect
                ),
                demonstrations=tuple(
                    DemonstrationPlan(user=d.user, assistant=d.assistant) for d in strategies[name].demonstrations
                ),
                origin=origin(strategies[name]),
            )
            for name in sorted(used_strategies)
        },
        erase={name: ErasePlan(name=name, system=erases[name].system, origin=origin(erases[name])) for name in sorted(used_erases)},
        tasks=tasks,
        train=train,
        eval=eval_plan,
        estimate=estimate,
    )


def _shown(strategy) -> tuple:
    """What a strategy shows the teacher: its system text and demonstrations (only when it has
    some, so that keys of strategies without them stay what they were)."""
    demos = [[d.user, d.assistant] for d in strategy.demonstrations]
    return (strategy.system, demos) if demos else (strategy.system,)


def probe_key(task: TaskDecl, source_sha: str, candidates: list[tuple[str, str]], teacher, accept) -> str:
    """sha256 over everything a probe's choice depends on (and nothing else)."""
    what = {
        "task": task.name,
        "prompt": task.prompt,
        "gold": task.gold,
        "source": source_sha,
        "candidates": candidates,
        "teacher": {
            **{key.name: getattr(teacher, key.field) for key in settings.keys("teacher") if key.in_probe_key},
            "params": teacher.params,
        },
        "probe": task.strategy.probe,
        "seed": task.seed,
        "limit": task.limit,
        "holdout": task.holdout,
        "accept": [r.model_dump(mode="json") for r in accept],
        "allow_truncated": task.allow_truncated,
        # only when set, so that keys of specs written before sampling existed do not move
        **({"temperature": task.temperature} if task.temperature is not None else {}),
    }
    blob = json.dumps(what, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _shown_chars(strategy) -> int:
    return len(strategy.system) + sum(len(d.user) + len(d.assistant) for d in strategy.demonstrations)


def _estimate(task: TaskDecl, plan: TaskPlan, rows: list[dict], strategies, teacher, diags: Diagnostics) -> TaskEstimate:
    splits = sampling.split_rows(
        len(rows), task=task.name, seed=task.seed, limit=task.limit, holdout=task.holdout, probe=plan.counts.probe
    )
    user_chars: dict[int, int] = {}
    failed = []
    for i in splits.train:
        try:
            user_chars[i] = len(render_row(task.prompt, rows[i]))
        except Exception as error:  # a row's problem, not the plan's: reported, and left out of the estimate
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
    return TaskEstimate(
        calls=calls,
        probe_calls=probe_calls,
        prompt_tokens=prompt_tokens,
        cost=est.cost(teacher.model, prompt_tokens, calls, teacher.max_tokens, batch=teacher.mode == "batch"),
    )


SHOWN_ROW_WARNINGS = 20  # per task; `orcac build` reports every skipped row as it meets it


def _warn_rows(failed: list[str], task: str, diags: Diagnostics) -> None:
    for message in failed[:SHOWN_ROW_WARNINGS]:
        diags.warning(message)
    if len(failed) > SHOWN_ROW_WARNINGS:
        diags.warning(f"task {task}: {len(failed) - SHOWN_ROW_WARNINGS:,} more rows skipped (every one is listed by `orcac build`)")
