"""Plans and build databases made by hand, for the train and eval tests and the benchmark.

`make_plan` builds a Plan object directly (no compiler involved) whose student is the tiny
model; `write_records` creates the `records` (and `examples`) tables a build would leave,
with Orca-like rows: an arithmetic question, numbered steps, a final "Answer:" line.
"""

from __future__ import annotations

import random
from pathlib import Path

from orcac.runtime.context import RunContext
from orcac.specs.plan import (
    AdherenceRule,
    CheckRule,
    ErasePlan,
    Estimate,
    EvalPlan,
    LoraPlan,
    Plan,
    SourcePlan,
    SplitCounts,
    StagePlan,
    StrategyPlan,
    StudentPlan,
    TaskPlan,
    TeacherPlan,
    TrainPlan,
)

ERASE = "You are a cautious assistant. You carefully follow instructions."
STEPS_SYSTEM = 'Solve the problem step by step. Number each step. Finish with "Answer: <answer>".'
STEP_RULES = (
    AdherenceRule(kind="regex", pattern=r"^\s*1[.)]", description="numbered steps"),
    AdherenceRule(kind="regex", pattern=r"^Answer:", description="an Answer: line"),
)


def make_plan(
    student_model: str,
    *,
    tasks=("add", "mul"),
    stages=(("basics", ("add",), 1.0), ("reason", ("add", "mul"), 1.0)),
    max_length: int = 256,
    packing: bool = True,
    lr: float = 1e-3,
    batch_size: int = 2,
    grad_accum: int = 1,
    seed: int = 0,
    lora: bool = False,
    output: str = "out/student",
    max_new_tokens: int = 24,
) -> Plan:
    task_plans = {}
    for name in tasks:
        task_plans[name] = TaskPlan(
            name=name,
            source=SourcePlan(kind="jsonl", path=f"data/{name}.jsonl", sha256="0" * 64, columns=("q", "a"), rows=100),
            prompt="{{ q }}",
            gold="{{ a }}",
            teacher="t",
            erase="cautious",
            strategy="steps",
            system=STEPS_SYSTEM,
            accept=(CheckRule(kind="numeric"),),
            holdout=0.2,
            counts=SplitCounts(rows=100, sampled=100, holdout=20, probe=0, train=80),
        )
    return Plan(
        language=1,
        spec="test.orca",
        teachers={"t": TeacherPlan(name="t", model=student_model)},
        students={"s": StudentPlan(name="s", model=student_model)},
        strategies={"steps": StrategyPlan(name="steps", system=STEPS_SYSTEM, adherence=STEP_RULES, origin="test:1")},
        erase={"cautious": ErasePlan(name="cautious", system=ERASE, origin="test:2")},
        tasks=task_plans,
        train=TrainPlan(
            student="s",
            max_length=max_length,
            packing=packing,
            lr=lr,
            schedule="cosine",
            warmup_ratio=0.1,
            batch_size=batch_size,
            grad_accum=grad_accum,
            seed=seed,
            precision="fp32",
            lora=LoraPlan(r=4, alpha=8, dropout=0.0) if lora else None,
            output=output,
            stages=tuple(StagePlan(name=n, tasks=t, epochs=e, train_examples=80) for n, t, e in stages),
        ),
        eval=EvalPlan(max_new_tokens=max_new_tokens, batch_size=8),
        estimate=Estimate(calls=0, probe_calls=0, prompt_tokens=0, cost=None, tasks={}),
    )


def context(plan: Plan, root: Path, db: Path) -> RunContext:
    """What the CLI hands a runtime command, for a plan that was never written to a file."""
    return RunContext.of(plan, root / "test.plan.yaml", db=db)


def orca_rows(task: str, n: int, *, seed: int = 0, long_every: int = 5) -> list[dict]:
    """Orca-like (user, assistant, gold) rows with mixed lengths: a few long answers per batch."""
    rng = random.Random(f"{seed}-{task}")
    rows = []
    for i in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        op, result = ("+", a + b) if task != "mul" else ("*", a * b)
        steps = [f"{k}. We look at the numbers {a} and {b} again, carefully." for k in range(1, 2 + rng.randint(0, 2))]
        if i % long_every == 0:
            steps += [f"{k}. Checking the partial result once more, digit by digit." for k in range(len(steps) + 1, len(steps) + 12)]
        steps.append(f"{len(steps) + 1}. {a} {op} {b} = {result}.")
        rows.append(
            {
                "task": task,
                "id": i,
                "user": f"What is {a} {op} {b}?",
                "assistant": "\n".join(steps) + f"\nAnswer: {result}",
                "gold": str(result),
            }
        )
    return rows


def write_records(db_path: Path, rows: list[dict], *, holdout: list[dict] = ()) -> Path:
    """Create the build's tables (orcac.runtime.store.database.SCHEMA) with these records and held-out examples."""
    import pyarrow as pa

    from orcac.runtime.store.database import Store

    with Store.open(db_path) as store:
        if rows:
            store.write(
                {"records": pa.table(
                    {
                        "record_id": [f"{r['task']}-{r['id']}" for r in rows],
                        "task": [r["task"] for r in rows],
                        "strategy": ["steps"] * len(rows),
                        "split": ["train"] * len(rows),
                        "row_index": [r["id"] for r in rows],
                        "system": [ERASE] * len(rows),
                        "user": [r["user"] for r in rows],
                        "assistant": [r["assistant"] for r in rows],
                        "gold": [r["gold"] for r in rows],
                    }
                )},
            )
        if holdout:
            store.write(
                {"examples": pa.table(
                    {
                        "task": [r["task"] for r in holdout],
                        "row_index": [r["id"] for r in holdout],
                        "split": ["holdout"] * len(holdout),
                        "probe": [False] * len(holdout),
                        "prompt": [r["user"] for r in holdout],
                        "gold": [r["gold"] for r in holdout],
                    }
                )},
            )
    return db_path
