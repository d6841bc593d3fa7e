"""What `orcac train` reads from and writes to the database: its records, its runs, its steps.

    records = train_records(store, ["add", "mul"], [None, "cot"])   # None: no records table
    store = open_for_training(db_path)                              # the run's one connection
    begin_run(store, run)                                           # train_runs: 'running'
    add_steps(store, rows)                                          # train_steps, as they are logged
    finish_run(store, run, final_loss=losses[-1][3])

    train_runs   one row per run: plan hash, student, output folder, device, precision, packing
                 (and whether it isolates examples), versions, started/ended, status (running,
                 finished, failed, interrupted), the last step's loss
    train_steps  (run, stage, step): epoch, loss, learning rate, gradient norm, tokens, seconds

The tables are declared in `orcac/runtime/store/schema.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orcac.runtime.store.database import Store, open_database


@dataclass(frozen=True)
class TrainRun:
    """A run's row in train_runs, as its first write makes it."""

    run_id: str
    plan_sha256: str
    student: str  # the student's model string
    output: str  # the train block's output folder, as the plan says it
    device: str
    precision: str  # "bf16" or "fp32"
    packing: bool
    isolated: bool  # packed examples cannot attend to one another
    versions: str  # JSON: torch, transformers, trl, peft


def open_for_training(path: Path) -> Store:
    """The one writing connection a run keeps from its first row to its last.

    Not `Store.open`: that marks a *build* left 'running' as interrupted, which is the next
    build's to say, not train's."""
    path = Path(path)
    return Store(open_database(path), path)


# ---- records ---------------------------------------------------------------------------------


def train_records(store: Store, tasks: list[str], strategies: list[str | None]) -> list[tuple] | None:
    """(task, user, assistant, record_id) of the training split for each task under its chosen
    strategy (None: any), in a stable order; None when the file has no records table."""
    tables = {r[0] for r in store.rows("SELECT table_name FROM information_schema.tables")}
    if "records" not in tables:
        return None
    return store.rows(
        """
        SELECT task, "user", assistant, record_id FROM records
        JOIN (SELECT unnest(?) AS task, unnest(?) AS chosen) USING (task)
        WHERE split = 'train' AND (chosen IS NULL OR strategy = chosen)
        ORDER BY task, row_index, record_id
        """,
        [tasks, strategies],
    )


# ---- runs ------------------------------------------------------------------------------------


def begin_run(store: Store, run: TrainRun) -> None:
    """The run's row, 'running' (a resumed run's row keeps what its first start wrote); another
    run of the same output still 'running' died without a word: interrupted."""
    _upsert_run(store, run, "running")
    store.execute(
        "UPDATE train_runs SET status = 'interrupted' WHERE status = 'running' AND output = ? AND run_id <> ?",
        [run.output, run.run_id],
    )


def finish_run(store: Store, run: TrainRun, *, final_loss: float | None) -> None:
    _upsert_run(store, run, "finished")
    store.execute("UPDATE train_runs SET ended_at = now(), final_loss = ? WHERE run_id = ?", [final_loss, run.run_id])


def end_run(store: Store, run_id: str, status: str) -> None:
    """A run that stopped before it finished: failed or interrupted."""
    store.execute("UPDATE train_runs SET status = ?, ended_at = now() WHERE run_id = ?", [status, run_id])


def fail_if_running(store: Store, run_id: str) -> None:
    """A run whose process was killed by a signal, unless it said how it ended before."""
    store.execute(
        "UPDATE train_runs SET status = 'failed', ended_at = now() WHERE run_id = ? AND status = 'running'", [run_id]
    )


def _upsert_run(store: Store, run: TrainRun, status: str) -> None:
    store.execute(
        """
        INSERT INTO train_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, now(), NULL, ?, NULL, ?)
        ON CONFLICT (run_id) DO UPDATE SET status = excluded.status
        """,
        [
            run.run_id,
            run.plan_sha256,
            run.student,
            run.output,
            run.device,
            run.precision,
            run.packing,
            run.isolated,
            status,
            run.versions,
        ],
    )


# ---- steps -----------------------------------------------------------------------------------


def add_steps(store: Store, rows: list[tuple]) -> None:
    """Rows of train_steps: (run_id, stage, stage_index, step, epoch, loss, lr, grad_norm,
    tokens, elapsed_s)."""
    store.con.executemany("INSERT INTO train_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def forget_steps_after(store: Store, run_id: str, stage_index: int, step: int) -> None:
    """Drop the steps a stopped run logged after its last checkpoint: they are trained again."""
    store.execute(
        "DELETE FROM train_steps WHERE run_id = ? AND stage_index = ? AND step > ?", [run_id, stage_index, step]
    )


def step_losses(store: Store, run_id: str) -> list[tuple]:
    """(stage_index, stage, step, loss) of a run, in training order."""
    return store.rows(
        "SELECT stage_index, stage, step, loss FROM train_steps WHERE run_id = ? ORDER BY stage_index, step", [run_id]
    )


def train_records_per_task(store: Store) -> dict[str, int]:
    """task -> its records in the train split (the model card's data section)."""
    return dict(store.rows("SELECT task, count(*) FROM records WHERE split = 'train' GROUP BY task"))


def last_finished_run(store: Store) -> tuple[str, str] | None:
    """(precision, device) of the newest finished training run, or None."""
    rows = store.rows(
        "SELECT precision, device FROM train_runs WHERE status = 'finished' ORDER BY ended_at DESC LIMIT 1"
    )
    return rows[0] if rows else None
