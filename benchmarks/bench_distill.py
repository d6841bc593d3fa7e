"""SFT against distillation (`objective = distill`) on the demo's data: tokens/s and wall time per epoch.

    .venv/bin/python -m benchmarks.bench_distill [--model local/smollm2-135m-instruct] [--steps 3] [--per-task 48]

The demo's plan (examples/cautious_reasoner/cautious.plan.yaml) with its train settings (batch
8, max_length 512, packing on), one stage over its three tasks, run by `orcac train`'s own
`run` for `--steps` optimizer steps with each objective, each in a process of its own: `sft` (cross-entropy on the packed
records), `distill` (the prompted teacher, the same model, run beside the student on the
strategy's system text and demonstrations; TRL's generalized JSD, beta 0.5) and `sft+distill`.
A step's time is the mean over the steps after the first; an epoch is the steps the stage
plans for these records times that. Tokens/s counts the student's record tokens of an epoch
(the same records for every objective) over that epoch's time: the teacher's tokens, which
distillation also computes, are not counted.

The records are the demo's prompts (its data files, its templates, the first `--per-task`
rows of each task) with answers written in each task's strategy form from the gold (`Answer:
<gold>`; numbered steps then that line for the step-by-step strategies): a build of the demo
needs the 135M teacher for minutes, and throughput depends on the records' lengths, not on
what the answers say. `--db` trains on a real build's records instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "cautious_reasoner"

from orcac.runtime.commands.train import command as train  # noqa: E402
from orcac.runtime.commands.train.trainer import encode_records  # noqa: E402
from orcac.runtime.context import RunContext  # noqa: E402
from orcac.sources.read import read, render_row  # noqa: E402
from orcac.specs.plan import DistillPlan, StagePlan  # noqa: E402
from orcac.specs.plan_file import read_plan  # noqa: E402
from tests.support.train_data import write_records  # noqa: E402

OBJECTIVES = ("sft", "distill", "sft+distill")


def demo_records(plan, per_task: int) -> list[dict]:
    """The first `per_task` rows of each task, prompts rendered, answers in the strategy's form."""
    records = []
    for name, task in plan.tasks.items():
        columns, rows = read(task.source.kind, task.source.path, task.source.split, task.source.query, DEMO)
        for index, row in enumerate(rows[:per_task]):
            row = row if isinstance(row, dict) else dict(zip(columns, row))
            gold = render_row(task.gold, row).strip()
            user = render_row(task.prompt, row)
            if task.strategy == "direct_answer":
                answer = f"Answer: {gold}"
            else:
                first = user.strip().split(". ")[0].strip().rstrip(".")
                answer = f"1. {first}.\n2. Work it out from what is given, one fact at a time.\nAnswer: {gold}"
            records.append({"task": name, "id": index, "user": user, "assistant": answer, "gold": gold})
    return records


