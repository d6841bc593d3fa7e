"""eval's tables, read and written: every query over `eval_*` (their DDL is in
orcac/runtime/store/schema.py).

    eval_runs        one row per arm and task of a run, each rate with its n and 95% interval
    eval_answers     every answer a run scored, with the strategy whose form it follows
    eval_judgements  each judge's verdict on each answer of a run
    eval_gaps        the gap closed per task and metric, with its bootstrap interval
    eval_paired      trained against base on the same rows (exact McNemar)
    eval_calls       every teacher call eval made, once, by job id (the prompted arm's, the judges')
    eval_benchmarks  lm-evaluation-harness results per arm, task and metric

Writers get their rows as dicts keyed by column (a missing one is a KeyError here, not a
shifted column in the file). Readers treat a table or column that an older file lacks as
empty or NULL: they read it as it is, without migrating it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orcac.runtime.store.database import Store, open_database
from orcac.runtime.store.queries import column_names, table_names

RUN_COLUMNS = (
    "run_id",
    "model",
    "model_path",
    "task",
    "strategy",
    "examples",
    "accepted",
    "adherent",
    "truncated",
    "accuracy",
    "adherence",
    "seconds",
    "plan_sha256",
    "accuracy_n",
    "accuracy_low",
    "accuracy_high",
    "adherence_n",
    "adherence_low",
    "adherence_high",
)
ANSWER_COLUMNS = (
    "run_id",
    "model",
    "task",
    "row_index",
    "prompt",
    "gold",
    "answer",
    "finish_reason",
    "new_tokens",
    "accepted",
    "reason",
    "adheres",
    "broken",
    "job_id",
    "follows",
)
JUDGEMENT_COLUMNS = (
    "run_id",
    "model",
    "task",
    "row_index",
    "judge",
    "job_id",
    "score",
    "reasoning",
    "accepted",
    "reason",
)
GAP_COLUMNS = (
    "run_id",
    "task",
    "metric",
    "base",
    "prompted",
    "trained",
    "gap_closed",
    "plan_sha256",
    "gap_low",
    "gap_high",
)
PAIRED_COLUMNS = ("run_id", "task", "metric", "pairs", "worse", "better", "p_value", "plan_sha256")
CALL_COLUMNS = ("job_id", "purpose", "text", "finish_reason", "prompt_tokens", "completion_tokens", "cost")
BENCHMARK_COLUMNS = (
    "run_id",
    "model",
    "model_path",
    "benchmark",
    "top",
    "metric",
    "filter",
    "value",
    "stderr",
    "samples",
    "shots",
    "system_instruction",
    "lm_eval_version",
    "plan_sha256",
)
# eval_runs' intervals: a file from before them has none of these columns
INTERVAL_COLUMNS = ("accuracy_n", "accuracy_low", "accuracy_high", "adherence_n", "adherence_low", "adherence_high")


# ---- writing ------------------------------------------------------------------------------


@contextmanager
def writing(db_path: Path) -> Iterator[Store]:
    """The store for one of eval's writes, open only while it writes: between writes eval
    answers for minutes, and another process (`orcac report`) may read the file meanwhile.
    Not `Store.open`: marking a dead build's run interrupted is the next build's business."""
    store = Store(open_database(db_path), Path(db_path))
    try:
        yield store
    finally:
        store.close()


def _insert(
    store: Store, table: str, columns: tuple[str, ...], rows: list[dict], *, stamped: bool = False, verb: str = "INSERT"
) -> None:
    """`rows` into `table`, one statement; `stamped`: created_at is now()."""
    if not rows:
        return
    names = ", ".join(columns) + (", created_at" if stamped else "")
    marks = ", ".join("?" for _ in columns) + (", now()" if stamped else "")
    store.con.executemany(
        f"{verb} INTO {table} ({names}) VALUES ({marks})", [tuple(row[c] for c in columns) for row in rows]
    )


def insert_runs(store: Store, rows: list[dict]) -> None:
    """One arm's rows of `eval_runs` (one per task), stamped now."""
    _insert(store, "eval_runs", RUN_COLUMNS, rows, stamped=True)


def insert_answers(store: Store, rows: list[dict]) -> None:
    _insert(store, "eval_answers", ANSWER_COLUMNS, rows)


def insert_judgements(store: Store, rows: list[dict]) -> None:
    _insert(store, "eval_judgements", JUDGEMENT_COLUMNS, rows)


def insert_gaps(store: Store, rows: list[dict]) -> None:
    _insert(store, "eval_gaps", GAP_COLUMNS, rows)


def insert_paired(store: Store, rows: list[dict]) -> None:
    _insert(store, "eval_paired", PAIRED_COLUMNS, rows)


def insert_calls(store: Store, rows: list[dict]) -> None:
    """Teacher answers by job id; one already kept stays as it is (the same job, the same request)."""
    _insert(store, "eval_calls", CALL_COLUMNS, rows, verb="INSERT OR IGNORE")


def insert_benchmarks(store: Store, rows: list[dict]) -> None:
    _insert(store, "eval_benchmarks", BENCHMARK_COLUMNS, rows, stamped=True)


# ---- what eval reads before it runs ---------------------------------------------------------


def held_out_examples(store: Store, tasks: list[str]) -> list[tuple] | None:
    """(task, row_index, prompt, gold) of the build's held-out examples of `tasks`, in order;
    None where the file has no `examples` table."""
    if "examples" not in table_names(store):
        return None
    return store.rows(
        "SELECT task, row_index, prompt, gold FROM examples WHERE split = 'holdout' "
        "AND task IN (SELECT unnest(?)) ORDER BY task, row_index",
        [tasks],
    )


