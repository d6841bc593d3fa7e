"""`orcac build`'s probe phase: the seam between the build and the probes."""

from __future__ import annotations

from orcac.runtime.commands.build_records.probe.estimate import decision_table, estimate, print_estimate
from orcac.runtime.commands.build_records.probe.run import _answered, run_probes
from orcac.runtime.context import RunContext


def phase(context: RunContext, args) -> RunContext:
    """`orcac build`'s probe phase: the context (its plan) the main run builds with.

    With `--dry-run`, prints what the probes would call and returns the context unchanged.
    Otherwise probes what needs it (`--reprobe`: every best_of task), writes decisions to
    the database and the plan file, and prints the decision table.
    """
    plan, root, db = context.plan, context.root, context.db
    if not any(t.probe is not None for t in plan.tasks.values()):
        return context
    reprobe = bool(getattr(args, "reprobe", False))
    from orcac.runtime.store.answer_cache import AnswerCache
    from orcac.runtime.store.database import Store

    enabled = not getattr(args, "no_cache", False)
    if getattr(args, "dry_run", False):
        cache = AnswerCache.open(enabled=enabled, create=False)
        try:
            def cached(ids: list[str]) -> set[str]:  # in the machine's answer cache (read only)
                return set(cache.get(ids)) if cache is not None else set()

            if db.exists():
                with Store.open(db, read_only=True, spec=plan.spec) as store:
                    found = estimate(plan, root, answered=lambda ids: set(_answered(store, ids)) | cached(ids),
                                     reprobe=reprobe)
            else:
                found = estimate(plan, root, answered=cached, reprobe=reprobe)
        finally:
            if cache is not None:
                cache.close()
        print_estimate(found)
        return context
    from rich.console import Console

    cache = AnswerCache.open(enabled=enabled)
    try:
        with Store.open(db, spec=plan.spec) as store:
            result = run_probes(plan, root, store, plan_path=context.path, reprobe=reprobe,
                                recompile=context.recompile, cache=cache)
    finally:
        if cache is not None:
            cache.close()
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file: room for the whole table
    metrics = {name: task.probe.metric for name, task in result.plan.tasks.items() if task.probe is not None}
    console.print(decision_table(result.decisions, result.probed, metrics))
    return context.with_plan(result.plan)
