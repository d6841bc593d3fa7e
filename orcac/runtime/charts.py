"""The two charts, loss per step and scores per task and arm, in the two forms they are drawn:

PNG   beside `orcac train`'s and `orcac eval`'s output (matplotlib with the Agg backend: no
      display needed, the same bytes on every machine)
SVG   geometry for the report's inline charts (the page's template draws it: no script, no network)
"""

from __future__ import annotations

from pathlib import Path

from orcac.stats import wilson


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curve(steps: list[tuple], path: Path, *, title: str = "training loss") -> Path:
    """Draw (stage_index, stage, step, loss) rows as one line over all stages, stages shaded."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    offset, x, y, bounds = 0, [], [], []
    for stage_index in sorted({row[0] for row in steps}):
        rows = [r for r in steps if r[0] == stage_index]
        start = offset
        for _, _, step, loss in rows:
            x.append(offset + step)
            y.append(loss)
        offset += max(r[2] for r in rows)
        bounds.append((start, offset, rows[0][1]))
    ax.plot(x, y, color="tab:blue", linewidth=1.2, marker="." if len(x) <= 60 else None)
    for i, (start, end, name) in enumerate(bounds):
        if i % 2:
            ax.axvspan(start + 0.5, end + 0.5, color="0.93", zorder=0)
        ax.text(
            (start + end) / 2 + 0.5, 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=9
        )
    ax.set_xlabel("optimizer step (all stages)")
    ax.set_ylabel("loss (teacher tokens)")
    ax.set_title(title, pad=18)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def eval_bars(scores: list[dict], path: Path, *, title: str = "held-out evaluation", gaps=()) -> Path:
    """Grouped bars: per task, accuracy and adherence for each arm, each with its 95% Wilson
    interval as an error bar, and the gap closed (with its interval) written under each
    task's group when `gaps` (evaluate.gaps_closed) has it.

    `scores` rows have keys task, model, accuracy, adherence (shares in [0, 1]) and the counts
    behind them (evaluate.summarise: accepted of checked, adherent of adherence_n).
    """
    plt = _pyplot()
    tasks = list(dict.fromkeys(s["task"] for s in scores))
    models = list(dict.fromkeys(s["model"] for s in scores))
    by = {(s["task"], s["model"]): s for s in scores}
    colors = {"base": "tab:gray", "prompted": "tab:green", "trained": "tab:blue"}
    gap = {(g["task"], g["metric"]): g for g in gaps}
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(tasks) + 3), 4.5), dpi=100, sharey=True)
    width = 0.8 / max(1, len(models))
    for ax, metric in zip(axes, ("accuracy", "adherence"), strict=True):
        for m, model in enumerate(models):
            xs = [t + (m - (len(models) - 1) / 2) * width for t in range(len(tasks))]
            raw = [by[(task, model)].get(metric) if (task, model) in by else None for task in tasks]
            values = [0 if v is None else 100 * v for v in raw]
            bounds = [_bounds(by.get((task, model)), metric) for task in tasks]
            errors = [
                [0 if b is None else max(0.0, v - 100 * b[0]) for v, b in zip(values, bounds)],
                [0 if b is None else max(0.0, 100 * b[1] - v) for v, b in zip(values, bounds)],
            ]
            bars = ax.bar(
                xs,
                values,
                width,
                label=model,
                color=colors.get(model, f"C{m + 3}"),
                yerr=errors,
                ecolor="0.25",
                capsize=3,
                error_kw={"linewidth": 0.9},
            )
            ax.bar_label(bars, labels=["n/a" if v is None else f"{100 * v:.0f}" for v in raw], fontsize=8, padding=2)
        labels = [
            task if (task, metric) not in gap else f"{task}\ngap closed {_gap_text(gap[(task, metric)])}"
            for task in tasks
        ]
        ax.set_xticks(range(len(tasks)), labels, rotation=20 if len(tasks) > 3 else 0)
        ax.set_ylim(0, 115)  # room for a bar label above a 100% bar's error bar
        ax.set_title(f"{metric} (%)")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=9)
    fig.suptitle(title)
    fig.text(0.995, 0.005, "error bars: 95% intervals (Wilson)", ha="right", va="bottom", fontsize=7, color="0.4")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _bounds(row: dict | None, metric: str) -> tuple[float, float] | None:
    """A row's 95% Wilson interval for `metric`, from the counts behind it (None: n/a)."""
    if row is None or row.get(metric) is None:
        return None
    hits, n = (
        (row.get("accepted"), row.get("checked"))
        if metric == "accuracy"
        else (row.get("adherent"), row.get("adherence_n", row.get("examples")))
    )
    return None if hits is None or not n else wilson(hits, n)


