"""The report's reads of the build's and training's tables (`orcac report`,
orcac/runtime/commands/report/command.py): each a query over the file as it is, returning
rows for the report to lay out. What eval measured is read by orcac/runtime/store/evaluations.py.
"""

from __future__ import annotations

from orcac.runtime.store.database import Store
from orcac.runtime.store.queries import column_names
from orcac.runtime.store.schema import failure_reason


def builds(store: Store) -> list[tuple]:
    """(started, status, calls, cost, seconds) of every `orcac build`, in order."""
    return store.rows(
        "SELECT strftime(started, '%Y-%m-%d %H:%M:%S'), status, calls, cost, "
        "date_diff('millisecond', started, ended) / 1000.0 FROM runs ORDER BY started, run_id"
    )


def example_counts(store: Store) -> list[tuple]:
    """(task, split, probe, examples)."""
    return store.rows("SELECT task, split, probe, count(*) FROM examples GROUP BY ALL ORDER BY ALL")


def verdict_counts(store: Store) -> list[tuple]:
    """(task, accepted, reason, answers) of the checks."""
    return store.rows("SELECT task, accepted, reason, count(*) FROM checks GROUP BY ALL ORDER BY ALL")


def _asked(store: Store) -> str:
    """The filter for answers this file's builds asked a teacher for: not those copied from the
    machine's answer cache or reused from a request under another max_tokens (build_records/reuse.py),
    which cost no call and no time, and would inflate the calls and deflate the mean latency.
    A file from before schema 4 has no such columns: every answer in it was asked."""
    if "origin" not in column_names(store, "responses"):
        return "(WHERE true)"
    return "(WHERE coalesce(r.origin, 'teacher') = 'teacher' AND r.reused_from IS NULL)"


def task_calls(store: Store) -> dict[str, tuple]:
    """task -> (calls asked, failed jobs, prompt tokens, completion tokens, cost, teacher
    seconds, answers reused)."""
    asked = _asked(store)
    return {
        r[0]: r[1:]
        for r in store.rows(
            f"""
        SELECT j.task, count(r.job_id) FILTER {asked}, count(*) FILTER (WHERE j.status = 'failed'),
               coalesce(sum(r.prompt_tokens), 0), coalesce(sum(r.completion_tokens), 0),
               coalesce(sum(r.cost), 0), coalesce(sum(r.latency_s), 0),
               count(r.job_id) - count(r.job_id) FILTER {asked}
        FROM jobs j LEFT JOIN responses r USING (job_id) GROUP BY j.task
        """
        )
    }


def record_counts(store: Store) -> dict[str, int]:
    """task -> its records."""
    return dict(store.rows("SELECT task, count(*) FROM records GROUP BY task"))


def teacher_totals(store: Store) -> dict[str, tuple]:
    """teacher -> (model, calls asked, retries, failed jobs, prompt tokens, completion tokens,
    cost, mean latency of the calls asked)."""
    asked = _asked(store)
    return {
        r[0]: r[1:]
        for r in store.rows(
            f"""
        SELECT j.teacher, any_value(j.model), count(r.job_id) FILTER {asked},
               coalesce(sum(greatest(j.attempts - 1, 0)), 0),
               count(*) FILTER (WHERE j.status = 'failed'), coalesce(sum(r.prompt_tokens), 0),
               coalesce(sum(r.completion_tokens), 0), coalesce(sum(r.cost), 0), avg(r.latency_s) FILTER {asked}
        FROM jobs j LEFT JOIN responses r USING (job_id) GROUP BY j.teacher
        """
        )
    }


def _failure_reason(store: Store) -> str:
    """A failed job's reason: its column (schema 8), or the start of its error in an older file
    read as it is (schema.failure_reason)."""
    return failure_reason(column_names(store, "jobs"))


def teacher_failures(store: Store) -> list[tuple]:
    """(teacher, reason, failed jobs)."""
    return store.rows(
        f"SELECT teacher, {_failure_reason(store)}, count(*) FROM jobs "
        "WHERE status = 'failed' GROUP BY ALL ORDER BY ALL"
    )


def judge_counts(store: Store) -> list[tuple]:
    """(task, judge, judged, kept, scored, mean, min, max) from `judgements`."""
    return store.rows(
        """
        SELECT task, judge, count(*), count(*) FILTER (WHERE accepted), count(score), avg(score),
               min(score), max(score)
        FROM judgements GROUP BY ALL ORDER BY ALL
        """
    )


def judge_scores(store: Store) -> list[tuple]:
    """(task, judge, score) of every judgement with a score."""
    return store.rows("SELECT task, judge, score FROM judgements WHERE score IS NOT NULL ORDER BY ALL")


