"""A task's examples: its source rows, sampled and split by the plan, rendered by its templates
(a task with `answer`: each row's answer and instruction too).

    examples = materialize(plan, root, "arith")

Shared by `orcac build` (train examples go to the teacher) and `orcac eval` (held-out ones
score the student). The split comes from `orcac.sampling.split_rows`, so it is the one the
compiler counted. A row whose prompt or gold fails to render, or that is not a row at all (a
ragged csv line, a jsonl line that is not an object), is reported with its task, row number
and reason, and skipped; the other rows go on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orcac.errors import OrcacError
from orcac.runtime.answers.source_rows import read_rows
from orcac.sampling import split_rows
from orcac.sources.read import render_row
from orcac.specs.plan import Plan
from orcac.templates import failure_reason


@dataclass(frozen=True)
class Example:
    task: str
    row_index: int  # 0-based position in the source
    split: Literal["train", "holdout"]
    probe: bool  # in the probe sample (always a train example too)
    prompt: str
    gold: str | None
    # A task whose answers come from its source: the row's answer and its own system message
    # (never stored: the record carries the erase message; orcac.runtime.answers.given)
    answer: str | None = None
    instruction: str | None = None


@dataclass(frozen=True)
class RenderProblem:
    task: str
    row_index: int
    reason: str

    def __str__(self) -> str:
        return f"task {self.task}: row {self.row_index + 1} skipped: {self.reason}"


def _warn(problem: RenderProblem) -> None:
    print(f"warning: {problem}", file=sys.stderr)


def materialize(
    plan: Plan,
    root: Path,
    task_name: str,
    *,
    report: Callable[[RenderProblem], None] = _warn,
    rows: list[dict] | None = None,
) -> list[Example]:
    """Held-out examples first, then train examples, each in the plan's ranking order.

    `report` receives each row that fails to render (default: a warning on stderr).
    `rows` skips reading the source (a caller that already has them).
    """
    try:
        task = plan.tasks[task_name]
    except KeyError:
        raise OrcacError(f"the plan has no task {task_name!r} (it has: {', '.join(plan.tasks)})") from None
    if rows is None:
        rows = read_rows(task.source, root, task=task.name)
    probe_size = task.probe.size if task.probe else 0
    splits = split_rows(
        len(rows), task=task.name, seed=task.seed, limit=task.limit, holdout=task.holdout, probe=probe_size
    )
    probe = set(splits.probe)
    examples: list[Example] = []
    for split, indices in (("holdout", splits.holdout), ("train", splits.train)):
        for index in indices:
            row = rows[index]
            try:
                prompt = render_row(task.prompt, row)
                gold = render_row(task.gold, row) if task.gold is not None else None
                answer = render_row(task.answer, row) if task.answer is not None else None
                instruction = render_row(task.instruction, row) if task.instruction is not None else None
            except Exception as error:  # noqa: BLE001 - a bad row or a template error is this row's problem, not the build's
                report(RenderProblem(task.name, index, failure_reason(error)))
                continue
            examples.append(Example(task.name, index, split, index in probe, prompt, gold, answer, instruction))
    return examples
