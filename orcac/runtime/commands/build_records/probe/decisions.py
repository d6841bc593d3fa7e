"""A probe's decision in the plan: when one may be reused, how it resolves a task's
strategy, and writing it back into the plan file so a reviewer sees it in the diff."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from orcac.errors import OrcacError
from orcac.runtime.context import Recompile
from orcac.specs.plan import Decision, Plan, TaskPlan, recorded_decisions
from orcac.specs.plan_file import write_plan


def is_decided(task: TaskPlan, *, reprobe: bool = False) -> bool:
    """Whether the task's recorded decision may be reused (always True for a task without a probe)."""
    probe = task.probe
    if probe is None:
        return True
    decision = probe.decision
    return not reprobe and decision is not None and decision.key == probe.key and decision.chosen in probe.candidates


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


def record(plan: Plan, plan_path: Path, root: Path, recompile: Recompile | None = None) -> Plan:
    """Write the decisions into the plan file (once); returns the plan as written.

    The file must read as `orcac plan` would write it now, or `orcac plan --check` would call
    it stale: so the spec is recompiled with the decisions handed in (the compiler carries
    each one whose key matches; the estimate no longer counts a decided probe's calls) and
    that plan is written, unless the recompile fails or changes more than the estimate (the
    spec was edited since the plan: the plan the build was given wins). Without `recompile`
    (no compiler at hand), the plan is written as it is.
    """
    spec = root / plan.spec
    if recompile is not None and spec.is_file():
        try:
            fresh = recompile(spec, plan_path, decisions=recorded_decisions(plan))
        except OrcacError:
            fresh = None
        if fresh is not None and fresh.model_copy(update={"estimate": plan.estimate}) == plan:
            plan = fresh
    write_plan(plan, plan_path)
    return plan
