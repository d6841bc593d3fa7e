"""SFT against distillation on the demo, end to end: gap closed with intervals, and what each forgets.

    .venv/bin/python -m benchmarks.compare_objectives [--arms sft,distill] [--workdir DIR] [--probe-rows 64]
    .venv/bin/python -m benchmarks.compare_objectives --collect DIR [DIR ...]   # tables of arms already run

A copy of the demo (examples/cautious_reasoner: its spec, plan and data, whatever they hold
now) in a folder outside git (`--workdir`, else a fresh temporary one) is built once with its
local teacher (`orcac build`), then, from that one build and its records, trained once per arm
and evaluated (`orcac train`, `orcac eval`, each a process of its own, as a user runs them).
An arm is the demo's own train block with one change:

    sft          objective = sft (the demo as it is)
    distill      objective = distill, distill { teacher = smol  beta = 0.5 } (off-policy, GKD's JSD)
    distill_kl   the same with beta = 0 (the language's default): the forward KL(teacher || student),
                 whose gradient does not vanish where the student gives the teacher's token almost
                 no mass (the JSD's does)
    sft+distill  objective = "sft+distill", the same teacher
    on_policy    objective = distill, distill { teacher = smol  on_policy = 25% }

and its own `output`, so every arm's student stays beside the others and all share one
database: eval's prompted answers are asked once and reused (eval_calls), and each arm's eval
run is found by the trained student's path. The figures are read from eval's own tables
(eval_runs: each rate with its n and Wilson interval; eval_gaps: the gap closed with its
bootstrap interval; eval_paired: trained against base, exact McNemar), not recomputed.

The forgetting probe: the student's mean loss per answer token on rows it never trained on,
before training (base) and after each arm. The rows are the openorca_mix example's
(examples/openorca_mix/data/openorca.jsonl, the first `--probe-rows`): OpenOrca-shaped chat,
each under its own system message with its own written answer, a distribution the demo's
records do not hold. A rise in loss there is what the student unlearnt; the change from base
gets a paired bootstrap interval over rows.

A workdir that already holds a build is reused (`orcac build` finds every answer stored); an
arm whose student is already trained on its plan is not trained again (`orcac train` says so),
nor evaluated again when its eval run is stored; each probe loss is kept beside the student it
measures. Arms can run at the same time, each in a workdir of its own (a copy of one build);
`--collect` then prints their tables side by side without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "cautious_reasoner"
SPEC = "cautious.orca"
DB = Path(".orca") / "cautious.duckdb"  # the spec's default database, beside it
PROBE_ROWS = ROOT / "examples" / "openorca_mix" / "data" / "openorca.jsonl"

# arm -> the lines added at the top of the demo's train block (the teacher is the demo's `smol`)
ARMS: dict[str, str] = {
    "sft": "objective = sft",
    "distill": "objective = distill\n  distill { teacher = smol  beta = 0.5 }",
    "distill_kl": "objective = distill\n  distill { teacher = smol  beta = 0 }",
    "sft+distill": 'objective = "sft+distill"\n  distill { teacher = smol }',
    "on_policy": "objective = distill\n  distill { teacher = smol  on_policy = 25% }",
}
METRICS = ("accuracy", "adherence")
BOOTSTRAP_SAMPLES = 2000


# ---- the spec of one arm -----------------------------------------------------------------


def arm_output(arm: str) -> str:
    """Where an arm's student goes, relative to the spec (the demo's default output, suffixed)."""
    return f".orca/cautious/student-{re.sub(r'[^a-z0-9]+', '-', arm)}"


def arm_spec(text: str, arm: str) -> str:
    """The demo's spec with the arm's objective and output at the top of its train block."""
    train = re.search(r"(?m)^train \{\n", text)
    if train is None:
        raise SystemExit(f"{DEMO / SPEC} has no `train {{` block to change")
    lines = f'  {ARMS[arm]}\n  output = "{arm_output(arm)}"\n'
    return text[: train.end()] + lines + text[train.end() :]


# ---- running orcac -----------------------------------------------------------------------


def orcac(workdir: Path, *args: str, log) -> float:
    """Run one orcac command in `workdir` (stdout and stderr to `log`); its wall seconds."""
    log.write(f"\n$ orcac {' '.join(args)}\n")
    log.flush()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "orcac.cli", *args],
        cwd=workdir,
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"orcac {' '.join(args)} failed (exit {done.returncode}); see {log.name}")
    return seconds


# ---- eval's tables -----------------------------------------------------------------------


@dataclass
class ArmEval:
    """One eval run: rows of eval_runs (by model and task), eval_gaps and eval_paired (by task and metric)."""

    run_id: str
    rates: dict[tuple[str, str], dict] = field(default_factory=dict)
    gaps: dict[tuple[str, str], dict] = field(default_factory=dict)
    paired: dict[tuple[str, str], dict] = field(default_factory=dict)


def read_eval(con, trained_path: str) -> ArmEval | None:
    """The latest eval run whose trained arm is the student at `trained_path`, from eval's tables."""
    found = con.execute(
        "SELECT run_id FROM eval_runs WHERE model = 'trained' AND model_path = ? ORDER BY created_at DESC LIMIT 1",
        [trained_path],
    ).fetchone()
    if found is None:
        return None
    result = ArmEval(found[0])

    def dicts(sql: str) -> list[dict]:
        cursor = con.execute(sql, [result.run_id])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    for r in dicts("SELECT * FROM eval_runs WHERE run_id = ?"):
        result.rates[(r["model"], r["task"])] = r
    for g in dicts("SELECT * FROM eval_gaps WHERE run_id = ?"):
        result.gaps[(g["task"], g["metric"])] = g
    for p in dicts("SELECT * FROM eval_paired WHERE run_id = ?"):
        result.paired[(p["task"], p["metric"])] = p
    return result


