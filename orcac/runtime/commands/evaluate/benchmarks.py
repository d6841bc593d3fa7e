"""Standard benchmarks beside the held-out arms: lm-evaluation-harness tasks (`eval { benchmarks
= [gsm8k, bbh] }`) run on the base and trained students, as the student was trained: through
its chat template, with the erase message as the system instruction (`system_instruction`,
`apply_chat_template=True`).

Each arm is the model `orcac eval` loads for its held-out rows (`load`: the student as the plan
names it, or train's final/, where a LoRA student is saved merged: its adapter is in the weights
lm-eval scores), handed to lm-eval's `hf` backend as a loaded model. Results, per task and
metric with lm-eval's standard error, go to DuckDB (`eval_benchmarks`), to a table below the
held-out one, to the report and to the model card (orcac/runtime/results/model_card.py).

A benchmark is an lm-eval task or group name, or a task's YAML file, relative to the spec
(lm-eval reads a local JSONL through `dataset_path: json`: the offline tests' way). lm-eval is
imported here only, when a plan names benchmarks: `check` and `fmt` never load it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from orcac.errors import OrcacError
from orcac.runtime.models import chat_format

ARMS = ("base", "trained")  # the student arms benchmarks run on
TEACHER_ARM = "teacher {}"  # a benchmarked local teacher's arm (`eval { benchmark_teachers = [t] }`)
LM_EVAL = (
    '"orcac[benchmarks]"'  # what `pip install` needs (lm-eval), said where it is missing; `make setup` installs it
)


def wanted(plan, models: list[str]) -> list[str]:
    """The arms, of those this eval runs, that the plan's benchmarks run on: base and trained, and
    each of `benchmark_teachers` with the prompted arm (the teacher's own weights, through the
    same chat template and system instruction as the student: a reference, not its strategy)."""
    if not plan.eval.benchmarks:
        return []
    teachers = [TEACHER_ARM.format(t) for t in plan.eval.benchmark_teachers] if "prompted" in models else []
    return [m for m in models if m in ARMS] + teachers


def system_instruction(plan) -> str | None:
    """The erase message, where one covers every trained task (the saved template's default too)."""
    return chat_format.default_system(plan)


def check_ready(plan, root: Path, models: list[str]) -> None:
    """The one-line error benchmarks would stop on, before the held-out arms spend minutes."""
    if not wanted(plan, models):
        return
    if importlib.util.find_spec("lm_eval") is None:
        raise OrcacError(
            "eval.benchmarks names lm-evaluation-harness tasks, but lm-eval is not installed",
            hint=f"pip install {LM_EVAL} (or remove `benchmarks` from the eval block)",
        )
    for name in plan.eval.benchmarks:
        if _is_file(name) and not (root / name).is_file():
            raise OrcacError(f"eval.benchmarks: no task file {root / name}", hint="write the path relative to the spec")


def dry_run(plan, models: list[str]) -> None:
    """`orcac eval --dry-run`: which benchmarks run on which arms, and with which system message."""
    arms = wanted(plan, models)
    if not arms:
        return
    system = system_instruction(plan)
    print(
        f"benchmarks (lm-evaluation-harness, on {', '.join(arms)}): {', '.join(plan.eval.benchmarks)}; "
        + (
            f"system instruction: {_quote(system)}"
            if system
            else "no system instruction (tasks have different erase messages)"
        )
        + ("" if importlib.util.find_spec("lm_eval") else f"; lm-eval is not installed: pip install {LM_EVAL}")
    )


def run(
    plan, root: Path, db_path: Path, models: list[str], *, run_id: str, plan_sha: str, load, limit: int | None = None
) -> list[dict]:
    """Run the plan's benchmarks on each arm (`load(name, plan, root)` -> model, tokenizer, where, precision),
    store and show the results; return their rows."""
    arms = wanted(plan, models)
    if not arms:
        return []
    import lm_eval

    system = system_instruction(plan)
    tasks = [_task(name, root) for name in plan.eval.benchmarks]
    teachers = {TEACHER_ARM.format(t): t for t in plan.eval.benchmark_teachers}
    rows = []
    for name in arms:
        loaded = _load_teacher(plan, teachers[name], root) if name in teachers else load(name, plan, root)
        model, tokenizer, where, chosen = loaded
        print(f"  {name}: benchmarks {', '.join(plan.eval.benchmarks)}", file=sys.stderr, flush=True)
        with chosen.running(model.device):  # as the model was loaded to run (orcac.runtime.models.precision)
            results = lm_eval.simple_evaluate(
                model=_lm(model, tokenizer, plan),
                tasks=tasks,
                apply_chat_template=True,
                system_instruction=system,
                limit=limit,
                log_samples=False,
            )
        scored = result_rows(results, model=name, where=where, system=system)
        _store(db_path, run_id, plan_sha, scored)  # each arm's as it ends: a failure in the next keeps them
        rows += scored
        del model
    show(rows)
    return rows


def _load_teacher(plan, name: str, root: Path):
    """(model, tokenizer, where, precision) for a local teacher, in its own precision, with the chat template
    the student was given (so both are asked the same way)."""
    from orcac.runtime.models import loading, precision

    teacher = plan.teachers[name]
    weights = loading.local_teacher_weights(teacher.model)
    chosen = precision.choose(teacher.precision, f"teacher {name}")
    model, tokenizer = loading.load_causal_lm(weights, root, dtype=chosen.weights)
    model = chosen.place(model, precision.device())  # a GGUF file loads in fp32
    added = chat_format.prepare_tokenizer(
        tokenizer, plan.students[plan.train.student].chat_template if plan.train else "auto"
    )
    if added:
        model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer, weights, chosen


def _lm(model, tokenizer, plan):
    """lm-eval's `hf` backend around an already loaded model; batch size chosen by lm-eval on
    a GPU (it probes what fits), the eval block's on a CPU (probing there costs more than it saves)."""
    import logging

    import torch
    from lm_eval.models.huggingface import HFLM

    # Its warnings that a loaded model, not a name, was passed: that is what orcac means to do.
    logging.getLogger("lm_eval.models.huggingface").setLevel(logging.ERROR)
    cuda = torch.cuda.is_available()
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size="auto" if cuda else plan.eval.batch_size)