def run_one(plan, objective: str, records: list[dict], steps: int, db_source: Path | None) -> dict:
    """Train `steps` steps with `objective`; (planned steps a stage, mean step seconds, record tokens)."""
    tp = plan.train
    update = {"objective": objective, "distill": None if objective == "sft" else DistillPlan(teacher="smol")}
    planned: list[int] = []
    original = train.planned_steps

    def spy(*args, **kwargs):  # the stage's steps for a whole epoch, before --max-steps caps them
        planned.append(original(*args, **kwargs))
        return planned[-1]

    with tempfile.TemporaryDirectory(prefix="bench-distill-") as scratch:
        root = Path(scratch)
        one_plan = plan.model_copy(update={"train": tp.model_copy(update={**update, "output": "out"})})
        if db_source is not None:
            db = root / "build.duckdb"
            db.write_bytes(db_source.read_bytes())
        else:
            db = write_records(root / "build.duckdb", records)
            import duckdb

            with duckdb.connect(str(db)) as con:  # each task's records under its chosen strategy
                for name, task in plan.tasks.items():
                    con.execute("UPDATE records SET strategy = ? WHERE task = ?", [task.strategy, name])
        train.planned_steps = spy
        started = time.perf_counter()
        try:
            with contextlib.redirect_stderr(open(os.devnull, "w")):
                train.run(RunContext.of(one_plan, root / "bench.plan.yaml", db=db), max_steps=steps)
        finally:
            train.planned_steps = original
        total = time.perf_counter() - started
        import duckdb

        con = duckdb.connect(str(db), read_only=True)
        logged = con.execute("SELECT elapsed_s, loss, grad_norm FROM train_steps ORDER BY step").fetchall()
        con.close()
    elapsed = [r[0] for r in logged]
    print(
        f"  {objective}: losses {[round(r[1], 4) for r in logged]}, grad norms {[round(r[2] or 0, 3) for r in logged]}, "
        f"step ends at {[round(e, 1) for e in elapsed]} s",
        file=sys.stderr,
        flush=True,
    )
    step_s = statistics.mean(b - a for a, b in zip(elapsed, elapsed[1:])) if len(elapsed) > 1 else elapsed[0]
    return {"planned": planned[0], "step_s": step_s, "total_s": total, "steps": len(elapsed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="local/smollm2-135m-instruct", help="student and teacher (a local/... model)"
    )
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per objective (the first is not timed)")
    parser.add_argument("--per-task", type=int, default=48, help="rows of each demo task (the demo's limit is 48)")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES))
    parser.add_argument("--db", type=Path, help="a build of the demo: train on its records")
    parser.add_argument("--one", choices=OBJECTIVES, help=argparse.SUPPRESS)  # the child process of one objective
    args = parser.parse_args()

    plan = read_plan(DEMO / "cautious.plan.yaml")
    student_model = (
        args.model.removeprefix("local/") if Path(args.model.removeprefix("local/")).is_dir() else args.model
    )
    teachers = {n: t.model_copy(update={"model": args.model}) for n, t in plan.teachers.items()}
    students = {n: s.model_copy(update={"model": student_model}) for n, s in plan.students.items()}
    stage = StagePlan(name="all", tasks=tuple(plan.tasks), epochs=1.0, train_examples=args.per_task * len(plan.tasks))
    plan = plan.model_copy(
        update={"teachers": teachers, "students": students, "train": plan.train.model_copy(update={"stages": (stage,)})}
    )
    records = demo_records(plan, args.per_task)

    from orcac.runtime.models import chat_format, loading

    tokenizer = loading.load_tokenizer(student_model, ROOT)
    chat_format.prepare_tokenizer(tokenizer, plan.students["smol"].chat_template)
    tokens = sum(len(e.input_ids) for e in encode_records(tokenizer, plan, records, plan.train.max_length))

    import torch

    if not args.one:
        print(
            f"demo records: {len(records)} ({args.per_task} a task), {tokens} student tokens an epoch; "
            f"model {args.model}; batch {plan.train.batch_size}, max_length {plan.train.max_length}; "
            f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}"
        )
        print(f"{'objective':<12} {'steps/epoch':>11} {'s/step':>8} {'epoch s':>9} {'tokens/s':>9}")
    if args.one:  # a child process: one objective, its result as JSON on the last line
        print(json.dumps(run_one(plan, args.one, records, args.steps, args.db)))
        return 0
    results = {}
    for objective in args.objectives.split(","):
        # Each objective in a fresh process: measured, the second run in one process took up
        # to 6x longer a step than the same run alone (whichever objective it was).
        child = [sys.executable, "-m", "benchmarks.bench_distill", "--one", objective, *sys.argv[1:]]
        done = subprocess.run(child, cwd=ROOT, capture_output=True, text=True, check=True)
        sys.stderr.write("\n".join(line for line in done.stderr.splitlines() if line.startswith("  ")) + "\n")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        epoch_s = r["planned"] * r["step_s"]
        results[objective] = epoch_s
        print(
            f"{objective:<12} {r['planned']:>11} {r['step_s']:>8.2f} {epoch_s:>9.1f} {tokens / epoch_s:>9.0f}",
            flush=True,
        )
    if "sft" in results and "distill" in results:
        print(f"distill / sft, wall time per epoch: {results['distill'] / results['sft']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