def _rate(row: dict | None, metric: str) -> str:
    """A stored rate as eval prints it: percent, Wilson interval, n."""
    from orcac.stats import rate_text

    if row is None or row.get(f"{metric}_n") is None or row.get(metric) is None:
        return "n/a"
    n = row[f"{metric}_n"]
    return rate_text(round(row[metric] * n), n)


def _gap(g: dict | None) -> str:
    if g is None or g.get("gap_closed") is None:
        return "n/a"
    if g.get("gap_low") is None:
        return f"{g['gap_closed']:.2f}"
    return f"{g['gap_closed']:.2f} [{g['gap_low']:.2f}, {g['gap_high']:.2f}]"


def _p(p: dict | None) -> str:
    if p is None or p.get("p_value") is None:
        return "n/a"
    return "<0.001" if p["p_value"] < 0.001 else f"{p['p_value']:.3f}"


def comparison_table(evals: dict[str, ArmEval]) -> str:
    """A markdown table: per task and metric, base and prompted (from the first arm's run), then
    each arm's trained rate, gap closed and p. A line under it where another arm's run saw other
    base or prompted figures (they are the same models on the same rows, so they should not)."""
    arms = list(evals)
    first = evals[arms[0]]
    tasks = sorted({task for (_, task) in first.rates})
    header = ["task", "metric", "base", "prompted"]
    for arm in arms:
        header += [f"{arm}: trained", "gap closed", "p"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        for metric in METRICS:
            cells = [
                task,
                metric,
                _rate(first.rates.get(("base", task)), metric),
                _rate(first.rates.get(("prompted", task)), metric),
            ]
            for arm in arms:
                e = evals[arm]
                cells += [
                    _rate(e.rates.get(("trained", task)), metric),
                    _gap(e.gaps.get((task, metric))),
                    _p(e.paired.get((task, metric))),
                ]
            lines.append("| " + " | ".join(cells) + " |")
    for metric in METRICS:
        if any((("all", metric) in e.gaps) for e in evals.values()):
            cells = ["all", metric, "", ""]
            for arm in arms:
                cells += ["", _gap(evals[arm].gaps.get(("all", metric))), _p(evals[arm].paired.get(("all", metric)))]
            lines.append("| " + " | ".join(cells) + " |")
    for arm in arms[1:]:
        for model in ("base", "prompted"):
            differ = [
                t
                for t in tasks
                for m in METRICS
                if _rate(evals[arm].rates.get((model, t)), m) != _rate(first.rates.get((model, t)), m)
            ]
            if differ:
                lines.append(f"\nnote: {arm}'s eval run saw other {model} figures on {', '.join(sorted(set(differ)))}")
    return "\n".join(lines)


# ---- the forgetting probe ----------------------------------------------------------------


def probe_rows(count: int) -> list[dict]:
    """The first `count` OpenOrca-shaped rows: system message, question, written answer."""
    rows = []
    with PROBE_ROWS.open() as f:
        for line in f:
            row = json.loads(line)
            rows.append({"system": row["system_prompt"], "user": row["question"], "assistant": row["response"]})
            if len(rows) == count:
                break
    return rows


def row_losses(model, tokenizer, rows: list[dict], max_length: int) -> list[float]:
    """Each row's mean cross-entropy per answer token (labels as training encodes them)."""
    import torch

    from orcac.runtime.models import chat_format

    losses = []
    with torch.no_grad():
        for row in rows:
            e = chat_format.encode(tokenizer, row["system"], row["user"], row["assistant"], max_length=max_length)
            ids = torch.tensor([e.input_ids], device=model.device)
            labels = torch.tensor([e.labels], device=model.device)
            logits = model(input_ids=ids).logits[:, :-1].float()
            losses.append(
                torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=chat_format.IGNORE
                ).item()
            )
    return losses


