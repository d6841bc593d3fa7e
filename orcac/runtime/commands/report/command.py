"""`orcac report`: one self-contained HTML page about a build, written next to its database.

    orcac report cautious.orca            # -> .orca/cautious.report.html, opens from disk

What a user asks after a build, each answered by one query over the DuckDB file:

  tasks      rows, calls, accepted / rejected by reason, yield, tokens, cost, teacher time
  teachers   calls, retries, failures by reason
  records    what the teacher was shown (every message of the job: strategy instruction,
             demonstrations, prompt) beside what the student is trained on (the erased
             system message and prompt) and the answer; rejected answers with their rule
  judges     per task and judge: answers judged, kept, below the threshold, unreadable, the
             mean score and how the scores spread over the scale, the judge's calls and cost;
             each sampled record carries its judgements (score and the judge's reasoning)
  probes     every candidate's score, tokens and cost, the chosen one marked
  training   loss per step, one curve per stage (inline SVG)
  eval       every arm that was run (base, prompted, trained, ...) per task, the gap closed, table and chart;
             each rate with its 95% interval, trained against base's paired p, and a line where n
             is too small to tell them apart (orcac/stats.py)

A 100,000-record build must open in seconds, so the page carries every count but only a
deterministic sample of the records themselves: up to `sample` per task and verdict (the
first by md5 of the item id, so the same database gives the same page byte for byte).

Text from outside (prompts, answers, error messages, even task names) never reaches the page
as markup: tables go through Jinja with autoescape, and the records travel as JSON in a
`<script type="application/json">` block (Jinja's `tojson` escapes `<`, `>`, `&` and `'`),
which the page's script turns into DOM nodes with `textContent` only. No network, no CDN:
styles, script and charts are inline.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from orcac.errors import OrcacError
from orcac.runtime.answers import judges as build_judges
from orcac.runtime.answers.checks import ECHO
from orcac.runtime.answers.given import INSTRUCTION
from orcac.runtime.charts import loss_chart
from orcac.runtime.context import RunContext
from orcac.runtime.results.evaluation import ARMS, benchmark_results, benchmark_table, evaluation
from orcac.runtime.store import evaluations, reports
from orcac.runtime.store.database import Store
from orcac.runtime.store.queries import echoed_records, table_names
from orcac.specs.plan import CheckRule, Plan
from orcac.stats import wilson

SAMPLE = 100  # records per (task, verdict) carried in the page
BUILT_IN_RULES = {
    "truncated": "the answer was cut off at max_tokens (finish_reason = length); allow_truncated = true keeps it",
    "empty": "the answer has no text",
    INSTRUCTION: "an answer from the source whose prompt or answer repeats its row's own system message, which erasure removes",
    ECHO: 'no_echo: the answer points at a prompt the student never sees ("as instructed", "following the example above")',
}


def command(context: RunContext, args) -> int:
    from orcac.specs.plan import spec_stem

    plan, database = context.plan, context.db
    output = Path(args.output) if args.output else database.with_name(f"{spec_stem(plan.spec)}.report.html")
    if not database.is_file():
        raise OrcacError(f"no build database at {database}", hint=f"run `orcac build {args.spec}` first (or pass --db)")
    sample = args.sample if args.sample is not None else SAMPLE
    if sample < 0:
        raise OrcacError(
            f"--sample {sample}: must be 0 or more", hint="pass the number of records per task and verdict"
        )
    with Store.open(database, read_only=True) as store:
        report = gather(plan, store, sample=sample)
    report["database"] = database.name
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(report), encoding="utf-8")
    print(output)
    return 0


# ---- gathering --------------------------------------------------------------------------


def gather(plan: Plan, store: Store, *, sample: int = SAMPLE) -> dict:
    """Everything the page shows, as plain data (the template only lays it out)."""
    tables = table_names(store)
    return {
        "spec": plan.spec,
        "builds": _builds(store) if "runs" in tables else [],
        "tasks": _tasks(plan, store),
        "teachers": _teachers(plan, store),
        "judges": _judges(plan, store) if "judgements" in tables else [],
        "records": _records(plan, store, sample, judgements="judgements" in tables),
        "decisions": _decisions(plan, store) if "decisions" in tables else [],
        "training": _training(store) if {"train_runs", "train_steps"} <= tables else None,
        "evaluation": evaluation(store, judged="eval_judgements" in tables) if "eval_runs" in tables else None,
        "benchmarks": benchmark_table(benchmark_results(store)) if "eval_benchmarks" in tables else None,
        "echoes": echoed_records(store),
        "followed": _followed(plan, store) if "eval_answers" in tables else None,
    }


def _followed(plan: Plan, store: Store) -> dict | None:
    """The latest eval run of each arm: per task and arm, how many answers follow each
    strategy's form ("none", "several"); None before the first eval that stored it."""
    rows = evaluations.latest_follows(store)
    if not rows:
        return None
    named = sorted(
        {f for _, _, f, _ in rows} - {"none", "several"} | {n for n, s in plan.strategies.items() if s.adherence}
    )
    columns_shown = [*named, "none", "several"]
    arms = [a for a in ARMS if a in {m for _, m, _, _ in rows}] + sorted({m for _, m, _, _ in rows} - set(ARMS))
    cells: dict[tuple[str, str], dict[str, int]] = {}
    for task, model, follows, n in rows:
        cells.setdefault((task, model), dict.fromkeys(columns_shown, 0))[follows] = n
    table = []
    for task in sorted({t for t, _, _, _ in rows}):
        own = plan.tasks[task].strategy if task in plan.tasks else None
        for arm in arms:
            if (task, arm) in cells:
                counts = cells[(task, arm)]
                table.append(
                    {
                        "task": task,
                        "arm": arm,
                        "own": own,
                        "n": sum(counts.values()),
                        "counts": [counts[c] for c in columns_shown],
                    }
                )
    return {"columns": columns_shown, "rows": table}


