"""Plans built directly (no compiler) for runtime tests: a jsonl source, one teacher, one task."""

from __future__ import annotations

import json
from pathlib import Path

from orcac.runtime.build.source_rows import source_sha256
from orcac.sampling import split_sizes
from orcac.specs.plan import (
    CheckRule,
    ErasePlan,
    Estimate,
    Plan,
    ProbePlan,
    SourcePlan,
    SplitCounts,
    StrategyPlan,
    TaskEstimate,
    TaskPlan,
    TeacherPlan,
)

STEP_BY_STEP = (
    "You are a careful tutor. Think through the problem step by step before you answer. "
    "Finish with a line of the form 'Answer: <number>'."
)
ERASE = "You are a cautious assistant. You carefully follow instructions."


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def arithmetic_rows(n: int) -> list[dict]:
    return [{"q": f"What is {i} plus {i + 1}?", "a": str(2 * i + 1)} for i in range(n)]


def make_plan(
    root: Path,
    rows: list[dict] | None = None,
    *,
    n: int = 20,
    tasks: tuple[str, ...] = ("arith",),
    holdout: float = 0.2,
    limit: int | None = None,
    accept: tuple[CheckRule, ...] = (CheckRule(kind="contains"),),
    teacher: TeacherPlan | None = None,
    strategy_text: str = STEP_BY_STEP,
    prompt: str = "{{ q }}",
    gold: str | None = "{{ a }}",
    decided: bool = True,
    probe_size: int = 0,
) -> Plan:
    rows = arithmetic_rows(n) if rows is None else rows
    write_jsonl(root / "data.jsonl", rows)
    source = SourcePlan(kind="jsonl", path="data.jsonl", sha256="0" * 64, columns=("q", "a"), rows=len(rows))
    source = source.model_copy(update={"sha256": source_sha256(source, root)})
    teacher = teacher or TeacherPlan(name="t", model="openai/loopback", api_base="http://127.0.0.1:9/v1")
    sampled, n_holdout, n_probe, n_train = split_sizes(len(rows), limit=limit, holdout=holdout, probe=probe_size)
    task_plans = {}
    for name in tasks:
        task_plans[name] = TaskPlan(
            name=name,
            source=source,
            prompt=prompt,
            gold=gold,
            teacher=teacher.name,
            erase="cautious",
            strategy="step" if decided else None,
            system=strategy_text if decided else None,
            accept=accept,
            limit=limit,
            holdout=holdout,
            probe=ProbePlan(candidates=("step",), size=probe_size, key="k") if probe_size else None,
            counts=SplitCounts(rows=len(rows), sampled=sampled, holdout=n_holdout, probe=n_probe, train=n_train),
        )
    return Plan(
        language=1,
        spec="spec.orca",
        teachers={teacher.name: teacher},
        students={},
        strategies={"step": StrategyPlan(name="step", system=strategy_text, origin="test:1")},
        erase={"cautious": ErasePlan(name="cautious", system=ERASE, origin="test:2")},
        tasks=task_plans,
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


def write_plan(root: Path, plan: Plan, name: str = "spec.plan.yaml") -> Path:
    from orcac.compiler import write_plan as write

    write(plan, root / name)
    return root / name


def arith_answer(body: dict) -> str:
    """A loopback responder that solves 'What is X plus Y?' step by step."""
    import re

    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    match = re.search(r"What is (\d+) plus (\d+)\?", user)
    if not match:
        return "I do not know."
    x, y = int(match.group(1)), int(match.group(2))
    return f"First take {x}, then add {y}.\nAnswer: {x + y}"


def seeded_answer(body: dict) -> str:
    """Right for every seed, worded one of three ways by the seed; wrong when seed % 4 == 3."""
    import re

    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    x, y = map(int, re.search(r"What is (\d+) plus (\d+)\?", user).groups())
    seed = body.get("seed")
    if seed is None:
        return f"Answer: {x + y}"
    if seed % 4 == 3:
        return f"Answer: {x + y + 1}"
    return ["Answer: {}", "So it is {}.\nAnswer: {}", "Adding gives {}.\nAnswer: {}"][seed % 3].format(x + y, x + y)
