"""The build's reads and writes of its database (orcac.runtime.store.database): every SQL
statement `orcac build` and the answers library (orcac.runtime.answers) send, one function
each, all taking the Store. The probe's are in orcac.runtime.store.probes.

What the rows mean is said where they are made (orcac.runtime.commands.build_records);
here is only how they are found. Ids go in as one list parameter (`in_list`), never row by row.
"""

from __future__ import annotations

import platform
import uuid

from orcac.runtime.store.database import Store, in_list

# ---- runs: one row per `orcac build` --------------------------------------------------------


def start_run(store: Store, plan_sha256: str) -> str:
    """A new run, 'running' until `end_run`; returns its id (a run found 'running' by the next
    build's Store.open died unseen)."""
    import duckdb

    from orcac import __version__

    run_id = uuid.uuid4().hex
    store.execute(
        "INSERT INTO runs (run_id, plan_sha256, orcac_version, python, duckdb_version, started, status) "
        "VALUES (?, ?, ?, ?, ?, now(), 'running')",
        [run_id, plan_sha256, __version__, platform.python_version(), duckdb.__version__],
    )
    return run_id


def end_run(store: Store, run_id: str, status: str, calls: int, cost: float) -> None:
    store.execute(
        "UPDATE runs SET ended = now(), status = ?, calls = ?, cost = ? WHERE run_id = ?",
        [status, calls, cost, run_id],
    )


# ---- responses and jobs -----------------------------------------------------------------------


