"""The arms of `orcac eval`: which run, what each is asked, whether it can run, and how its
answers are made.

  base      the student before training, with ONLY the erase message as its system prompt;
  prompted  the teacher with everything erasure removes: the strategy's instruction and its
            demonstrations, through the teacher runtime, its answers kept by job id (`calls`);
  trained   the trained student, with only the erase message (what it saw in training).

The students answer greedily on this machine (`generate`); the prompted teacher greedily,
as long as the students may answer (`prompted_answers`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from orcac.errors import OrcacError
from orcac.runtime.answers.erasure import teacher_messages
from orcac.runtime.commands.evaluate import calls
from orcac.runtime.commands.evaluate.held_out import Held
from orcac.runtime.models import chat_format

MODELS = ("base", "prompted", "trained")  # in the order they run and are shown


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str  # "stop" or "length"
    new_tokens: int
    job_id: str | None = None  # prompted answers: the teacher job that gave it (reused by re-runs)


def arms(plan, models: list[str] | None) -> list[str]:
    """The arms to run, in their order: `models` (--models), else base, prompted unless the
    plan turns it off, and trained."""
    if models is None:
        models = [m for m in MODELS if m != "prompted" or plan.eval.prompted]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise OrcacError(
            f"--models: unknown model {unknown[0]!r}", hint=f"use a comma-separated list of {', '.join(MODELS)}"
        )
    return [m for m in MODELS if m in models]


def arm_tasks(name: str, plan, held: dict[str, list[Held]]) -> dict[str, list[Held]]:
    """The held-out rows one arm answers: prompted asks a teacher, so it leaves out the tasks
    whose answers come from their source (they have neither teacher nor strategy)."""
    if name != "prompted":
        return held
    return {task: rows for task, rows in held.items() if not plan.tasks[task].given}


def check_ready(name: str, plan, root: Path, held: dict[str, list[Held]]) -> None:
    """Raise the one-line error that phase `name` would stop on, without loading anything."""
    if name == "prompted":
        from orcac.runtime.teachers.calls import require_keys

        held = arm_tasks(name, plan, held)
        require_strategies(plan, held)
        require_keys(plan.teachers[plan.tasks[task].teacher] for task in held)
        return
    if plan.train is None:
        raise OrcacError("the plan has no train section, so there is no student to evaluate")
    if name == "trained":
        from orcac.runtime.training.layout import FINAL_DIR

        final = root / plan.train.output / FINAL_DIR
        if not (final / "config.json").is_file():
            raise OrcacError(f"no trained student in {final}", hint="run `orcac train` first (or pass --models base)")


def require_strategies(plan, held: dict) -> None:
    """The prompted arm shows each task's strategy: a `best_of` task has one once its probe ran."""
    for task in held:
        if plan.tasks[task].system is None:
            raise OrcacError(f"task {task} has no strategy yet", hint="run `orcac build` to run its probe first")


def trained_on(final: Path, plan) -> bool:
    """Whether the student in `final` was trained on this plan as far as training goes: the plan
    it saved is this one but for the eval block, which training never reads."""
    from orcac.specs.plan import EvalPlan
    from orcac.specs.plan_file import dump_plan, read_plan

    saved = final / "plan.yaml"
    if not saved.is_file():
        return False
    try:
        before = read_plan(saved)
    except OrcacError:
        return False
    return dump_plan(before.model_copy(update={"eval": EvalPlan()})) == dump_plan(
        plan.model_copy(update={"eval": EvalPlan()})
    )


# ---- the students: greedy, on this machine --------------------------------------------------


def student_answers(name: str, plan, model, tokenizer, held: dict[str, list[Held]]) -> dict[str, list[Answer]]:
    """Every held-out example answered by a loaded student, behind only its task's erase message."""
    examples = [(task, i, h) for task, rows in held.items() for i, h in enumerate(rows)]
    prompts = [
        chat_format.prompt_ids(tokenizer, plan.erase[plan.tasks[task].erase].system, h.prompt)
        for task, _, h in examples
    ]
    started = time.monotonic()

    def progress(done: int) -> None:
        print(
            f"  {name}: {done}/{len(prompts)} answers, {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True
        )

    generated = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=plan.eval.max_new_tokens,
        batch_size=plan.eval.batch_size,
        progress=progress,
    )
    answers: dict[str, list[Answer]] = {task: [None] * len(rows) for task, rows in held.items()}
    for (task, i, _), answer in zip(examples, generated, strict=True):
        answers[task][i] = answer
    return answers