def paired_change(before: list[float], after: list[float], *, seed: int = 0) -> tuple[float, float, float]:
    """Mean of after - before over rows, with a seeded percentile bootstrap 95% interval."""
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(BOOTSTRAP_SAMPLES))
    return sum(diffs) / len(diffs), means[int(0.025 * BOOTSTRAP_SAMPLES)], means[int(0.975 * BOOTSTRAP_SAMPLES) - 1]


def forgetting_table(losses: dict[str, list[float]]) -> str:
    """A markdown table: each model's mean probe loss, and its change from base with an interval."""
    base = losses["base"]
    lines = ["| student | probe loss (mean per row) | change from base [95% CI] |", "|---|---|---|"]
    for name, values in losses.items():
        change = "" if name == "base" else "{:+.3f} [{:+.3f}, {:+.3f}]".format(*paired_change(base, values))
        lines.append(f"| {name} | {sum(values) / len(values):.3f} | {change} |")
    return "\n".join(lines)


def probe(where: dict[str, Path], count: int) -> dict[str, list[float]]:
    """Per-row probe losses of the base student and of each arm's (`where`: arm -> its workdir),
    each loaded as eval loads it, under the plan it was trained on."""
    from orcac.runtime.commands.evaluate.command import _device, load_model
    from orcac.specs.plan_file import read_plan

    rows = probe_rows(count)
    first = next(iter(where))
    out = {}
    for name, arm in [("base", first), *((arm, arm) for arm in where)]:
        # kept beside the student it measures (a --collect after a slow run computes each once)
        kept = where[arm] / (f"probe-base-{count}.json" if name == "base" else f"{arm_output(arm)}/probe-{count}.json")
        if kept.is_file() and kept.stat().st_mtime_ns > (trained_at(where[arm], arm) or 0):
            out[name] = json.loads(kept.read_text())
            continue
        plan = read_plan(final_dir(where[arm], arm) / "plan.yaml")
        model, tokenizer, _, chosen = load_model("base" if name == "base" else "trained", plan, where[arm])
        with chosen.running(_device()):  # as eval runs the student
            out[name] = row_losses(model, tokenizer, rows, plan.train.max_length)
        kept.write_text(json.dumps(out[name]))
        del model
    return out


# ---- one arm's results -------------------------------------------------------------------


def final_dir(workdir: Path, arm: str) -> Path:
    from orcac.runtime.training.layout import FINAL_DIR

    return workdir / arm_output(arm) / FINAL_DIR


def trained_at(workdir: Path, arm: str) -> int | None:
    """When the arm's student was last written (None: not trained yet)."""
    mark = final_dir(workdir, arm) / "plan.sha256"
    return mark.stat().st_mtime_ns if mark.is_file() else None


def evaluated(workdir: Path, arm: str) -> bool:
    """Whether an eval run of the arm's student is stored (a rerun of this benchmark reads it)."""
    return (workdir / DB).is_file() and arm_results(workdir, arm)[0] is not None


def arm_results(workdir: Path, arm: str) -> tuple[ArmEval | None, list[StageCost]]:
    """The arm's eval run, and what each stage of its last finished training run cost."""
    from orcac.runtime.store.database import open_database

    con = open_database(workdir / DB, read_only=True)
    try:
        found = read_eval(con, str(final_dir(workdir, arm)))
        costs = training_cost(con, arm_output(arm))
    finally:
        con.close()
    return found, costs


@dataclass(frozen=True)
class StageCost:
    """One stage of a training run, from train_steps: its steps, epochs, the student's tokens
    (a distill step counts its pairs' student tokens, not the padding or the teacher's), and
    the stage's elapsed seconds at its last step."""

    stage: str
    steps: int
    epochs: float
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def seconds_an_epoch(self) -> float:
        return self.seconds / self.epochs if self.epochs else 0.0


def training_cost(con, output: str) -> list[StageCost]:
    """Each stage of the last finished training run written to `output`, in order."""
    rows = con.execute(
        "SELECT stage, count(*), max(epoch), sum(tokens), max(elapsed_s) FROM train_steps "
        "WHERE run_id = (SELECT run_id FROM train_runs WHERE output = ? AND status = 'finished' "
        "ORDER BY ended_at DESC LIMIT 1) GROUP BY stage_index, stage ORDER BY stage_index",
        [output],
    ).fetchall()
    return [
        StageCost(stage, steps, epochs or 0.0, tokens or 0, seconds or 0.0)
        for stage, steps, epochs, tokens, seconds in rows
    ]


