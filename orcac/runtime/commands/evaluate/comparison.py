"""Comparing `orcac eval`'s arms on the same held-out rows.

Per task and overall, for both metrics, the share of the gap closed:
`(trained - base) / (prompted - base)`: 1 means the student does without the prompt what the
prompt made the model do; n/a where the prompt changed nothing; with a seeded bootstrap 95%
interval over the rows all three arms scored. Base and trained answered the same rows, so
whether they differ beyond chance is the exact McNemar test on the rows where their outcomes
differ (paired by task and row). The arithmetic is orcac/stats.py's.
"""

from __future__ import annotations

from orcac.runtime.commands.evaluate.scoring import METRICS, Scored, overall
from orcac.stats import bootstrap_gap, gap_closed, mcnemar


def outcome(scored: Scored, metric: str) -> bool | None:
    return scored.accepted if metric == "accuracy" else scored.adheres


def paired_outcomes(
    outcomes: dict[str, dict[str, list[Scored]]], tasks: list[str], metric: str, arms: tuple[str, ...]
) -> list[tuple[bool, ...]]:
    """Per held-out row of `tasks` that every arm in `arms` scored on `metric`, their outcomes
    in that order. Rows are matched by (task, row index), so each tuple is one question."""
    by_arm = {
        arm: {
            (s.held.task, s.held.row_index): outcome(s, metric) for task in tasks for s in outcomes[arm].get(task, ())
        }
        for arm in arms
    }
    first = by_arm[arms[0]]
    return [
        tuple(by_arm[arm][key] for arm in arms)
        for key in first
        if all(by_arm[arm].get(key) is not None for arm in arms)
    ]


def gaps_closed(summary: list[dict], outcomes: dict[str, dict[str, list[Scored]]] | None = None) -> list[dict]:
    """Per task and overall ("all"), per metric: the three arms' rates and the gap closed,
    and, given the scored answers (`outcomes`), the gap's bootstrap 95% interval over the rows
    all three scored (gap_low, gap_high). Empty unless base, prompted and trained all ran."""
    by = {(r["task"], r["model"]): r for r in summary}
    if not {"base", "prompted", "trained"} <= {r["model"] for r in summary}:
        return []
    tasks = list(dict.fromkeys(r["task"] for r in summary))
    # "all": the tasks every arm answered (prompted leaves out answers from sources)
    common = [t for t in tasks if all((t, m) in by for m in ("base", "prompted", "trained"))]
    out = []
    for task in [*tasks, "all"]:
        if task == "all":
            if not common:
                continue
            arms = {m: overall([by[(t, m)] for t in common]) for m in ("base", "prompted", "trained")}
        else:
            arms = {m: by.get((task, m)) for m in ("base", "prompted", "trained")}
        if any(row is None for row in arms.values()):
            continue
        for metric in METRICS:
            values = {m: arms[m][metric] for m in arms}
            gap = gap_closed(**values)
            low = high = None
            if outcomes is not None and gap is not None:
                rows = paired_outcomes(
                    outcomes, common if task == "all" else [task], metric, ("base", "prompted", "trained")
                )
                low, high = bootstrap_gap(rows) or (None, None)
            out.append({"task": task, "metric": metric, **values, "gap_closed": gap, "gap_low": low, "gap_high": high})
    return out


def paired_tests(outcomes: dict[str, dict[str, list[Scored]]]) -> list[dict]:
    """Per task and overall ("all"), per metric: base against trained on the same held-out
    rows, the exact McNemar test on the rows whose outcome differs. `worse`: rows base got
    right and trained wrong; `better`: the other way round. Empty unless both arms ran."""
    if not {"base", "trained"} <= set(outcomes):
        return []
    tasks = [t for t in outcomes["base"] if t in outcomes["trained"]]
    out = []
    for task in [*tasks, "all"] if tasks else []:
        for metric in METRICS:
            rows = paired_outcomes(outcomes, tasks if task == "all" else [task], metric, ("base", "trained"))
            if not rows:
                continue  # the metric is n/a for this task
            worse = sum(base and not trained for base, trained in rows)
            better = sum(trained and not base for base, trained in rows)
            out.append(
                {
                    "task": task,
                    "metric": metric,
                    "pairs": len(rows),
                    "worse": worse,
                    "better": better,
                    "p": mcnemar(worse, better),
                }
            )
    return out