def stored_answers(store: Store, job_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """job id -> (text, finish reason) of the stored answers among these jobs."""
    found = store.rows(f"SELECT job_id, text, finish_reason FROM responses WHERE {in_list('job_id')}", [job_ids])
    return {job_id: (text, finish) for job_id, text, finish in found}


def answered_ids(store: Store, job_ids: list[str]) -> set[str]:
    """The jobs among these whose answer is stored (the text is not read)."""
    return {r[0] for r in store.rows(f"SELECT job_id FROM responses WHERE {in_list('job_id')}", [job_ids])}


def failed_ids(store: Store, job_ids: list[str]) -> set[str]:
    """The jobs among these that failed for good (after retries)."""
    return {
        r[0] for r in store.rows(f"SELECT job_id FROM jobs WHERE status = 'failed' AND {in_list('job_id')}", [job_ids])
    }


def teacher_answered_ids(store: Store, job_ids: list[str]) -> list[str]:
    """The jobs among these whose stored answer a teacher gave this database (not copied in)."""
    asked = "coalesce(origin, 'teacher') = 'teacher' AND text IS NOT NULL"
    return [r[0] for r in store.rows(f"SELECT job_id FROM responses WHERE {asked} AND {in_list('job_id')}", [job_ids])]


def answers_with_usage(store: Store, job_ids: list[str]) -> list[tuple]:
    """(job_id, text, finish_reason, prompt_tokens, completion_tokens, cost, model) per stored answer."""
    return store.rows(
        "SELECT job_id, text, finish_reason, prompt_tokens, completion_tokens, cost, model FROM responses "
        f"WHERE {in_list('job_id')}",
        [job_ids],
    )


def stopped_answers(store: Store, families: list[str]) -> list[tuple]:
    """Every stored answer of these request families that stopped by itself: (job_id, family,
    job's model, max_tokens, text, finish_reason, prompt_tokens, completion_tokens, cost,
    answering model)."""
    return store.rows(
        "SELECT r.job_id, r.family, j.model, r.max_tokens, r.text, r.finish_reason, r.prompt_tokens, "
        "r.completion_tokens, r.cost, r.model FROM responses r LEFT JOIN jobs j USING (job_id) "
        f"WHERE r.finish_reason = 'stop' AND r.text IS NOT NULL AND {in_list('r.family')}",
        [families],
    )


# ---- examples ----------------------------------------------------------------------------------

EXAMPLE_COLUMNS = ("task", "row_index", "split", "probe", "prompt", "gold", "source_sha256")


def stored_examples(store: Store, tasks: list[str]) -> set[tuple]:
    """These tasks' stored examples, as EXAMPLE_COLUMNS tuples."""
    return set(
        store.rows(
            f"SELECT {', '.join(EXAMPLE_COLUMNS)} FROM examples WHERE task IN (SELECT unnest(?::VARCHAR[]))", [tasks]
        )
    )


def forget_examples(store: Store, task: str, keep_rows: list[int]) -> None:
    """Delete the task's stored examples whose row is not among `keep_rows`."""
    store.execute(
        "DELETE FROM examples WHERE task = ? AND row_index NOT IN (SELECT unnest(?::BIGINT[]))", [task, keep_rows]
    )


# ---- checks, records, judgements ----------------------------------------------------------------


def stored_checks(store: Store, item_ids: list[str]) -> dict[str, tuple[bool, str | None]]:
    """item id -> its stored (accepted, reason)."""
    return {
        r[0]: (r[1], r[2])
        for r in store.rows(f"SELECT item_id, accepted, reason FROM checks WHERE {in_list('item_id')}", [item_ids])
    }


def stored_records(store: Store, record_ids: list[str], fields: tuple[str, ...]) -> dict[str, tuple]:
    """record id -> its stored record's `fields` (orcac.runtime.answers.erasure.RECORD_FIELDS)."""
    columns = ", ".join(f'"{f}"' for f in fields)
    return {
        r[0]: tuple(r[1:])
        for r in store.rows(f"SELECT record_id, {columns} FROM records WHERE {in_list('record_id')}", [record_ids])
    }


def stored_judgements(store: Store, item_ids: list[str]) -> dict[str, set[tuple]]:
    """item id -> its stored judgements, as (judge, job_id, score, reasoning, accepted, reason)."""
    out: dict[str, set[tuple]] = {}
    if not item_ids:
        return out
    for row in store.rows(
        f"SELECT item_id, judge, job_id, score, reasoning, accepted, reason FROM judgements WHERE {in_list('item_id')}",
        [item_ids],
    ):
        out.setdefault(row[0], set()).add(tuple(row[1:]))
    return out


# ---- the erasure audits (orcac.runtime.answers.erasure, .given) ---------------------------------

# `erasure.normalise` in DuckDB (its pattern, erasure.WHITESPACE, is the query's first
# parameter). lower(), not casefold(): DuckDB has no casefold, and casefold turns ß into ss, so
# a sentence with ß was never found. DuckDB's lower() maps one code point to one; Python's maps
# U+0130 (İ) to two, hence the replace in `normalise`.
NORMALISED = "lower(regexp_replace({column}, $1, ' ', 'g'))"


def sql_normalised(column: str) -> str:
    """`normalise` in DuckDB, of `column`, in a query whose first parameter is WHITESPACE."""
    return NORMALISED.format(column=column)


def leaked_sentences(store: Store, whitespace: str, labels: list[str], sentences: list[str]) -> list[tuple]:
    """Every (label, sentence, field) whose normalised sentence is in the normalised `system` or
    `user` of a stored record: (label, sentence, field, first 5 record ids, count), sorted."""
    return store.rows(
        f"""
        WITH sentences AS (
            SELECT unnest($2::VARCHAR[]) AS strategy, unnest($3::VARCHAR[]) AS sentence
        ), norm AS (
            SELECT record_id,
                   {sql_normalised("system")} AS system,
                   {sql_normalised('"user"')} AS "user"
            FROM records
        ), hits AS (
            SELECT s.strategy, s.sentence, 'system' AS field, n.record_id
            FROM norm n JOIN sentences s ON contains(n.system, s.sentence)
            UNION ALL
            SELECT s.strategy, s.sentence, 'user' AS field, n.record_id
            FROM norm n JOIN sentences s ON contains(n."user", s.sentence)
        )
        SELECT strategy, sentence, field, list(record_id ORDER BY record_id)[1:5] AS ids, count(*) AS n
        FROM hits GROUP BY ALL ORDER BY strategy, sentence, field
        """,
        [whitespace, labels, sentences],
    )


def leaked_row_instructions(
    store: Store, whitespace: str, record_ids: list[str], which: list[int], sentences: list[str]
) -> list[tuple]:
    """For each (record id, index into `sentences`) pair: whether that sentence is in the
    record's normalised system, user or assistant; (task, index, field, first 5 record ids,
    count) per hit, sorted."""
    fields = (("system", "system"), ("user", '"user"'), ("assistant", "assistant"))
    hits = " UNION ALL ".join(
        f"SELECT n.task, p.k, '{name}' AS field, n.record_id FROM norm n JOIN pairs p USING (record_id) "
        f"WHERE contains(n.{column}, list_extract($4::VARCHAR[], p.k + 1))"
        for name, column in fields
    )
    return store.rows(
        f"""
        WITH pairs AS (
            SELECT unnest($2::VARCHAR[]) AS record_id, unnest($3::INTEGER[]) AS k
        ), norm AS (
            SELECT record_id, task,
                   {sql_normalised("system")} AS system,
                   {sql_normalised('"user"')} AS "user",
                   {sql_normalised("assistant")} AS assistant
            FROM records WHERE record_id IN (SELECT record_id FROM pairs)
        ), hits AS ({hits})
        SELECT task, k, field, list(record_id ORDER BY record_id)[1:5] AS ids, count(*) AS n
        FROM hits GROUP BY ALL ORDER BY task, k, field
        """,
        [whitespace, record_ids, which, sentences],
    )
