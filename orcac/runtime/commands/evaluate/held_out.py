"""The held-out examples every arm of `orcac eval` answers: the build's, else rendered from
the sources (the same split, by orcac/sampling.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orcac.errors import OrcacError
from orcac.runtime.store import evaluations
from orcac.runtime.store.database import Store


@dataclass(frozen=True)
class Held:
    """One held-out example: the rendered prompt and its gold."""

    task: str
    row_index: int
    prompt: str
    gold: str | None


def held_out(plan, root: Path, db_path: Path, *, limit: int | None = None) -> dict[str, list[Held]]:
    """Held-out examples per task: from the build's `examples` table, else from the sources."""
    stored = _stored_held(db_path, list(plan.tasks), plan.spec)
    held: dict[str, list[Held]] = {}
    for name, task in plan.tasks.items():
        if stored:  # the build rendered them: use exactly those
            rows = stored.get(name, [])
        elif task.counts.holdout:
            from orcac.runtime.answers.examples import materialize

            rows = [
                Held(name, e.row_index, e.prompt, e.gold) for e in materialize(plan, root, name) if e.split == "holdout"
            ]
        else:
            rows = []
        if limit is not None:
            rows = rows[:limit]
        if rows:
            held[name] = rows
    if not held:
        raise OrcacError(
            "no held-out examples to evaluate on",
            hint="give tasks a holdout share (e.g. `holdout = 20%`) and run `orcac build`",
        )
    return held


def _stored_held(db_path: Path, tasks: list[str], spec: str) -> dict[str, list[Held]]:
    if not db_path.is_file():
        return {}
    with Store.open(db_path, spec=spec, read_only=True) as store:
        rows = evaluations.held_out_examples(store, tasks)
    held: dict[str, list[Held]] = {}
    for task, row_index, prompt, gold in rows or ():
        held.setdefault(task, []).append(Held(task, row_index, prompt, gold))
    return held