def _builds(store: Store) -> list[dict]:
    rows = reports.builds(store)
    return [dict(zip(("started", "status", "calls", "cost", "seconds"), r)) for r in rows]


def rule_text(rule: CheckRule) -> str:
    """A check as the spec writes it, e.g. `contains(gold)`, `regex("^Answer:")`."""
    if rule.kind == "regex":
        return f"regex({json.dumps(rule.pattern)})"
    if rule.kind == "numeric" and rule.tolerance is not None:
        return f"numeric(gold, tolerance = {rule.tolerance:g})"
    if rule.kind in ("nonempty", "no_echo"):
        return f"{rule.kind}()"
    if rule.kind == "judged":
        return f"judged({rule.judge.name})"
    return f"{rule.kind}(gold)"


def _rules(plan: Plan, task: str) -> dict[str, str]:
    """reason -> the rule that gives it (a verdict's reason is the failing rule's kind)."""
    rules = dict(BUILT_IN_RULES)
    if task in plan.tasks:
        for rule in plan.tasks[task].accept:
            rules.setdefault(rule.kind, rule_text(rule))
    return rules


def _tasks(plan: Plan, store: Store) -> list[dict]:
    examples = defaultdict(dict)
    for task, split, probe, n in reports.example_counts(store):
        examples[task][split] = examples[task].get(split, 0) + n
        if probe:  # probe rows are train rows too (sent to the teacher), counted again here
            examples[task]["probe"] = examples[task].get("probe", 0) + n
    verdicts = defaultdict(lambda: {"accepted": 0, "rejected": {}})
    for task, accepted, reason, n in reports.verdict_counts(store):
        if accepted:
            verdicts[task]["accepted"] += n
        else:  # a judge's rejections by threshold, not by score (the judges table has the scores)
            reason = build_judges.grouped_reason(reason)
            verdicts[task]["rejected"][reason] = verdicts[task]["rejected"].get(reason, 0) + n
    calls = reports.task_calls(store)
    records = reports.record_counts(store)
    names = sorted(set(plan.tasks) | set(examples) | set(verdicts) | set(calls))
    out = []
    for name in names:
        task = plan.tasks.get(name)
        v = verdicts[name]
        answered, failed, prompt_tokens, completion_tokens, cost, seconds, reused = calls.get(
            name, (0, 0, 0, 0, 0.0, 0.0, 0)
        )
        checked = v["accepted"] + sum(v["rejected"].values())
        rules = _rules(plan, name)
        out.append(
            {
                "name": name,
                "in_plan": task is not None,
                "strategy": task.strategy if task else None,
                "given": task.given if task else False,
                "erase": task.erase if task else None,
                "teacher": task.teacher if task else None,
                "source_rows": task.source.rows if task else None,
                "examples": examples.get(name, {}),
                "calls": answered,
                "reused": reused,
                "failed": failed,
                "accepted": v["accepted"],
                "rejected": [
                    {"reason": reason, "count": n, "rule": rules.get(reason)}
                    for reason, n in sorted(v["rejected"].items(), key=lambda kv: (-kv[1], kv[0]))
                ],
                "checked": checked,
                "yield": v["accepted"] / checked if checked else None,
                "yield_interval": wilson(v["accepted"], checked),
                "records": records.get(name, 0),
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "cost": cost,
                "seconds": seconds,
            }
        )
    return out