def _gap_text(g: dict) -> str:
    if g["gap_closed"] is None:
        return "n/a"
    if g.get("gap_low") is None:
        return f"{g['gap_closed']:.2f}"
    # the interval on a line of its own: three tasks' labels side by side must not overlap
    return f"{g['gap_closed']:.2f}\n[{g['gap_low']:.2f}, {g['gap_high']:.2f}]"


# The report's SVG: geometry only, the template turns it into markup.

LOSS_POINTS = 400  # per stage: a 100,000-step run is drawn from an even subsample
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def loss_chart(stages: list[dict], *, width: int = 760, height: int = 260) -> dict:
    """One polyline per stage, laid end to end along the x axis (steps of all stages)."""
    left, right, top, bottom = 48, 12, 24, 28
    every = [loss for s in stages for _, loss in s["points"]]
    if not every:
        return {"width": width, "height": height, "lines": [], "ticks": []}
    low, high = min(every), max(every)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    total = sum(max(1, len(s["points"])) for s in stages)
    lines, offset = [], 0
    for i, stage in enumerate(stages):
        points = stage["points"]
        stride = max(1, len(points) // LOSS_POINTS)
        indices = list(range(0, len(points), stride))
        if indices[-1] != len(points) - 1:
            indices.append(len(points) - 1)
        coords = []
        for k in indices:
            x = left + (width - left - right) * ((offset + k) / max(1, total - 1))
            y = top + (height - top - bottom) * (1 - (points[k][1] - low) / (high - low))
            coords.append(f"{x:.1f},{y:.1f}")
        x0 = left + (width - left - right) * (offset / max(1, total - 1))
        lines.append(
            {
                "name": stage["name"],
                "color": COLORS[i % len(COLORS)],
                "points": " ".join(coords),
                "label_x": round(x0 + 4, 1),
            }
        )
        offset += len(points)
    ticks = [
        {"y": round(top + (height - top - bottom) * (1 - f), 1), "label": f"{low + f * (high - low):.3g}"}
        for f in (0.0, 0.5, 1.0)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "bottom": height - bottom,
        "lines": lines,
        "ticks": ticks,
    }


def eval_chart(arms: list[str], tasks: list[str], cells: dict, *, height: int = 240) -> dict:
    """Grouped bars: for each task and metric, one bar per arm (share in percent), with its
    95% interval as a whisker where the run stored one."""
    bar, gap, top, bottom, left = 16, 18, 20, 44, 36
    groups, x = [], left
    for task in tasks:
        for metric in ("accuracy", "adherence"):
            bars = []
            for i, arm in enumerate(arms):
                value = (cells.get((arm, task)) or {}).get(metric)
                h = 0 if value is None else (height - top - bottom) * value
                low, high = ((cells.get((arm, task)) or {}).get(f"{metric}_{end}") for end in ("low", "high"))
                whisker = (
                    None
                    if value is None or low is None
                    else {
                        "x": x + i * bar + 7,
                        "top": round(height - bottom - (height - top - bottom) * high, 1),
                        "bottom": round(height - bottom - (height - top - bottom) * low, 1),
                    }
                )
                bars.append(
                    {
                        "x": x + i * bar,
                        "y": round(height - bottom - h, 1),
                        "h": round(h, 1),
                        "color": COLORS[i % len(COLORS)],
                        "label": "n/a" if value is None else f"{100 * value:.0f}",
                        "arm": arm,
                        "whisker": whisker,
                        "label_y": round((height - bottom - h if whisker is None else whisker["top"]) - 3, 1),
                        "interval": "" if whisker is None else f" [{100 * low:.0f}-{100 * high:.0f}]",
                    }
                )
            groups.append({"task": task, "metric": metric, "bars": bars, "x": x + len(arms) * bar / 2})
            x += len(arms) * bar + gap
    return {
        "width": max(x + 8, 40 + 90 * len(arms)),
        "height": height,
        "groups": groups,
        "base": height - bottom,
        "top": top,
        "legend": [{"arm": arm, "color": COLORS[i % len(COLORS)]} for i, arm in enumerate(arms)],
    }


# ---- rendering --------------------------------------------------------------------------