def cost_table(results: dict[str, tuple[ArmEval, list[StageCost]]]) -> str:
    """A markdown table: per arm and stage, steps, epochs, tokens, seconds, tokens/s, s an epoch."""
    lines = [
        "| arm | stage | steps | epochs | student tokens | train s (train_steps) | tokens/s | s an epoch | eval run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, (found, costs) in results.items():
        for c in costs:
            lines.append(
                f"| {arm} | {c.stage} | {c.steps} | {c.epochs:g} | {c.tokens:,} | {c.seconds:.0f} | "
                f"{c.tokens_per_s:.1f} | {c.seconds_an_epoch:.0f} | {found.run_id} |"
            )
        total_tokens, total_s = sum(c.tokens for c in costs), sum(c.seconds for c in costs)
        lines.append(
            f"| {arm} | all | {sum(c.steps for c in costs)} | | {total_tokens:,} | {total_s:.0f} | "
            f"{total_tokens / total_s if total_s else 0:.1f} | | {found.run_id} |"
        )
    return "\n".join(lines)


# ---- the run -----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default="sft,distill", help=f"comma-separated, of: {', '.join(ARMS)}")
    parser.add_argument(
        "--workdir", type=Path, help="the demo's copy (default: a new temporary folder); reused if it holds a build"
    )
    parser.add_argument(
        "--probe-rows", type=int, default=64, help="forgetting-probe rows from openorca_mix (0: no probe)"
    )
    parser.add_argument("--max-steps", type=int, help="cap each training stage (smoke runs)")
    parser.add_argument(
        "--collect",
        type=Path,
        nargs="+",
        metavar="WORKDIR",
        help="run nothing: the tables of the arms already trained and evaluated in these workdirs "
        "(arms run at the same time, each in a workdir of its own)",
    )
    args = parser.parse_args()
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if args.collect:
        where = {arm: d.resolve() for d in args.collect for arm in ARMS if evaluated(d.resolve(), arm)}
        if not where:
            parser.error("no trained and evaluated arm in " + ", ".join(map(str, args.collect)))
    else:
        workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="orcac-objectives-"))).resolve()
        run_arms(workdir, arms, args.max_steps)
        where = {arm: workdir for arm in arms}
    print_tables(where, args.probe_rows)
    return 0


def run_arms(workdir: Path, arms: list[str], max_steps: int | None) -> None:
    """Build the demo's copy in `workdir` once, then train and evaluate each arm there."""
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "data").is_dir():
        shutil.copytree(DEMO / "data", workdir / "data")
    shutil.copy(DEMO / "cautious.plan.yaml", workdir / "cautious.plan.yaml")
    demo_text = (DEMO / SPEC).read_text()
    (workdir / SPEC).write_text(demo_text)
    log = (workdir / "compare.log").open("a")
    print(f"workdir {workdir}; log {log.name}; load average {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    print(f"build: {orcac(workdir, 'build', SPEC, '--no-progress', log=log):.0f} s", file=sys.stderr, flush=True)
    for arm in arms:
        (workdir / SPEC).write_text(arm_spec(demo_text, arm))
        train = ["train", SPEC] + (["--max-steps", str(max_steps)] if max_steps else [])
        before = trained_at(workdir, arm)
        train_s = orcac(workdir, *train, log=log)
        if before is not None and before == trained_at(workdir, arm) and evaluated(workdir, arm):
            eval_s = 0.0  # the same student as before, already evaluated: its run is read below
        else:
            eval_s = orcac(workdir, "eval", SPEC, log=log)
        print(
            f"{arm}: train {train_s:.0f} s, eval {eval_s:.0f} s, load average {os.getloadavg()[0]:.1f}",
            file=sys.stderr,
            flush=True,
        )
    (workdir / SPEC).write_text(demo_text)


def print_tables(where: dict[str, Path], probe_count: int) -> None:
    """The side-by-side table, the forgetting probe and each arm's training cost (`where`: arm -> workdir)."""
    results = {arm: arm_results(workdir, arm) for arm, workdir in where.items()}
    missing = [arm for arm, (found, _) in results.items() if found is None]
    if missing:
        raise SystemExit(f"no eval run found for {', '.join(missing)}; see compare.log in its workdir")
    print(comparison_table({arm: found for arm, (found, _) in results.items()}))
    print("\n" + cost_table(results), flush=True)
    if probe_count:
        losses = probe(where, probe_count)
        print(
            f"\nforgetting probe: {probe_count} rows of {PROBE_ROWS.relative_to(ROOT)} (never trained on), "
            "mean cross-entropy per answer token\n"
        )
        print(forgetting_table(losses))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