def generate(
    model, tokenizer, prompts: list[list[int]], *, max_new_tokens: int, batch_size: int, progress=None
) -> list[Answer]:
    """Greedy answers to tokenized prompts, at most `batch_size` decoding at once: one stream
    (orcac.runtime.models.generation), so a row that finishes is replaced by the next prompt
    rather than waiting for its batch's longest answer. `progress(done)` hears every further
    `batch_size` answers and the last."""
    from orcac.runtime.models.generation import decode, stop_ids

    eos = stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    reported = 0

    def answered(done: int) -> None:
        nonlocal reported
        if progress is not None and (done - reported >= batch_size or done == len(prompts)):
            reported = done
            progress(done)

    # by length: where a model decodes in static batches (not the engine's), less padding per batch
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results = decode(
        model,
        [prompts[i] for i in order],
        max_new_tokens=max_new_tokens,
        eos=eos,
        pad=pad,
        batch_size=batch_size,
        progress=answered,
    )
    out: list[Answer | None] = [None] * len(prompts)
    for i, r in zip(order, results, strict=True):
        text = tokenizer.decode(r.tokens, skip_special_tokens=True).strip()
        out[i] = Answer(text=text, finish_reason=r.finish_reason, new_tokens=r.completion_tokens)
    return out  # type: ignore[return-value]


# ---- the prompted teacher: through the teacher runtime ---------------------------------------


def prompted_answers(plan, root: Path, held: dict[str, list[Held]], db_path: Path | None):
    """The teacher with the full strategy prompt and demonstrations, greedy and as long as the
    other arms, through the teacher runtime. Each answer is asked once (`calls`: kept as it
    arrives, so an eval stopped half-way keeps those it got, and reused by every later eval)."""
    jobs, index = prompted_jobs(plan, held)
    heard = calls.stored(db_path, jobs)
    todo = [job for job_id, job in jobs.items() if job_id not in heard]
    asked, _ = calls.ask(plan, root, db_path, todo, dict.fromkeys((j.id for j in todo), "prompted"), label="prompted")
    heard.update(asked)
    # a call that failed for good: an empty answer, scored as such (the next eval asks again)
    answers = placed(held, index, heard, missing=Answer("", "error", 0))
    print(f"  prompted: {len(jobs) - len(todo)} answers reused, {len(todo)} asked", file=sys.stderr, flush=True)
    models = sorted({plan.teachers[plan.tasks[t].teacher].model for t in held})
    return answers, ", ".join(models)


def placed(held: dict[str, list[Held]], index: dict, heard: dict, *, missing: Answer | None) -> dict[str, list]:
    """task -> the prompted answers in held-out order, from `heard` (job id -> calls.Heard);
    `missing` where a job has none."""
    answers: dict[str, list] = {task: [missing] * len(rows) for task, rows in held.items()}
    for job_id, places in index.items():
        got = heard.get(job_id)
        if got is not None:
            for task, i in places:
                answers[task][i] = Answer(got.text.strip(), got.finish_reason or "stop", got.completion_tokens, job_id)
    return answers


def prompted_jobs(plan, held: dict[str, list[Held]]) -> tuple[dict, dict[str, list[tuple[str, int]]]]:
    """The prompted arm's jobs (job id -> job, each once) and where each answer goes (job id ->
    [(task, index)]): the teacher greedy, as long as the other arms, with the strategy's
    instruction and demonstrations."""
    from orcac.runtime.teachers.jobs import make_job

    jobs, index = {}, {}
    options = {"temperature": 0.0, "max_tokens": plan.eval.max_new_tokens}
    for task, rows in held.items():
        t = plan.tasks[task]
        teacher = plan.teachers[t.teacher]
        for i, h in enumerate(rows):
            job = make_job(teacher, teacher_messages(plan, t.strategy, h.prompt, t.system), options)
            index.setdefault(job.id, []).append((task, i))
            jobs.setdefault(job.id, job)
    return jobs, index
