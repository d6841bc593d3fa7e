"""Reading a task's rows for the runtime: the plan's source, checked against the plan.

    rows = read_rows(task_plan.source, root, task=task_plan.name)

The readers and the source hash live in `orcac.sources.read`, the one place that turns a
source into rows (the compiler counts and splits with the same rows in the same order). What
this module adds is the runtime's guard: the files are hashed and compared with the plan's
`sha256` first, since data changed after `orcac plan` would silently change the split, the
prompts and the job ids; every problem is an OrcacError naming the task and the file.
"""

from __future__ import annotations

from pathlib import Path

from orcac.errors import OrcacError
from orcac.sources import hub
from orcac.sources import read as sources
from orcac.sources.problems import SourceError
from orcac.specs.plan import SourcePlan


def source_sha256(source: SourcePlan, root: Path) -> str:
    """The hash `orcac plan` records in `SourcePlan.sha256` for these files as they are now."""
    files = sources.source_files(source.kind, source.path, source.split, source.query, root, network=source.network)
    return sources.sha256_files(files, extra=source.query if source.kind == "sql" else "")


def read_rows(source: SourcePlan, root: Path, *, task: str) -> list[dict]:
    """The source's rows, in source order. Raises OrcacError naming the task and file."""
    if source.repo is not None:
        return _hub_rows(source, task=task)
    where = source.path or ", ".join(source.files) or "the sql query"
    try:
        if source_sha256(source, root) != source.sha256:
            raise OrcacError(
                f"task {task}: {where}: the data changed since the plan was made: run `orcac plan`",
                hint="re-plan so the split, prompts and job ids follow the new data",
            )
        columns, rows = sources.read(source.kind, source.path, source.split, source.query, root, network=source.network)
    except SourceError as error:
        raise OrcacError(f"task {task}: {error.message}", hint=error.hint) from None
    except OSError as error:
        raise OrcacError(f"task {task}: cannot read {where}: {error.strerror or error}") from None
    missing = [c for c in source.columns if c not in columns]
    if missing:
        raise OrcacError(
            f"task {task}: {where} has no column(s) {', '.join(missing)} (it has: {', '.join(columns) or 'none'})",
            hint="the data changed since the plan was made: run `orcac plan`",
        )
    return rows


def _hub_rows(source: SourcePlan, *, task: str) -> list[dict]:
    """A Hub dataset at the plan's commit (downloaded, or from the cache offline), refused when
    its revision has moved since the plan or its files are not the ones the plan hashed."""
    try:
        data = hub.fetch(source.repo, source.config, source.split, source.revision, commit=source.commit)
        if data.names != source.files or sources.sha256_files(data.files) != source.sha256:
            raise OrcacError(
                f"task {task}: hf dataset {source.repo}: the data changed since the plan was made: run `orcac plan`",
                hint="re-plan so the split, prompts and job ids follow the new data",
            )
        columns, rows = sources.hub_rows(data)
    except SourceError as error:
        raise OrcacError(f"task {task}: {error.message}", hint=error.hint) from None
    missing = [c for c in source.columns if c not in columns]
    if missing:
        raise OrcacError(
            f"task {task}: hf dataset {source.repo} has no column(s) {', '.join(missing)}", hint="run `orcac plan`"
        )
    return rows