def _teachers(plan: Plan, store: Store) -> list[dict]:
    totals = reports.teacher_totals(store)
    failures = defaultdict(dict)
    for teacher, reason, n in reports.teacher_failures(store):
        failures[teacher][reason] = n
    out = []
    for name in sorted(set(plan.teachers) | set(totals)):
        model, calls, retries, failed, prompt_tokens, completion_tokens, cost, latency = totals.get(
            name, (plan.teachers[name].model if name in plan.teachers else None, 0, 0, 0, 0, 0, 0.0, None)
        )
        out.append(
            {
                "name": name,
                "model": model,
                "calls": calls,
                "retries": retries,
                "failed": failed,
                "failures": sorted(failures[name].items(), key=lambda kv: (-kv[1], kv[0])),
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "cost": cost,
                "latency": latency,
            }
        )
    return out


SCORE_BUCKETS = 10  # a scale wider than 20 whole points is drawn in this many equal bins


def _judges(plan: Plan, store: Store) -> list[dict]:
    """Per task and judge (from `judgements`, one row per judged answer): how many answers it
    judged, kept and turned down, its mean score, the scores' spread over its scale, and what
    its calls cost (its jobs are the task's jobs whose strategy is `judged(NAME)`)."""
    counts = reports.judge_counts(store)
    scores = defaultdict(list)
    for task, judge, score in reports.judge_scores(store):
        scores[(task, judge)].append(score)
    calls = reports.judge_calls(store)
    declared = {(name, r.judge.name): r.judge for name, task in plan.tasks.items() for r in build_judges.rules(task)}
    out = []
    for task, name, judged, kept, scored, mean, low, high in counts:
        judge = declared.get((task, name))
        answered, failed, cost = calls.get((task, name), (0, 0, 0.0))
        scale = (judge.min, judge.max) if judge else (low, high)  # a judge no longer declared: what it gave
        out.append(
            {
                "task": task,
                "judge": name,
                "in_plan": judge is not None,
                "teacher": judge.teacher if judge else None,
                "threshold": judge.threshold if judge else None,
                "judged": judged,
                "kept": kept,
                "unreadable": judged - scored,
                "below": scored - kept if judge else None,
                "mean": mean,
                "calls": answered,
                "failed": failed,
                "cost": cost,
                "spread": score_spread(scores[(task, name)], *scale, threshold=judge.threshold if judge else None),
            }
        )
    return out


def score_spread(
    scores: list[float], low: float, high: float, *, threshold: float | None = None, width: int = 220, height: int = 40
) -> dict:
    """Bars of how many scores fall in each bin of the scale: one bin per whole point on a
    scale of up to 20 points, else SCORE_BUCKETS equal bins; bins at or above the threshold
    are drawn as kept.

    >>> [b["count"] for b in score_spread([4, 9, 9, 10], 1, 10)["bars"]]
    [0, 0, 0, 1, 0, 0, 0, 0, 2, 1]
    """
    whole = float(low).is_integer() and float(high).is_integer() and high - low <= 20
    step = 1.0 if whole else (high - low) / SCORE_BUCKETS or 1.0
    bins = int(high - low) + 1 if whole else SCORE_BUCKETS
    edges = [(low + i * step, low + i * step if whole else low + (i + 1) * step) for i in range(bins)]
    counts = [0] * bins
    for score in scores:
        index = int(round(score - low)) if whole else int((score - low) / step)
        counts[min(max(index, 0), bins - 1)] += 1
    tallest, slot = max(counts) or 1, width / len(edges)
    bars = []
    for (start, end), n in zip(edges, counts):
        label = f"{start:g}" if whole else f"{start:.3g}-{end:.3g}"
        h = round((height - 12) * n / tallest, 1)
        bars.append(
            {
                "x": round(slot * len(bars) + 1, 1),
                "w": round(max(slot - 2, 1), 1),
                "y": round(height - 12 - h, 1),
                "h": h,
                "count": n,
                "label": label,
                "kept": threshold is not None and start >= threshold,
            }
        )
    return {"width": width, "height": height, "bars": bars, "low": f"{low:g}", "high": f"{high:g}"}