def judge_calls(store: Store) -> dict[tuple[str, str], tuple]:
    """(task, judge) -> (calls answered, failed, cost): a judge's jobs are the task's jobs whose
    strategy is `judged(NAME)`."""
    return {
        (r[0], r[1]): r[2:]
        for r in store.rows(
            """
        SELECT j.task, regexp_extract(j.strategy, '^judged\\((.*)\\)$', 1), count(r.job_id),
               count(*) FILTER (WHERE j.status = 'failed'), coalesce(sum(r.cost), 0)
        FROM jobs j LEFT JOIN responses r USING (job_id)
        WHERE j.strategy LIKE 'judged(%)' GROUP BY ALL
        """
        )
    }


RECORD_COLUMNS = (
    "task",
    "strategy",
    "row_index",
    "accepted",
    "reason",
    "teacher",
    "messages",
    "answer",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "latency_s",
    "attempts",
    "erased_system",
    "erased_user",
    "gold",
    "group_total",
    "judgements",
)


def record_sample(store: Store, sample: int, *, judgements: bool = True) -> list[dict]:
    """Up to `sample` items per (task, verdict: accepted, rejected, failed), the first by md5 of
    the item id (the same file gives the same sample), as `RECORD_COLUMNS` (the fourth holds the
    verdict); each with its judgements where the file has the table."""
    judged = (
        "(SELECT list({'judge': g.judge, 'score': g.score, 'reasoning': g.reasoning, 'accepted': g.accepted, "
        "'reason': g.reason} ORDER BY g.judge) FROM judgements g WHERE g.item_id = i.id)"
        if judgements
        else "NULL"
    )
    rows = store.rows(
        f"""
        WITH items AS (
            SELECT c.item_id AS id, c.task, c.strategy, c.row_index,
                   CASE WHEN c.accepted THEN 'accepted' ELSE 'rejected' END AS verdict, c.reason,
                   c.job_id
            FROM checks c
            UNION ALL
            SELECT j.job_id, j.task, j.strategy, j.row_index, 'failed', j.failure, j.job_id
            FROM (SELECT *, {_failure_reason(store)} AS failure FROM jobs) j WHERE j.status = 'failed'
        ), ranked AS (
            SELECT *, row_number() OVER (PARTITION BY task, verdict ORDER BY md5(id)) AS n,
                      count(*) OVER (PARTITION BY task, verdict) AS group_total
            FROM items
        )
        SELECT i.task, i.strategy, i.row_index, i.verdict, i.reason, j.teacher, j.messages,
               coalesce(r.text, j.error, rec.assistant), r.finish_reason, r.prompt_tokens, r.completion_tokens, r.cost,
               r.latency_s, j.attempts, rec.system, rec."user", coalesce(rec.gold, e.gold), i.group_total,
               {judged}
        FROM ranked i
        LEFT JOIN jobs j ON j.job_id = i.job_id  -- none for an answer from the source
        LEFT JOIN responses r ON r.job_id = i.job_id
        LEFT JOIN records rec ON rec.record_id = i.id
        LEFT JOIN examples e ON e.task = i.task AND e.row_index = i.row_index
        WHERE i.n <= ?
        ORDER BY i.task, i.verdict, i.n
        """,
        [sample],
    )
    return [dict(zip(RECORD_COLUMNS, row)) for row in rows]


def record_totals(store: Store) -> dict[tuple[str, str], int]:
    """(task, verdict) -> items: every checked answer and failed job, sampled or not."""
    return {
        (t, v): n
        for t, v, n in store.rows(
            """
        SELECT task, CASE WHEN accepted THEN 'accepted' ELSE 'rejected' END, count(*) FROM checks GROUP BY ALL
        UNION ALL SELECT task, 'failed', count(*) FROM jobs WHERE status = 'failed' GROUP BY ALL
        """
        )
    }


def decisions(store: Store) -> list[tuple]:
    """(task, key, strategy, chosen, score, passed, total, prompt tokens, completion tokens, cost)
    of every probe candidate, by task, key and strategy."""
    return store.rows(
        "SELECT task, key, strategy, chosen, score, passed, total, prompt_tokens, completion_tokens, cost "
        "FROM decisions ORDER BY task, key, strategy"
    )


def latest_training(store: Store) -> tuple | None:
    """(run_id, student, device, precision, status, final_loss, started) of the latest training run."""
    runs = store.rows(
        "SELECT run_id, student, device, precision, status, final_loss, strftime(started_at, '%Y-%m-%d %H:%M:%S') "
        "FROM train_runs ORDER BY started_at DESC, run_id LIMIT 1"
    )
    return runs[0] if runs else None


def training_losses(store: Store, run_id: str) -> list[tuple]:
    """(stage_index, stage, step, loss) of a training run's logged steps, in order."""
    return store.rows(
        "SELECT stage_index, stage, step, loss FROM train_steps WHERE run_id = ? AND loss IS NOT NULL "
        "ORDER BY stage_index, step",
        [run_id],
    )