def _task(name: str, root: Path):
    if not _is_file(name):
        return name
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(str(root / name), resolve_func=True)


def _is_file(name: str) -> bool:
    return name.endswith((".yaml", ".yml"))


def result_rows(results: dict, *, model: str, where: str, system: str | None) -> list[dict]:
    """lm-eval's results as rows: one per task (or group) and metric, `top` where no group
    the run reports holds the task (a benchmark the plan named, not one of its subtasks)."""
    inside = {t for subtasks in (results.get("group_subtasks") or {}).values() for t in subtasks}
    rows = []
    for task, metrics in results["results"].items():
        samples = (results.get("n-samples") or {}).get(task, {}).get("effective")
        shots = (results.get("n-shot") or {}).get(task)
        for key, value in metrics.items():
            metric, comma, filter_name = key.partition(",")  # "acc,none"; no comma: not a metric (sample_len)
            if (
                not comma
                or metric.endswith("_stderr")
                or not isinstance(value, (int, float))
                or isinstance(value, bool)
            ):
                continue
            stderr = metrics.get(f"{metric}_stderr,{filter_name}")
            rows.append(
                {
                    "model": model,
                    "model_path": where,
                    "benchmark": task,
                    "top": task not in inside,
                    "metric": metric,
                    "filter": filter_name,
                    "value": float(value),
                    "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,  # "N/A" where none
                    "samples": samples,
                    "shots": shots if isinstance(shots, int) else None,
                    "system_instruction": system,
                    "lm_eval_version": results.get("lm_eval_version"),
                }
            )
    return rows


def _store(db_path: Path, run_id: str, plan_sha: str, rows: list[dict]) -> None:
    from orcac.runtime.store import evaluations

    with evaluations.writing(db_path) as store:
        evaluations.insert_benchmarks(store, [{"run_id": run_id, "plan_sha256": plan_sha, **r} for r in rows])


def show(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    from orcac.runtime.results.evaluation import benchmark_table

    shown = benchmark_table(rows)
    table = Table(
        title="standard benchmarks (lm-evaluation-harness), through the chat template"
        + (f", system instruction: {_quote(shown['system'])}" if shown["system"] else "")
        + "; score ± standard error",
        title_justify="left",
    )
    for column in ("benchmark", "metric", "filter"):
        table.add_column(column, overflow="fold")
    table.add_column("n", justify="right")
    for arm in shown["arms"]:
        table.add_column(arm, justify="right", no_wrap=True)
    for row in shown["rows"]:
        table.add_row(
            row["benchmark"], row["metric"], row["filter"], "" if row["n"] is None else str(row["n"]), *row["cells"]
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)


def _quote(text: str, at_most: int = 60) -> str:
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= at_most else one_line[: at_most - 3] + "...")
