"""Every table orcac keeps in a spec's DuckDB file, and the schema version that names them
(and, at the end, the one table of the machine's answer cache).

One place for the DDL of the build (runs ... records, the batch path's three tables), the
probe's decisions, training and eval, so that a table's columns are written once and every
command opens the same database the same way (`orcac.runtime.store.database.open_database`).

Primary keys are what make a resumed build write nothing twice (`KEYS`: the tables the
build upserts by key). The tables without one (train_steps, eval_*) are append-only logs
keyed by their run id.

`SCHEMA_VERSION` is stamped into `schema_version` when a file is first written. A file from
an older orcac is migrated on its next write (`MIGRATIONS`, each step additive and in one
transaction); a file from a newer orcac is refused in one line, never half-understood.
"""

from __future__ import annotations

SCHEMA_VERSION = 8

TABLES: dict[str, str] = {
    # ---- the build (orcac/runtime/commands/build_records/command.py) ----
    "runs": """
        run_id VARCHAR PRIMARY KEY, plan_sha256 VARCHAR, orcac_version VARCHAR, python VARCHAR,
        duckdb_version VARCHAR, started TIMESTAMP, ended TIMESTAMP, status VARCHAR,
        calls BIGINT, cost DOUBLE""",
    "examples": """
        task VARCHAR, row_index BIGINT, split VARCHAR, probe BOOLEAN, prompt VARCHAR, gold VARCHAR,
        source_sha256 VARCHAR, PRIMARY KEY (task, row_index)""",
    # error: "<reason>: <detail>", what the user is shown; reason: a failed job's FailReason
    # (orcac/runtime/teachers/jobs.py) on its own, what the report tallies by (NULL unless failed).
    "jobs": """
        job_id VARCHAR PRIMARY KEY, task VARCHAR, strategy VARCHAR, row_index BIGINT, teacher VARCHAR,
        model VARCHAR, messages VARCHAR, status VARCHAR, attempts INTEGER, error VARCHAR, reason VARCHAR""",
    # family: the job id without max_tokens (teachers/jobs.py family_id), and max_tokens: the
    # limit the teacher was asked under, so an answer that stopped short of it answers the same
    # request under another limit (build/reuse.py). origin: "teacher" (asked by a build of this
    # file), "cache" (copied from the machine's answer cache, store/answer_cache.py); reused_from:
    # the job id whose answer this is, when it was asked under another max_tokens. NULL in rows
    # from before version 4 (asked by this file's builds; never reused across a limit).
    "responses": """
        job_id VARCHAR PRIMARY KEY, text VARCHAR, finish_reason VARCHAR, prompt_tokens BIGINT,
        completion_tokens BIGINT, cost DOUBLE, latency_s DOUBLE, model VARCHAR, attempts INTEGER,
        family VARCHAR, max_tokens BIGINT, origin VARCHAR, reused_from VARCHAR""",
    "checks": """
        item_id VARCHAR PRIMARY KEY, job_id VARCHAR, task VARCHAR, strategy VARCHAR, row_index BIGINT,
        accepted BOOLEAN, reason VARCHAR""",
    "records": """
        record_id VARCHAR PRIMARY KEY, task VARCHAR, strategy VARCHAR, split VARCHAR, row_index BIGINT,
        system VARCHAR, "user" VARCHAR, assistant VARCHAR, teacher VARCHAR, gold VARCHAR, job_id VARCHAR""",
    # A judge's verdict on an answer (orcac/runtime/answers/judges.py): the score read from the
    # judge's answer (job_id, in responses), its reasoning, and whether it kept the answer.
    "judgements": """
        item_id VARCHAR, judge VARCHAR, job_id VARCHAR, task VARCHAR, row_index BIGINT, score DOUBLE,
        reasoning VARCHAR, accepted BOOLEAN, reason VARCHAR, PRIMARY KEY (item_id, judge)""",
    # The batch path (orcac/runtime/teachers/batch.py): one row per uploaded file, the jobs in it,
    # and the lines its output and error files held once the batch ended.
    "batches": """
        input_file_id VARCHAR PRIMARY KEY, teacher VARCHAR, api_base VARCHAR, batch_id VARCHAR, status VARCHAR,
        lines BIGINT, completed BIGINT, failed BIGINT, output_file_id VARCHAR, error_file_id VARCHAR,
        collected BOOLEAN""",
    "batch_jobs": """
        input_file_id VARCHAR, job_id VARCHAR, n INTEGER, PRIMARY KEY (input_file_id, job_id)""",
    "batch_results": """
        input_file_id VARCHAR, job_id VARCHAR, line VARCHAR, ok BOOLEAN, n INTEGER,
        PRIMARY KEY (input_file_id, job_id)""",
    # ---- best_of probes (orcac/runtime/commands/build_records/probe/): every candidate's score, the chosen one marked ----
    "decisions": """
        task VARCHAR, key VARCHAR, strategy VARCHAR, chosen BOOLEAN, score DOUBLE, passed BIGINT,
        total BIGINT, prompt_tokens BIGINT, completion_tokens BIGINT, cost DOUBLE,
        PRIMARY KEY (task, key, strategy)""",
    # ---- training (orcac/runtime/commands/train/command.py) ----
    "train_runs": """
        run_id VARCHAR PRIMARY KEY, plan_sha256 VARCHAR, student VARCHAR, output VARCHAR,
        device VARCHAR, precision VARCHAR, packing BOOLEAN, isolated BOOLEAN,
        started_at TIMESTAMP, ended_at TIMESTAMP, status VARCHAR, final_loss DOUBLE,
        versions VARCHAR""",
    "train_steps": """
        run_id VARCHAR, stage VARCHAR, stage_index INTEGER, step INTEGER, epoch DOUBLE,
        loss DOUBLE, lr DOUBLE, grad_norm DOUBLE, tokens BIGINT, elapsed_s DOUBLE""",
    # ---- eval (orcac/runtime/commands/evaluate/command.py) ----
    "eval_runs": """
        run_id VARCHAR, model VARCHAR, model_path VARCHAR, task VARCHAR, strategy VARCHAR,
        examples INTEGER, accepted INTEGER, adherent INTEGER, truncated INTEGER,
        accuracy DOUBLE, adherence DOUBLE, seconds DOUBLE, plan_sha256 VARCHAR, created_at TIMESTAMP,
        accuracy_n INTEGER, accuracy_low DOUBLE, accuracy_high DOUBLE,
        adherence_n INTEGER, adherence_low DOUBLE, adherence_high DOUBLE""",
    "eval_answers": """
        run_id VARCHAR, model VARCHAR, task VARCHAR, row_index BIGINT, prompt VARCHAR, gold VARCHAR,
        answer VARCHAR, finish_reason VARCHAR, new_tokens INTEGER, accepted BOOLEAN, reason VARCHAR,
        adheres BOOLEAN, broken VARCHAR, job_id VARCHAR, follows VARCHAR""",
    # Every teacher call eval makes (orcac/runtime/commands/evaluate/calls.py), once, by its
    # content-addressed job id: the prompted arm's answers ("prompted") and the judges'
    # ("judged(NAME)"); and the judges' verdicts on each run's answers (evaluate/judging.py).
    "eval_calls": """
        job_id VARCHAR PRIMARY KEY, purpose VARCHAR, text VARCHAR, finish_reason VARCHAR,
        prompt_tokens BIGINT, completion_tokens BIGINT, cost DOUBLE""",
    "eval_judgements": """
        run_id VARCHAR, model VARCHAR, task VARCHAR, row_index BIGINT, judge VARCHAR, job_id VARCHAR,
        score DOUBLE, reasoning VARCHAR, accepted BOOLEAN, reason VARCHAR""",
    # How sure each figure is (orcac/stats.py): eval_runs' *_n, *_low, *_high are each rate's
    # n and 95% Wilson interval; eval_gaps' gap_low, gap_high the gap closed's bootstrap 95%
    # interval over rows; eval_paired base against trained on the same rows (exact McNemar):
    # `worse` rows base got right and trained wrong, `better` the other way round.
    "eval_gaps": """
        run_id VARCHAR, task VARCHAR, metric VARCHAR, base DOUBLE, prompted DOUBLE, trained DOUBLE,
        gap_closed DOUBLE, plan_sha256 VARCHAR, gap_low DOUBLE, gap_high DOUBLE""",
    "eval_paired": """
        run_id VARCHAR, task VARCHAR, metric VARCHAR, pairs INTEGER, worse INTEGER, better INTEGER,
        p_value DOUBLE, plan_sha256 VARCHAR""",
    # Standard benchmarks (orcac/runtime/commands/evaluate/benchmarks.py): one row per model, lm-eval
    # task (a group's row too: `top` marks the tasks the plan named) and metric, with its stderr.
    "eval_benchmarks": """
        run_id VARCHAR, model VARCHAR, model_path VARCHAR, benchmark VARCHAR, top BOOLEAN, metric VARCHAR,
        filter VARCHAR, value DOUBLE, stderr DOUBLE, samples INTEGER, shots INTEGER, system_instruction VARCHAR,
        lm_eval_version VARCHAR, plan_sha256 VARCHAR, created_at TIMESTAMP""",
    # ---- the file itself ----
    "owner": "spec VARCHAR",  # the one spec (its stem, see `spec_stem`) whose build this file holds
    "schema_version": "version INTEGER",
}

