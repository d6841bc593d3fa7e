"""`orcac eval`'s tables in the terminal: each arm's rates with their 95% intervals, the gap
closed, trained against base's paired p, a line where n is too small to tell them apart, the
judges' mean scores; and which strategy's form each arm's answers follow."""

from __future__ import annotations

import sys

from orcac.runtime.commands.evaluate.scoring import METRICS, counts, interval, overall
from orcac.stats import undecided


def show(summary: list[dict], models: list[str], gaps: list[dict] = (), paired: list[dict] = ()) -> None:
    """Per task, per metric: each arm's rate and its 95% interval, the gap closed and its
    interval, and trained against base's paired p; then, one line each, where n is too small
    to tell base and trained apart."""
    from rich.console import Console
    from rich.table import Table

    by = {(r["task"], r["model"]): r for r in summary}
    gap = {(g["task"], g["metric"]): g for g in gaps}
    test = {(t["task"], t["metric"]): t for t in paired}
    tasks = list(dict.fromkeys(r["task"] for r in summary))
    table = Table(
        title="held-out evaluation: base and trained see only the erase message; prompted also sees the strategy "
        "and its demonstrations",
        title_justify="left",
        caption="\\[low-high]: 95% interval (Wilson"
        + ("; for the gap closed, a bootstrap over rows" if gaps else "")
        + ")"
        + ("; p: trained against base on the same rows (exact McNemar)" if paired else ""),
        caption_justify="left",
    )
    table.add_column("task", overflow="fold")
    table.add_column("n", justify="right")
    for metric in METRICS:
        for model in models:
            table.add_column(f"{metric}\n{model}", justify="right", no_wrap=True)
        if gaps:
            table.add_column(f"{metric}\ngap closed", justify="right", no_wrap=True)
        if paired:
            table.add_column(f"{metric}\np", justify="right", no_wrap=True)
    for task in tasks + ["all"]:
        if task == "all":
            rows = {m: overall([by[(t, m)] for t in tasks if (t, m) in by]) for m in models}
        else:
            rows = {m: by.get((task, m)) for m in models}
        n = next((r["examples"] for r in rows.values() if r), 0)
        cells = [task, str(n)]
        for metric in METRICS:
            cells += [_rate(rows[m], metric, n) if rows.get(m) else "" for m in models]
            if gaps:
                cells.append(_gap(gap.get((task, metric))))
            if paired:
                cells.append(_p(test.get((task, metric))))
        table.add_row(*cells, end_section=task == tasks[-1])
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file or a pipe: room for the whole table
    console.print(table)
    for t in paired:  # a bare p above 0.05 reads as "no effect"; say what n can and cannot tell
        line = undecided(t["pairs"], t["worse"], t["better"])
        if line and not (t["task"] == "all" and len(tasks) == 1):  # "all" of one task says it twice
            print(f"{t['task']} {t['metric']}, trained against base: {line}")
    for task in tasks:  # a judged task: its judges' mean score per arm, a finer measure than the pass rate
        for judge in dict.fromkeys(
            j for m in models if by.get((task, m)) for j in by[(task, m)].get("judge_scores", {})
        ):
            means = [(m, by[(task, m)]["judge_scores"].get(judge)) for m in models if by.get((task, m))]
            shown = ", ".join(f"{m} {'n/a' if v is None else f'{v:.2f}'}" for m, v in means)
            print(f"{task}: mean score of judge {judge}: {shown}")
    if gaps:
        print(
            "gap closed = (trained - base) / (prompted - base): the share of the prompt's effect "
            "the student shows without it",
            file=sys.stderr,
        )


def _rate(row: dict, metric: str, n: int) -> str:
    """A rate over its 95% interval, in points (and its own n where it is not the row's)."""
    bounds = interval(row, metric)
    if bounds is None:
        return "n/a"
    _, of = counts(row, metric)
    own = f" n={of}" if of != n else ""
    return f"{100 * row[metric]:.0f}%\n[{100 * bounds[0]:.0f}-{100 * bounds[1]:.0f}]{own}"


def show_strategies(rows: list[dict]) -> None:
    """Which strategy's form each arm's answers follow, per task: `strategies_followed`'s rows.
    A task's own strategy is marked with *."""
    if not rows:
        return
    from rich.console import Console
    from rich.table import Table

    columns = list(rows[0]["counts"])
    table = Table(
        title="the strategy whose form each answer follows",
        title_justify="left",
        caption="* the task's own strategy; none: no strategy's form; several: more than one",
        caption_justify="left",
    )
    table.add_column("task", overflow="fold")
    table.add_column("arm")
    table.add_column("n", justify="right")
    for column in columns:
        table.add_column(column, justify="right")
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    for task in tasks:
        mine = [r for r in rows if r["task"] == task]
        for i, r in enumerate(mine):
            cells = [f"{r['counts'][c]}{'*' if c == r['strategy'] else ''}" for c in columns]
            table.add_row(
                task if i == 0 else "", r["model"], str(r["examples"]), *cells, end_section=i == len(mine) - 1
            )
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)


def _gap(g: dict | None) -> str:
    if g is None or g["gap_closed"] is None:
        return "n/a"
    if g.get("gap_low") is None:
        return f"{g['gap_closed']:.2f}"
    return f"{g['gap_closed']:.2f}\n[{g['gap_low']:.2f}, {g['gap_high']:.2f}]"


def _p(t: dict | None) -> str:
    if t is None:
        return "n/a"
    return "<0.001" if t["p"] < 0.001 else f"{t['p']:.3f}"
