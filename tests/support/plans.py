"""Plans built by hand (no compiler), for the runtime tests and the benchmarks: one builder.

    make_plan(root)                     # a build: root/data.jsonl (20 sums), one teacher, task `arith`
    make_plan(root, rows, n=..., holdout=..., teacher=..., accept=..., probe_size=...)
    train_plan(str(tiny))               # train and eval: tasks add and mul, stages, the student

`make_plan` is the builder; `train_plan` is `make_plan` with the settings the train and eval
tests share (the tiny model as teacher and student, numbered steps as the strategy, a train
block). Records for such a plan come from tests/support/train_data.py (`write_records`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from orcac.runtime.answers.source_rows import source_sha256
from orcac.runtime.context import RunContext
from orcac.sampling import split_sizes
from orcac.specs.plan import (
    AdherenceRule,
    CheckRule,
    ErasePlan,
    Estimate,
    EvalPlan,
    LoraPlan,
    Plan,
    ProbePlan,
    SourcePlan,
    SplitCounts,
    StagePlan,
    StrategyPlan,
    StudentPlan,
    TaskEstimate,
    TaskPlan,
    TeacherPlan,
    TrainPlan,
)

ERASE = "You are a cautious assistant. You carefully follow instructions."
STEP_BY_STEP = (
    "You are a careful tutor. Think through the problem step by step before you answer. "
    "Finish with a line of the form 'Answer: <number>'."
)
STEPS_SYSTEM = 'Solve the problem step by step. Number each step. Finish with "Answer: <answer>".'
STEP_RULES = (
    AdherenceRule(kind="regex", pattern=r"^\s*1[.)]", description="numbered steps"),
    AdherenceRule(kind="regex", pattern=r"^Answer:", description="an Answer: line"),
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def arithmetic_rows(n: int) -> list[dict]:
    return [{"q": f"What is {i} plus {i + 1}?", "a": str(2 * i + 1)} for i in range(n)]


def make_plan(
    root: Path | None = None,
    rows: list[dict] | None = None,
    *,
    n: int = 20,
    tasks: tuple[str, ...] = ("arith",),
    holdout: float = 0.2,
    limit: int | None = None,
    accept: tuple[CheckRule, ...] = (CheckRule(kind="contains"),),
    teacher: TeacherPlan | None = None,
    strategy: str = "step",
    strategy_text: str = STEP_BY_STEP,
    adherence: tuple[AdherenceRule, ...] = (),
    prompt: str = "{{ q }}",
    gold: str | None = "{{ a }}",
    decided: bool = True,
    probe_size: int = 0,
    spec: str = "spec.orca",
    student: str | None = None,
    train: TrainPlan | None = None,
    eval: EvalPlan | None = None,
) -> Plan:
    """A plan of `tasks`, each the same prompt over one source, answered by `teacher`.

    With `root`: `rows` (default: `n` arithmetic questions) are written to root/data.jsonl,
    the source of every task, hashed as the runtime checks it. Without: each task names
    data/<task>.jsonl of `n` rows, never written (train and eval read the database instead).
    `decided=False` leaves the strategy to a probe of `probe_size` rows. `student` (a model)
    with `train` and `eval` adds what `orcac train` and `orcac eval` read.
    """
    if root is not None:
        rows = arithmetic_rows(n) if rows is None else rows
        n = len(rows)
        write_jsonl(root / "data.jsonl", rows)
    teacher = teacher or TeacherPlan(name="t", model="openai/loopback", api_base="http://127.0.0.1:9/v1")
    sampled, n_holdout, n_probe, n_train = split_sizes(n, limit=limit, holdout=holdout, probe=probe_size)
    task_plans = {}
    for name in tasks:
        source = SourcePlan(
            kind="jsonl",
            path="data.jsonl" if root is not None else f"data/{name}.jsonl",
            sha256="0" * 64,
            columns=("q", "a"),
            rows=n,
        )
        if root is not None:
            source = source.model_copy(update={"sha256": source_sha256(source, root)})
        task_plans[name] = TaskPlan(
            name=name,
            source=source,
            prompt=prompt,
            gold=gold,
            teacher=teacher.name,
            erase="cautious",
            strategy=strategy if decided else None,
            system=strategy_text if decided else None,
            accept=accept,
            limit=limit,
            holdout=holdout,
            probe=ProbePlan(candidates=(strategy,), size=probe_size, key="k") if probe_size else None,
            counts=SplitCounts(rows=n, sampled=sampled, holdout=n_holdout, probe=n_probe, train=n_train),
        )
    return Plan(
        language=1,
        spec=spec,
        teachers={teacher.name: teacher},
        students={"s": StudentPlan(name="s", model=student)} if student else {},
        strategies={strategy: StrategyPlan(name=strategy, system=strategy_text, adherence=adherence, origin="test:1")},
        erase={"cautious": ErasePlan(name="cautious", system=ERASE, origin="test:2")},
        tasks=task_plans,
        train=train,
        eval=eval if eval is not None else EvalPlan(),
        estimate=Estimate(
            calls=n_train * len(tasks),
            probe_calls=0,
            prompt_tokens=100 * n_train * len(tasks),
            cost=0.001 * n_train * len(tasks),
            tasks={
                name: TaskEstimate(calls=n_train, probe_calls=0, prompt_tokens=100 * n_train, cost=0.001 * n_train)
                for name in tasks
            },
        ),
    )


def train_plan(
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
    """`make_plan` for `orcac train` and `orcac eval`: `student_model` teaches and learns; the
    strategy is numbered steps and an "Answer:" line (STEP_RULES); `stages` are (name, tasks, epochs)."""
    return make_plan(
        n=100,
        tasks=tasks,
        holdout=0.2,
        accept=(CheckRule(kind="numeric"),),
        teacher=TeacherPlan(name="t", model=student_model),
        strategy="steps",
        strategy_text=STEPS_SYSTEM,
        adherence=STEP_RULES,
        spec="test.orca",
        student=student_model,
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
    )


def context(plan: Plan, root: Path, db: Path) -> RunContext:
    """What the CLI hands a runtime command, for a plan that was never written to a file."""
    return RunContext.of(plan, root / "test.plan.yaml", db=db)


def write_plan(root: Path, plan: Plan, name: str = "spec.plan.yaml") -> Path:
    from orcac.compiler import write_plan as write

    write(plan, root / name)
    return root / name


def arith_answer(body: dict) -> str:
    """A loopback responder that solves 'What is X plus Y?' step by step."""
    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    match = re.search(r"What is (\d+) plus (\d+)\?", user)
    if not match:
        return "I do not know."
    x, y = int(match.group(1)), int(match.group(2))
    return f"First take {x}, then add {y}.\nAnswer: {x + y}"


def seeded_answer(body: dict) -> str:
    """Right for every seed, worded one of three ways by the seed; wrong when seed % 4 == 3."""
    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    x, y = map(int, re.search(r"What is (\d+) plus (\d+)\?", user).groups())
    seed = body.get("seed")
    if seed is None:
        return f"Answer: {x + y}"
    if seed % 4 == 3:
        return f"Answer: {x + y + 1}"
    return ["Answer: {}", "So it is {}.\nAnswer: {}", "Adding gives {}.\nAnswer: {}"][seed % 3].format(x + y, x + y)