# The build's upserts: delete-then-insert by these columns (orcac.runtime.store.database.Store.write).
KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id",),
    "examples": ("task", "row_index"),
    "jobs": ("job_id",),
    "responses": ("job_id",),
    "checks": ("item_id",),
    "records": ("record_id",),
    "judgements": ("item_id", "judge"),
}

# A failed job's reason as a file from before version 8 holds it: the start of its error text
# ("<reason>: <detail>", or just "<reason>"). What the migration fills the reason column with,
# and what a reader of such a file, opened read-only and so not migrated, reads instead.
REASON_IN_ERROR = "split_part(coalesce(error, 'failed'), ':', 1)"

# version -> the statements that bring a file of that version to the next one. Version 0 is a
# file from before versions were stamped: every table above except that eval answers had no
# job id (prompted answers reused by job id came later).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    0: ("ALTER TABLE eval_answers ADD COLUMN IF NOT EXISTS job_id VARCHAR",),
    1: (f"CREATE TABLE IF NOT EXISTS judgements ({TABLES['judgements']})",),  # judges came with version 2
    2: tuple(
        f"CREATE TABLE IF NOT EXISTS {name} ({TABLES[name]})"  # eval's calls and judges, version 3
        for name in ("eval_calls", "eval_judgements")
    ),
    3: tuple(
        f"ALTER TABLE responses ADD COLUMN IF NOT EXISTS {column}"  # answer reuse, version 4
        for column in ("family VARCHAR", "max_tokens BIGINT", "origin VARCHAR", "reused_from VARCHAR")
    ),
    4: (f"CREATE TABLE IF NOT EXISTS eval_benchmarks ({TABLES['eval_benchmarks']})",),  # benchmarks, version 5
    5: (  # how sure each eval figure is (intervals and the paired test), version 6
        *(
            f"ALTER TABLE eval_runs ADD COLUMN IF NOT EXISTS {column}"
            for column in (
                "accuracy_n INTEGER",
                "accuracy_low DOUBLE",
                "accuracy_high DOUBLE",
                "adherence_n INTEGER",
                "adherence_low DOUBLE",
                "adherence_high DOUBLE",
            )
        ),
        "ALTER TABLE eval_gaps ADD COLUMN IF NOT EXISTS gap_low DOUBLE",
        "ALTER TABLE eval_gaps ADD COLUMN IF NOT EXISTS gap_high DOUBLE",
        f"CREATE TABLE IF NOT EXISTS eval_paired ({TABLES['eval_paired']})",
    ),
    # which strategy's form each eval answer follows (orcac.specs.forms.followed), version 7
    6: ("ALTER TABLE eval_answers ADD COLUMN IF NOT EXISTS follows VARCHAR",),
    # a failed job's reason in a column of its own, version 8: older rows get it read once out
    # of their error text, which has always begun with it
    7: (
        "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS reason VARCHAR",
        f"UPDATE jobs SET reason = {REASON_IN_ERROR} WHERE status = 'failed' AND reason IS NULL",
    ),
}


# ---- the machine's answer cache (orcac/runtime/store/answer_cache.py): a SQLite file, not a
# spec's database. Its format is PRAGMA user_version; a file of a newer one is left alone.
ANSWER_CACHE_FORMAT = 1
ANSWER_CACHE = """
CREATE TABLE IF NOT EXISTS answers (
    job_id TEXT PRIMARY KEY, family TEXT, model TEXT, max_tokens INTEGER, text TEXT NOT NULL,
    finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, cost REAL,
    answer_model TEXT, stored REAL, used REAL, digest TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS answers_family ON answers (family);
"""


def failure_reason(jobs_columns: set[str]) -> str:
    """SQL for a failed job's reason over a jobs table with these columns: its own column, or,
    in a file from before version 8 read as it is (opened read-only, so not migrated), the
    start of its error text.

    >>> failure_reason({"error", "reason"})
    "coalesce(reason, 'failed')"
    """
    return "coalesce(reason, 'failed')" if "reason" in jobs_columns else REASON_IN_ERROR


def create_statements() -> list[str]:
    """CREATE TABLE IF NOT EXISTS for every table, in the order above."""
    return [f"CREATE TABLE IF NOT EXISTS {name} ({body})" for name, body in TABLES.items()]
