"""`orcac build`'s probe phase: the seam between the build and the probes. The build opens
its database and the answer cache once and hands them in (the main run uses the same)."""

from __future__ import annotations

from orcac.runtime.commands.build_records.probe.estimate import decision_table, estimate, print_estimate
from orcac.runtime.commands.build_records.probe.run import run_probes
from orcac.runtime.context import RunContext
from orcac.runtime.store.answer_cache import AnswerCache
from orcac.runtime.store.database import Store
from orcac.runtime.store.probes import probe_answers
from orcac.specs.plan import Plan


def needed(plan: Plan) -> bool:
    """Whether any task chooses its strategy by a probe (best_of)."""
    return any(t.probe is not None for t in plan.tasks.values())


def dry_run_phase(context: RunContext, store: Store | None, cache: AnswerCache | None, *, reprobe: bool) -> None:
    """`--dry-run`: prints what the probes would call, answered from the build's database
    (`store`, read only; None when there is none yet) and the machine's answer cache."""

    def answered(ids: list[str]) -> set[str]:  # in the database or the machine's answer cache (read only)
        stored = set(probe_answers(store, ids)) if store is not None else set()
        return stored | (set(cache.get(ids)) if cache is not None else set())

    print_estimate(estimate(context.plan, context.root, answered=answered, reprobe=reprobe))


def run_phase(context: RunContext, store: Store, cache: AnswerCache | None, *, reprobe: bool) -> RunContext:
    """Probes what needs it (`reprobe`: every best_of task), writes decisions to the database
    and the plan file, prints the decision table; returns the context (its plan) the main
    run builds with."""
    from rich.console import Console

    result = run_probes(
        context.plan,
        context.root,
        store,
        plan_path=context.path,
        reprobe=reprobe,
        recompile=context.recompile,
        cache=cache,
    )
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file: room for the whole table
    metrics = {name: task.probe.metric for name, task in result.plan.tasks.items() if task.probe is not None}
    console.print(decision_table(result.decisions, result.probed, metrics))
    return context.with_plan(result.plan)
