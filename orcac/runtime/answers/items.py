"""Items: one example answered under one strategy, each with its content-addressed job.

A task with `samples = N` makes N items per example and strategy, each its own job (a seed
per job where the teacher takes one), so sampling is reproducible and resumable like any call.
The probe makes its jobs here too, so a probe job is the main run's job for that row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from orcac.runtime.answers.erasure import record_id, teacher_messages
from orcac.runtime.answers.examples import Example, RenderProblem, materialize
from orcac.runtime.answers.given import Given, given_items
from orcac.runtime.teachers.jobs import Job, make_job
from orcac.specs.plan import Plan, TaskPlan


@dataclass(frozen=True)
class Item:
    task: str
    strategy: str
    row_index: int
    prompt: str
    gold: str | None
    job: Job
    record_id: str
    sample: int = 0  # which of the task's samples of this row


def sample_options(task: TaskPlan, row_index: int, sample: int) -> dict:
    """Request parameters of one sample's job that are not the teacher's: the task's own
    temperature, and with several samples a seed per job (SEED_RULE), so that each sample is
    its own content-addressed job and a provider that takes a seed answers it the same way."""
    options: dict = {}
    if task.sampling.temperature is not None:
        options["temperature"] = task.sampling.temperature
    if task.sampling.samples > 1:
        digest = hashlib.sha256(f"{task.name}\x1f{row_index}\x1f{sample}\x1f{task.seed}".encode()).digest()
        options["seed"] = int.from_bytes(digest[:4], "big") % 2**31
    return options


def items_for_task(
    plan: Plan, task: TaskPlan, examples: list[Example], strategy: str, *, samples: int | None = None
) -> list[Item]:
    """The teacher jobs for a task's train examples under one strategy, `samples` per example
    (default: the task's; the probe asks sample 0 only). The probe's seam too."""
    system = task.system if strategy == task.strategy and task.system is not None else None
    teacher = plan.teachers[task.teacher]
    items = []
    for example in examples:
        if example.split != "train":
            continue
        messages = teacher_messages(plan, strategy, example.prompt, system)
        for sample in range(task.sampling.samples if samples is None else samples):
            job = make_job(teacher, messages, sample_options(task, example.row_index, sample))
            items.append(
                Item(
                    task.name,
                    strategy,
                    example.row_index,
                    example.prompt,
                    example.gold,
                    job,
                    record_id(task.name, example.row_index, job.id),
                    sample,
                )
            )
    return items


@dataclass
class Work:
    """Everything a build does, computed from the plan before anything is called."""

    examples: dict[str, list[Example]]
    items: list[Item]  # what this build answers (after --limit)
    keep: list[str]  # record ids the plan produces (before --limit): the rest are stale
    skipped: list[str]  # notes for tasks left out
    problems: list[RenderProblem]
    given: list[Given] = field(default_factory=list)  # answers from sources (after --limit): no job


def plan_work(plan: Plan, root: Path, *, limit: int | None = None, estimate: bool = False) -> Work:
    """The build's items. A task without a strategy (its probe undecided) is skipped, or with
    `estimate` (a dry run before the probe) counted under its first candidate; a task whose
    answers come from its source makes no item, only `given` rows."""
    examples: dict[str, list[Example]] = {}
    items: list[Item] = []
    keep: list[str] = []
    skipped: list[str] = []
    problems: list[RenderProblem] = []
    given: list[Given] = []
    for name, task in sorted(plan.tasks.items()):
        if task.given:
            examples[name] = materialize(plan, root, name, report=problems.append)
            task_given = given_items(task, examples[name])
            keep += [g.record_id for g in task_given]
            given += task_given[:limit] if limit is not None else task_given
            continue
        strategy = task.strategy
        if strategy is None:
            if not (estimate and task.probe and task.probe.candidates):
                skipped.append(f"task {name}: skipped: its strategy probe has not been decided yet")
                continue
            strategy = task.probe.candidates[0]
            skipped.append(f"task {name}: its probe has not run yet: main-run calls estimated with {strategy}")
        examples[name] = materialize(plan, root, name, report=problems.append)
        task_items = items_for_task(plan, task, examples[name], strategy)
        keep += [i.record_id for i in task_items]
        items += task_items[:limit] if limit is not None else task_items
    return Work(examples, items, keep, skipped, problems, given)