def _records(plan: Plan, store: Store, sample: int, *, judgements: bool = True) -> dict:
    """A sample per (task, verdict): checked answers (accepted, rejected) and failed jobs, each
    with its judgements (none for a task without a judge)."""
    rows = reports.record_sample(store, sample, judgements=judgements)
    items = []
    for item in rows:
        item["verdict"] = item.pop("accepted")  # the query's fourth column is the verdict word
        item["messages"] = json.loads(item["messages"]) if item["messages"] else []
        item["judgements"] = [
            # the reason without its `judged(NAME): ` prefix: the card names the judge already
            {**j, "reason": j["reason"].removeprefix(f"judged({j['judge']}): ")}
            for j in item["judgements"] or []
        ]
        if item["verdict"] == "rejected":
            item["rule"] = _rules(plan, item["task"]).get(item["reason"], item["reason"])
        items.append(item)
    totals = reports.record_totals(store)
    return {
        "answers": items,
        "total": sum(totals.values()),
        "groups": [
            {"task": t, "verdict": v, "total": n, "shown": min(n, sample)} for (t, v), n in sorted(totals.items())
        ],
        "sample": sample,
    }


def _decisions(plan: Plan, store: Store) -> list[dict]:
    rows = reports.decisions(store)
    out: dict[tuple[str, str], dict] = {}
    for task, key, strategy, chosen, score, passed, total, prompt_tokens, completion_tokens, cost in rows:
        current = task in plan.tasks and plan.tasks[task].probe is not None and plan.tasks[task].probe.key == key
        decision = out.setdefault((task, key), {"task": task, "key": key[:12], "current": current, "candidates": []})
        decision["candidates"].append(
            {
                "strategy": strategy,
                "chosen": chosen,
                "score": score,
                "passed": passed,
                "total": total,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "cost": cost,
            }
        )
    # The plan's current decision first, then earlier ones (history, kept by the probe).
    return sorted(out.values(), key=lambda d: (d["task"], not d["current"], d["key"]))


# ---- training and evaluation: numbers to SVG geometry -------------------------------------


def _training(store: Store) -> dict | None:
    latest = reports.latest_training(store)
    if latest is None:
        return None
    run_id, student, device, precision, status, final_loss, started = latest
    steps = reports.training_losses(store, run_id)
    stages: dict[int, dict] = {}
    for stage_index, stage, step, loss in steps:
        stages.setdefault(stage_index, {"name": stage, "points": []})["points"].append((step, loss))
    return {
        "student": student,
        "device": device,
        "precision": precision,
        "status": status,
        "final_loss": final_loss,
        "started": started,
        "stages": [
            {"name": s["name"], "steps": len(s["points"]), "first": s["points"][0][1], "last": s["points"][-1][1]}
            for _, s in sorted(stages.items())
        ],
        "chart": loss_chart([s for _, s in sorted(stages.items())]),
    }


def render(report: dict) -> str:
    """The page: Jinja with autoescape on for every value, StrictUndefined for every name."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = lambda n: "" if n is None else f"{n:,}"
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
    env.filters["points"] = lambda b: "" if b is None else f"[{100 * b[0]:.0f}-{100 * b[1]:.0f}]"
    env.filters["pvalue"] = lambda p: "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")
    env.filters["usd"] = lambda v: "" if v is None else f"${v:,.4f}"
    env.filters["secs"] = lambda v: "" if v is None else f"{v:,.1f} s"
    return env.get_template("report.html.j2").render(report=report)
