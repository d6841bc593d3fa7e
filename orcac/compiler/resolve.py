"""Pass `resolve`: one Spec from every loaded file; names checked; defaults applied to tasks.

A task's key it does not set comes from `defaults`, else from the settings table
(orcac/specs/settings.py).

After this pass every task names its teacher, erase message and strategy (or best_of),
and every name it uses exists. A teacher or erase message may be left out when exactly
one is declared. A task with `answer` (its answers come from its source) names an erase
message only: no teacher, no strategy, and the sampling keys at the table's defaults.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from orcac.compiler.load import Loaded
from orcac.compiler.to_spec import to_spec_module
from orcac.specs import settings
from orcac.specs.diagnostics import Diagnostics, did_you_mean
from orcac.specs.spec import BestOf, Named, Spec, StageDecl

NAMESPACES = (
    ("teacher", "teachers"),
    ("student", "students"),
    ("strategy", "strategies"),
    ("erase", "erases"),
    ("judge", "judges"),
    ("task", "tasks"),
)
SINGLETONS = ("defaults", "train", "eval")
PLURAL = {"strategy": "strategies", "erase message": "erase messages"}
CHOSEN = ("teacher", "erase", "strategy")  # a task's keys chosen below, each name checked; the others fall back


def resolve(loaded: list[Loaded], main: Path, shown: str, diags: Diagnostics) -> Spec | None:
    """The whole spec, or None when a file could not be parsed."""
    if not loaded:
        return None
    decls: dict[str, list] = {}
    broken: dict[str, set[str]] = {}  # kind -> names declared with a bad value (already reported)
    version = 1
    for item in loaded:
        for kind, items in to_spec_module(item.module, diags).items():
            if kind == "broken":
                for bad_kind, name in items:
                    broken.setdefault(bad_kind, set()).add(name)
            else:
                decls.setdefault(kind, []).extend(items)
        if item.path == main.resolve() and item.module.version is not None:
            version = item.module.version

    fields: dict = {}
    for kind, plural in NAMESPACES:
        seen: dict[str, Any] = {}
        unique = []
        for d in decls.get(kind, []):
            if d.name in seen:
                first = seen[d.name]
                diags.error(
                    f"{kind} '{d.name}' is declared twice",
                    d.span,
                    f"first declared at {first.span}; rename one of them",
                )
                continue
            seen[d.name] = d
            unique.append(d)
        fields[plural] = tuple(unique)
    for kind in SINGLETONS:
        items = decls.get(kind, [])
        for extra in items[1:]:
            diags.error(f"a second {kind} block", extra.span, f"first at {items[0].span}; merge them into one")
        fields[kind] = items[0] if items else None

    spec = Spec(
        file=shown, path=str(main.resolve()), version=version, modules=tuple(i.module.file for i in loaded), **fields
    )
    return _apply_defaults(spec, diags, broken)


def _check_ref(ref: Named | None, kind: str, names, diags: Diagnostics) -> bool:
    if ref is None:
        return False
    if ref.name not in names:
        hint = did_you_mean(ref.name, names)
        if hint is None:
            hint = (
                f"declared {PLURAL.get(kind, kind + 's')}: {', '.join(sorted(names))}"
                if names
                else f"no {kind} is declared"
            )
        diags.error(f"unknown {kind} '{ref.name}'", ref.span, hint)
        return False
    return True


def _apply_defaults(spec: Spec, diags: Diagnostics, broken: dict[str, set[str]]) -> Spec:
    """Defaults into tasks; every name checked. Names in `broken` were declared with a bad
    value (reported already): referring to one is not a second error."""
    d = spec.defaults
    teachers = {t.name for t in spec.teachers} | broken.get("teacher", set())
    erases = {e.name for e in spec.erases} | broken.get("erase", set())
    strategies = {s.name for s in spec.strategies} | broken.get("strategy", set())
    if d is not None:
        _check_ref(d.teacher, "teacher", teachers, diags)
        _check_ref(d.erase, "erase message", erases, diags)
        _check_strategy(d.strategy, strategies, diags)
    _check_judges(spec, teachers, broken, diags)

    tasks = []
    for task in spec.tasks:
        update: dict = _given(task, d, diags) if task.answer is not None else {}
        if task.instruction is not None and task.answer is None:
            diags.error(
                f"task '{task.name}' has an instruction but no answer: instruction is the system message "
                "the source's own answers were written under",
                task.at("instruction"),
                'add answer = "{{ column }}" (the answers the source has), or take instruction out and give the task a strategy',
            )
        for key, names, kind in (("teacher", teachers, "teacher"), ("erase", erases, "erase message")):
            if key in update:
                continue
            own = getattr(task, key)
            chosen = own or (getattr(d, key) if d else None)
            if own is not None:
                _check_ref(own, kind, names, diags)
            elif chosen is None and d is not None and key in d.spans:
                pass  # defaults sets it, with a bad value: reported there
            elif chosen is None:
                if len(names) == 1:
                    only = next(iter(names))
                    chosen = Named(name=only, span=task.span)
                else:
                    what = "no" if not names else "more than one"
                    diags.error(
                        f"task '{task.name}' has no {kind}",
                        task.span,
                        f"{what} {kind} is declared: set {key} = NAME in the task or in defaults",
                    )
            update[key] = chosen
        if "strategy" in update:
            pass
        elif task.strategy is not None:
            _check_strategy(task.strategy, strategies, diags)
            update["strategy"] = task.strategy
        elif d is not None and d.strategy is not None:
            update["strategy"] = d.strategy
        elif d is None or "strategy" not in d.spans:  # a bad one in defaults is reported there
            diags.error(
                f"task '{task.name}' has no strategy",
                task.span,
                'set strategy = NAME (or best_of(a, b, ...)); import "std/strategies.orca" for Orca 2\'s named strategies',
            )
        for setting in settings.keys("defaults"):
            if setting.name in CHOSEN or setting.field in update or getattr(task, setting.field) is not None:
                continue
            value = getattr(d, setting.field) if d is not None else None
            update[setting.field] = setting.default if value is None else value
        tasks.append(replace(task, **update))

    task_names = {t.name for t in spec.tasks} | broken.get("task", set())  # a set: a stage may list thousands
    if spec.train is not None:
        _check_ref(spec.train.student, "student", {s.name for s in spec.students} | broken.get("student", set()), diags)
        _check_distill(spec, broken, diags)
        stages: dict[str, StageDecl] = {}
        for stage in spec.train.stages:
            if stage.name in stages:
                diags.error(
                    f"stage '{stage.name}' is declared twice",
                    stage.span,
                    f"first declared at {stages[stage.name].span}",
                )
            stages[stage.name] = stage
            if not stage.tasks:
                diags.error(
                    f"stage '{stage.name}' has no tasks", stage.at("tasks"), "list at least one task: tasks = [NAME]"
                )
            listed = set()
            for ref in stage.tasks:
                _check_ref(ref, "task", task_names, diags)
                if ref.name in listed:
                    diags.error(f"task '{ref.name}' is listed twice in stage '{stage.name}'", ref.span)
                listed.add(ref.name)
        if not spec.train.stages:
            diags.error(
                "train has no stages", spec.train.span, "add at least one: stage NAME { tasks = [...] epochs = 1 }"
            )
    return replace(spec, tasks=tuple(tasks))


def _check_distill(spec: Spec, broken: dict[str, set[str]], diags: Diagnostics) -> None:
    """`objective = distill` needs a `distill { teacher = T }` block whose teacher runs in this
    process (local/...): its next-token distributions are read, which no API returns whole."""
    train = spec.train
    assert train is not None  # called only for a spec with a train block
    distill = train.distill
    if train.objective == "sft":
        if distill is not None:
            diags.error(
                "a distill block, but the objective is sft",
                distill.span,
                "set objective = distill (or sft+distill) in the train block",
            )
        return
    if distill is None:
        diags.error(
            f"objective = {train.objective} needs a distill block",
            train.at("objective"),
            "add: distill { teacher = NAME } (a local/... teacher) to the train block",
        )
        return
    teachers = {t.name: t for t in spec.teachers}
    if not _check_ref(distill.teacher, "teacher", set(teachers) | broken.get("teacher", set()), diags):
        return
    teacher = teachers.get(distill.teacher.name)
    if teacher is not None and not teacher.model.startswith("local/"):
        diags.error(
            f"distill teacher '{teacher.name}' is {teacher.model!r}, not a local model: its token distributions cannot be read",
            distill.teacher.span,
            "distill from a local/... teacher (the same base model or another with the student's tokenizer), or use objective = sft",
        )


# A task whose answers come from its source asks no teacher: these keys have nothing to do there.
NOT_GIVEN = ("teacher", "strategy", "samples", "keep", "temperature", "allow_truncated")


def _given(task, d, diags: Diagnostics) -> dict:
    """A task with `answer`: no teacher and no strategy; the keys about asking one, if the task
    writes them, are errors (from `defaults` they are left out); `follows(strategy)` has no
    strategy to follow, and `judged(NAME)` is not supported on them yet."""
    for key in NOT_GIVEN:
        if key in task.spans:
            diags.error(
                f"'{key}' has no use in task '{task.name}': its answers come from its source (answer = ...), "
                "so no teacher is asked",
                task.at(key),
                f"take {key} out, or take answer out to have a teacher answer the task",
            )
    accept = task.accept if task.accept is not None else (d.accept if d is not None else None)
    own = task.accept is not None
    for rule in accept or ():
        why = {
            "follows": ("follows(strategy)", "has no strategy to follow: its answers come from its source"),
            "judged": (
                f"judged({rule.judge.name if rule.judge else ''})",
                "is not supported yet: its answers come from its source, and a judge scores a teacher's answers",
            ),
        }.get(rule.kind)
        if why:
            diags.error(
                f"{why[0]} in task '{task.name}' {why[1]}",
                rule.span if own else task.span,
                'check the answers with contains(gold), exact(gold), numeric(gold), regex("..") or nonempty'
                + ("" if own else "; the rule comes from defaults: set accept in the task"),
            )
    update: dict = {"teacher": None, "strategy": None}
    for key in NOT_GIVEN[2:]:
        update[key] = settings.key("task", key).default
    return update


def _check_strategy(s: Named | BestOf | None, names: set[str], diags: Diagnostics) -> None:
    if isinstance(s, BestOf):
        for c in s.candidates:
            _check_ref(c, "strategy", names, diags)
    elif s is not None:
        _check_ref(s, "strategy", names, diags)


def _check_judges(spec: Spec, teachers: set[str], broken: dict[str, set[str]], diags: Diagnostics) -> None:
    """A judge's teacher exists, and so does every judge a check names (`judged(NAME)`): in
    defaults once, in each task that writes its own `accept`."""
    for judge in spec.judges:
        _check_ref(judge.teacher, "teacher", teachers, diags)
    judges = {j.name for j in spec.judges} | broken.get("judge", set())
    for owner in (spec.defaults, *spec.tasks):
        for rule in (owner.accept if owner is not None else None) or ():
            if rule.judge is not None:
                _check_ref(rule.judge, "judge", judges, diags)