def stored_answers(store: Store, job_ids: list[str]) -> list[tuple] | None:
    """(job_id, text, finish_reason, completion_tokens), one per job id found: in the build's
    `responses` (the same job id is the same request), in `eval_calls`, or, in a file from
    before eval_calls, among the prompted answers `eval_answers` kept. None: the file has
    none of these tables."""
    tables = table_names(store)
    sources = [
        f"SELECT job_id, text, finish_reason, completion_tokens FROM {t}"
        for t in ("responses", "eval_calls")
        if t in tables
    ]
    if "job_id" in column_names(store, "eval_answers"):
        sources.append(
            "SELECT job_id, answer, finish_reason, new_tokens FROM eval_answers "
            "WHERE model = 'prompted' AND job_id IS NOT NULL"
        )
    if not sources:
        return None
    return store.rows(
        f"SELECT DISTINCT ON (job_id) * FROM ({' UNION ALL '.join(sources)}) "
        "WHERE job_id IN (SELECT unnest(?::VARCHAR[]))",
        [job_ids],
    )


# ---- what eval measured: the latest run of each arm ----------------------------------------

_LATEST = "WITH latest AS (SELECT model, arg_max(run_id, created_at) AS run_id FROM eval_runs GROUP BY model)"


def latest_runs(store: Store) -> list[tuple]:
    """(model, task, examples, accuracy, adherence, *INTERVAL_COLUMNS) of each arm's latest run,
    by task and model; the intervals NULL in a file from before they were stored."""
    columns = column_names(store, "eval_runs")
    bounds = ", ".join(c if c in columns else f"NULL AS {c}" for c in INTERVAL_COLUMNS)
    return store.rows(
        f"""
        {_LATEST}
        SELECT e.model, e.task, e.examples, e.accuracy, e.adherence, {bounds}
        FROM eval_runs e JOIN latest USING (model, run_id) ORDER BY e.task, e.model
        """
    )


def latest_judgements(store: Store) -> list[tuple]:
    """(task, judge, model, judged, kept, mean score) over each arm's latest run."""
    return store.rows(
        f"""
        {_LATEST}
        SELECT g.task, g.judge, g.model, count(*), count(*) FILTER (WHERE g.accepted), avg(g.score)
        FROM eval_judgements g JOIN latest USING (model, run_id) GROUP BY ALL ORDER BY ALL
        """
    )


def latest_gaps(store: Store) -> list[tuple]:
    """(task, metric, gap closed, low, high) per task of the latest run that had all three arms;
    no bounds (NULL) in a file from before they were stored, no rows in one without the table."""
    if "eval_gaps" not in table_names(store):
        return []
    bounds = "g.gap_low, g.gap_high" if {"gap_low", "gap_high"} <= column_names(store, "eval_gaps") else "NULL, NULL"
    return store.rows(
        f"""
        WITH latest AS (
            SELECT arg_max(r.run_id, r.created_at) AS run_id FROM eval_runs r
            WHERE r.run_id IN (SELECT run_id FROM eval_gaps)
        )
        SELECT g.task, g.metric, g.gap_closed, {bounds} FROM eval_gaps g JOIN latest USING (run_id)
        WHERE g.task <> 'all'
        """
    )


def latest_paired(store: Store) -> list[tuple]:
    """(task, metric, pairs, worse, better, p) per task of the latest run that had base and trained."""
    if "eval_paired" not in table_names(store):
        return []
    return store.rows(
        """
        WITH latest AS (
            SELECT arg_max(r.run_id, r.created_at) AS run_id FROM eval_runs r
            WHERE r.run_id IN (SELECT run_id FROM eval_paired)
        )
        SELECT p.task, p.metric, p.pairs, p.worse, p.better, p.p_value FROM eval_paired p JOIN latest USING (run_id)
        WHERE p.task <> 'all' ORDER BY p.task, p.metric
        """
    )


def latest_follows(store: Store) -> list[tuple] | None:
    """(task, model, strategy followed, answers) over each arm's latest run; None in a file from
    before eval stored which strategy's form an answer follows."""
    if "follows" not in column_names(store, "eval_answers"):
        return None
    return store.rows(
        f"""
        {_LATEST}
        SELECT a.task, a.model, a.follows, count(*) FROM eval_answers a JOIN latest USING (model, run_id)
        WHERE a.follows IS NOT NULL GROUP BY ALL ORDER BY ALL
        """
    )


BENCHMARK_FIELDS = ("model", "benchmark", "top", "metric", "filter", "value", "stderr", "samples", "system_instruction")


def latest_benchmarks(store: Store) -> list[dict]:
    """Each arm's latest benchmark run (`BENCHMARK_FIELDS` of its rows), in the order they ran."""
    rows = store.rows(
        f"""
        WITH latest AS (
            SELECT model, arg_max(run_id, created_at) AS run_id FROM eval_benchmarks GROUP BY model
        )
        SELECT {", ".join("b." + c for c in BENCHMARK_FIELDS)}
        FROM eval_benchmarks b JOIN latest USING (model, run_id) ORDER BY b.created_at, b.benchmark, b.metric, b.filter
        """
    )
    return [dict(zip(BENCHMARK_FIELDS, r)) for r in rows]
