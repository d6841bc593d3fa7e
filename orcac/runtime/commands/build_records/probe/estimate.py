"""What the probe phase shows: the dry run's estimate of its calls, and the decision table."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from orcac import costs
from orcac.runtime.commands.build_records.probe.decisions import pending
from orcac.runtime.commands.build_records.probe.run import probe_items
from orcac.specs.plan import Decision, Plan


def decision_table(decisions: dict[str, Decision], probed: Iterable[str] = (), metrics: dict[str, str] | None = None):
    """A rich table: task, candidate, score, passed/total, tokens, cost, chosen (and the rule
    that broke a tie for first place, if any). A task chosen by its judge (`metrics[task] == "judge"`) shows the mean judge score, others a pass rate."""
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
                f"{s.score:g} mean" if (metrics or {}).get(name) == "judge" else f"{s.score:.1%}",
                f"{s.passed}/{s.total}",
                f"{s.prompt_tokens + s.completion_tokens:,}",
                f"${s.cost:.4f}",
                _chosen(decision) if s.strategy == decision.chosen else "",
                end_section=number == len(decision.scores) - 1,
            )
    return table


def _chosen(decision: Decision) -> str:
    """The chosen column: a tie for first place names the rule that broke it."""
    return "yes" if decision.tie_break is None else f"yes (tie: {decision.tie_break})"


@dataclass(frozen=True)
class ProbeEstimate:
    candidates: int
    rows: int  # probe rows
    jobs: int  # rows x candidates
    cached: int  # answered by an earlier build
    calls: int  # jobs - cached
    prompt_tokens: int  # orcac.costs.prompt_tokens over the calls, as the build estimates
    cost: float | None  # at litellm's prices (completions at max_tokens); None where unknown
    judge_calls: int = 0  # at most: one per probe answer and judge of the task (answers that pass its other checks)


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
    from orcac.runtime.answers import examples as examples_module

    load = examples or (lambda name: examples_module.materialize(plan, root, name))
    out = {}
    for name in pending(plan, reprobe=reprobe):
        task = plan.tasks[name]
        items = probe_items(plan, name, load(name))
        cached = set(answered([i.job.id for i in items]))
        calls = {i.job.id: i for i in items if i.job.id not in cached}
        tokens = sum(costs.prompt_tokens(i.job.messages) for i in calls.values())
        teacher = plan.teachers[task.teacher]
        out[name] = ProbeEstimate(
            candidates=len(task.probe.candidates),
            rows=len(items) // max(1, len(task.probe.candidates)),
            jobs=len(items),
            cached=len(items) - len(calls),
            calls=len(calls),
            prompt_tokens=tokens,
            cost=costs.cost(teacher.model, tokens, len(calls), teacher.max_tokens),
            judge_calls=len(items) * sum(r.kind == "judged" for r in task.accept),
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
        print_(
            f"{name:<24} {f'{e.rows} x {e.candidates}':>12} {e.cached:>7} {e.calls:>7} {e.prompt_tokens:>14,} {shown:>10}"
        )
        calls += e.calls
        tokens += e.prompt_tokens
        cost += e.cost or 0.0
    total = "unknown" if unknown and not cost else f"${cost:,.4f}" + (" + unknown" if unknown else "")
    print_(f"{'probe total':<24} {'':>12} {'':>7} {calls:>7} {tokens:>14,} {total:>10}")
    judged = sum(e.judge_calls for e in estimates.values())
    if judged:
        print_(
            f"and up to {judged} judge call(s) for the probe answers that pass their tasks' other checks "
            "(fewer where an earlier build judged them)"
        )
