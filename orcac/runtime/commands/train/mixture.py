"""A stage's records: its tasks' training records under each task's chosen strategy, each
task's portion of them (`tasks = [a(30%), b(500)]`) drawn by the train seed, the line that
says the mixture, and a digest that tells a run whether the build changed them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from orcac.errors import OrcacError
from orcac.runtime.store import training as training_store
from orcac.runtime.store.database import Store
from orcac.runtime.training.processes import log


def stage_records(db_path: Path, plan, stage) -> list[dict]:
    """The stage's training records (task, user, assistant, id) under each task's chosen strategy."""
    if not db_path.is_file():
        raise OrcacError(f"no build database at {db_path}", hint=f"run `orcac build {plan.spec}` first")
    with Store.open(db_path, read_only=True, spec=plan.spec) as store:
        rows = training_store.train_records(store, list(stage.tasks), [plan.tasks[t].strategy for t in stage.tasks])
    if rows is None:
        raise OrcacError(f"{db_path} has no training records", hint=f"run `orcac build {plan.spec}` first")
    found = {r[0] for r in rows}
    missing = [t for t in stage.tasks if t not in found]
    if len(missing) == len(stage.tasks):
        raise OrcacError(
            f"stage {stage.name}: no training records for task(s) {', '.join(missing)} in {db_path}",
            hint=f"run `orcac build {plan.spec}` first (or check that its teacher answers pass the tasks' accept rules)",
        )
    if missing:
        log(
            f"warning: stage {stage.name}: no training records for task(s) {', '.join(missing)} "
            "(no teacher answer passed their accept rules); training on the others"
        )
    out = [{"task": t, "user": u, "assistant": a, "id": i} for t, u, a, i in rows]
    return take_portions(out, stage, seed=plan.train.seed)


def take_portions(records: list[dict], stage, *, seed: int) -> list[dict]:
    """Each task's portion of its records (stage `tasks = [a(30%), b(500)]`), drawn by the
    train seed; every record keeps a `built` count of its task's records before the draw."""
    from orcac import sampling

    by_task: dict[str, list[dict]] = {}
    for r in records:
        by_task.setdefault(r["task"], []).append(r)
    kept: set[str] = set()
    for task, rows in by_task.items():
        p = stage.portions.get(task)
        ids = [r["id"] for r in rows]
        chosen = (
            ids
            if p is None
            else sampling.portion(ids, seed=seed, stage=stage.name, task=task, share=p.share, at_most=p.at_most)
        )
        kept.update(chosen)
        for r in rows:
            r["built"] = len(rows)
    return [r for r in records if r["id"] in kept]


def mixture_line(stage, records: list[dict]) -> str:
    """`stage s: a 36 of 72 (50%), b 18, c 500 of 812 (at most 500); 554 examples`."""
    parts = []
    for task in stage.tasks:
        mine = [r for r in records if r["task"] == task]
        if not mine:
            parts.append(f"{task} 0")
            continue
        p = stage.portions.get(task)
        built = mine[0]["built"]
        if p is None:
            parts.append(f"{task} {len(mine)}")
        elif p.share is not None:
            parts.append(f"{task} {len(mine)} of {built} ({p.share:.0%})")
        else:
            parts.append(f"{task} {len(mine)} of {built} (at most {p.at_most})")
    return f"stage {stage.name}: {', '.join(parts)}; {len(records)} examples"


def records_digest(records: dict[str, list[dict]]) -> str:
    """Which records each stage trains on: a build that added or changed some trains anew."""
    digest = hashlib.sha256()
    for stage, rows in records.items():
        digest.update(json.dumps([stage, sorted(r["id"] for r in rows)]).encode())
    return digest.hexdigest()[:16]
