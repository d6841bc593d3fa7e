"""What eval measured, read back from the store: the latest run of each arm per task with its
intervals, the gaps closed and paired tests, judges' scores, and the lm-eval benchmarks.
The report, eval's terminal table and the model card all show these same figures.
"""

from __future__ import annotations

from orcac.runtime.charts import eval_chart
from orcac.runtime.store import evaluations
from orcac.runtime.store.database import Store
from orcac.runtime.store.evaluations import INTERVAL_COLUMNS
from orcac.stats import undecided

ARMS = ("base", "prompted", "trained")  # eval arms in their usual order; others follow by name


def evaluation(store: Store, *, judged: bool = True) -> dict | None:
    """The latest run of each arm: one row per task, one column group per arm; and, where
    judges scored the arms' answers, each judge's mean score and kept share per arm."""
    rows = evaluations.latest_runs(store)
    if not rows:
        return None
    seen = {r[0] for r in rows}
    arms = [a for a in ARMS if a in seen] + sorted(seen - set(ARMS))
    tasks = sorted({r[1] for r in rows})
    cells = {
        (model, task): {"examples": n, "accuracy": acc, "adherence": adh, **dict(zip(INTERVAL_COLUMNS, more))}
        for model, task, n, acc, adh, *more in rows
    }
    gaps = _gaps(store)
    paired = _paired(store)
    table = [
        {
            "task": task,
            "arms": [cells.get((arm, task)) for arm in arms],
            "gaps": gaps.get(task),
            "paired": paired.get(task),
        }
        for task in tasks
    ]
    undecided_lines = [
        f"{task} {metric}, trained against base: {line}"
        for task in tasks
        for metric, t in (paired.get(task) or {}).items()
        if (line := undecided(t["pairs"], t["worse"], t["better"]))
    ]
    return {
        "arms": arms,
        "rows": table,
        "chart": eval_chart(arms, tasks, cells),
        "gaps": bool(gaps),
        "paired": bool(paired),
        "undecided": undecided_lines,
        "judges": _eval_judges(store, arms) if judged else [],
    }


def benchmark_results(store: Store) -> list[dict]:
    """The latest benchmark run of each arm (`eval_benchmarks`), as orcac/runtime/commands/evaluate/benchmarks.py stored it."""
    return evaluations.latest_benchmarks(store)


def benchmark_table(rows: list[dict]) -> dict | None:
    """Benchmark rows as a table (the terminal's, the report's and the model card's): one row per
    benchmark the plan named and metric, one cell per arm, `0.4123 ± 0.014` (lm-eval's stderr)."""
    if not rows:
        return None
    seen = {r["model"] for r in rows}
    arms = [a for a in ARMS if a in seen] + sorted(seen - set(ARMS))
    cells: dict[tuple[str, str, str], dict[str, dict]] = {}
    for r in rows:
        if r["top"]:  # a group's subtasks stay in the database
            cells.setdefault((r["benchmark"], r["metric"], r["filter"]), {})[r["model"]] = r
    return {
        "arms": arms,
        "system": next((r["system_instruction"] for r in rows if r["system_instruction"]), None),
        "rows": [
            {
                "benchmark": benchmark,
                "metric": metric,
                "filter": filter_name,
                "n": next((r["samples"] for r in by_arm.values() if r["samples"] is not None), None),
                "cells": [_score(by_arm.get(arm)) for arm in arms],
            }
            for (benchmark, metric, filter_name), by_arm in cells.items()
        ],
    }


def _score(row: dict | None) -> str:
    if row is None:
        return ""
    # four significant digits: an accuracy (0.4123) and a random model's perplexity (2.813e+23) alike
    return f"{row['value']:.4g}" + ("" if row["stderr"] is None else f" ± {row['stderr']:.2g}")


def _eval_judges(store: Store, arms: list[str]) -> list[dict]:
    rows = evaluations.latest_judgements(store)
    cells: dict[tuple[str, str], dict] = {}
    for task, judge, model, n, kept, mean in rows:
        cells.setdefault((task, judge), {})[model] = {"judged": n, "kept": kept, "mean": mean}
    return [
        {"task": task, "judge": judge, "arms": [by_arm.get(arm) for arm in arms]}
        for (task, judge), by_arm in sorted(cells.items())
    ]


def _gaps(store: Store) -> dict[str, dict[str, dict]]:
    """task -> {metric: {gap, low, high}}: the gap closed and its bootstrap interval, from the
    latest eval run that had all three arms."""
    rows = evaluations.latest_gaps(store)
    out: dict[str, dict[str, dict]] = {}
    for task, metric, gap, low, high in rows:
        out.setdefault(task, {})[metric] = {"gap": gap, "low": low, "high": high}
    return out


def _paired(store: Store) -> dict[str, dict[str, dict]]:
    """task -> {metric: {pairs, worse, better, p}}: trained against base on the same rows
    (exact McNemar), from the latest eval run that had both."""
    rows = evaluations.latest_paired(store)
    out: dict[str, dict[str, dict]] = {}
    for task, metric, pairs, worse, better, p in rows:
        out.setdefault(task, {})[metric] = {"pairs": pairs, "worse": worse, "better": better, "p": p}
    return out
