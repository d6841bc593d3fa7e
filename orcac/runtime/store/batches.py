"""The batch path's reads and writes (orcac/runtime/teachers/batch.py): its three tables.

    batches        one row per uploaded file: its batch, state, counts, result files, collected
    batch_jobs     the jobs in each file, with how often this file's build had submitted each
    batch_results  the lines a batch's output and error files held, stored before any is delivered

Every write that the resume logic depends on is one statement or one transaction: a build
killed between two of them finds either the old state or the new, never half of one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from orcac.runtime.store.database import Store, in_list

# A batch whose provider may still answer it (or whose id a killed build never recorded: NULL).
LIVE = ("validating", "in_progress", "finalizing", "cancelling")
CANCELLABLE = ("validating", "in_progress", "finalizing")

_COUNTS = ("lines", "completed", "failed")


def stored_answers(store: Store, job_ids: Iterable[str]) -> list[tuple[str, str, int | None]]:
    """(job id, output line as JSON text, times submitted) of stored answers to these jobs."""
    return store.rows(f"SELECT job_id, line, n FROM batch_results WHERE ok AND {in_list('job_id')}", [list(job_ids)])


def live_files(store: Store, teacher: str) -> list[tuple[str, str | None]]:
    """(input file id, batch id or None) of the teacher's uncollected batches that may still answer."""
    return store.rows(
        "SELECT input_file_id, batch_id FROM batches WHERE teacher = ? AND NOT collected "
        "AND (status IS NULL OR status IN (SELECT unnest(?::VARCHAR[])))",
        [teacher, list(LIVE)],
    )


def held_jobs(store: Store, file_ids: Iterable[str]) -> set[str]:
    """The jobs in these files (held by their batches while they live)."""
    file_ids = list(file_ids)
    if not file_ids:
        return set()
    return {r[0] for r in store.rows(f"SELECT job_id FROM batch_jobs WHERE {in_list('input_file_id')}", [file_ids])}


def record_upload(store: Store, file_id: str, teacher: str, api_base: str | None, submitted: dict[str, int]) -> None:
    """An uploaded file and its jobs (job id -> times submitted), before its batch exists."""
    import pyarrow as pa

    store.write(
        {
            "batches": pa.table(
                {
                    "input_file_id": [file_id],
                    "teacher": [teacher],
                    "api_base": pa.array([api_base], pa.string()),
                    "batch_id": pa.array([None], pa.string()),
                    "status": pa.array([None], pa.string()),
                    "lines": [len(submitted)],
                    "completed": [0],
                    "failed": [0],
                    "output_file_id": pa.array([None], pa.string()),
                    "error_file_id": pa.array([None], pa.string()),
                    "collected": [False],
                }
            ),
            "batch_jobs": pa.table(
                {
                    "input_file_id": [file_id] * len(submitted),
                    "job_id": list(submitted),
                    "n": list(submitted.values()),
                }
            ),
        }
    )


def record_batch(store: Store, file_id: str, batch_id: str, status: str) -> None:
    """The batch made for (or found for) an uploaded file."""
    store.execute("UPDATE batches SET batch_id = ?, status = ? WHERE input_file_id = ?", [batch_id, status, file_id])


def record_progress(store: Store, file_id: str, status: str, completed: int, failed: int) -> None:
    store.execute(
        "UPDATE batches SET status = ?, completed = ?, failed = ? WHERE input_file_id = ?",
        [status, completed, failed, file_id],
    )


def record_status(store: Store, file_id: str, status: str) -> None:
    store.execute("UPDATE batches SET status = ? WHERE input_file_id = ?", [status, file_id])


def members(store: Store, file_id: str) -> dict[str, int | None]:
    """job id -> times submitted, for the jobs in this file."""
    return dict(store.rows("SELECT job_id, n FROM batch_jobs WHERE input_file_id = ?", [file_id]))


def record_collected(
    store: Store,
    file_id: str,
    *,
    status: str,
    output_file_id: str | None,
    error_file_id: str | None,
    results: dict[str, tuple[dict, bool, int | None]],
) -> None:
    """An ended batch's lines (job id -> (line, answered, times submitted)) stored and the batch
    marked collected, in one transaction: a kill leaves it uncollected, or all of it stored."""
    import pyarrow as pa

    names = [
        c[0]
        for c in store.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'batches' ORDER BY ordinal_position"
        )
    ]
    (row,) = store.rows("SELECT * FROM batches WHERE input_file_id = ?", [file_id])
    values = dict(
        zip(names, row), status=status, collected=True, output_file_id=output_file_id, error_file_id=error_file_id
    )
    kinds = {"collected": pa.bool_(), **{name: pa.int64() for name in _COUNTS}}
    tables = {"batches": pa.table({k: pa.array([v], kinds.get(k, pa.string())) for k, v in values.items()})}
    if results:
        tables["batch_results"] = pa.table(
            {
                "input_file_id": [file_id] * len(results),
                "job_id": list(results),
                "line": [json.dumps(line, ensure_ascii=False) for line, _, _ in results.values()],
                "ok": [ok for _, ok, _ in results.values()],
                "n": [n for _, _, n in results.values()],
            }
        )
    store.write(tables)


def cancellable(store: Store) -> list[tuple[str, str, str]]:
    """(teacher, input file id, batch id) of every batch a cancel can still stop, in a stable order."""
    return store.rows(
        "SELECT teacher, input_file_id, batch_id FROM batches WHERE NOT collected AND batch_id IS NOT NULL "
        "AND status IN (SELECT unnest(?::VARCHAR[])) ORDER BY teacher, batch_id",
        [list(CANCELLABLE)],
    )
