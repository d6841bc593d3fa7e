"""`orcac build` end to end against the loopback server, through litellm's real HTTP path."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from orcac import cli
from orcac.specs.plan import TeacherPlan
from orcac.specs.plan_file import plan_sha256, read_plan
from tests.support.db import rows
from tests.support.loopback import Loopback
from tests.support.plans import arith_answer, make_plan, write_plan

SECRET = "sk-orcac-test-SECRET-9f3a71"


def _q(i: int) -> str:
    return f"What is {i} plus {i + 1}?"


pytestmark = pytest.mark.usefixtures("fast_backoff")


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("LOOPBACK_KEY", SECRET)


def _teacher(server: Loopback, **fields) -> TeacherPlan:
    options = dict(model="openai/loopback", timeout_s=10.0, max_retries=2, concurrency=8, api_key_env="LOOPBACK_KEY")
    options.update(fields)
    return TeacherPlan(name="t", api_base=server.url, **options)


def _build(path, *extra) -> int:
    return cli.main(["build", str(path), "--no-progress", *extra])


FAULTS = {
    _q(1): ["429:retry_after=1", "ok"],  # retried after the server's Retry-After
    _q(2): ["500", "503", "ok"],  # retried server errors
    _q(4): ["hang:s=30", "ok"],  # past the timeout, then answered
    _q(5): ["malformed"] * 20,  # never valid JSON: fails for good
    _q(6): ["length:chars=5"],  # truncated: answered but rejected
    _q(7): ["hang:s=30"] * 20,  # always past the timeout: fails for good
    _q(8): ["drop", "ok"],  # connection closed without an answer, then answered
}


@pytest.mark.slow
def test_every_job_ends_accepted_rejected_or_failed_exactly_once(tmp_path, capsys):
    with Loopback(arith_answer, script=FAULTS) as server:
        # 3 s: long enough that a loaded CI machine does not time out an ordinary answer.
        plan = make_plan(tmp_path, n=12, holdout=0.0, teacher=_teacher(server, timeout_s=3.0))
        path = write_plan(tmp_path, plan)
        assert _build(path) == 0
        db = tmp_path / ".orca" / "spec.duckdb"

        jobs = dict(rows(db, "SELECT row_index, status FROM jobs"))
        assert sorted(jobs) == list(range(12))
        # the plan's one hash, as training and eval store it, so runs join on it
        assert rows(db, "SELECT plan_sha256 FROM runs") == [(plan_sha256(read_plan(path)),)]
        errors = dict(rows(db, "SELECT row_index, split_part(error, ':', 1) FROM jobs WHERE status = 'failed'"))
        assert errors == {5: "bad_response", 7: "timeout"}
        checks = rows(db, "SELECT row_index, accepted, reason FROM checks ORDER BY row_index")
        assert [r[0] for r in checks] == [i for i in range(12) if i not in (5, 7)]  # once per answered job
        assert {r[0]: r[2] for r in checks if not r[1]} == {6: "truncated"}
        records = rows(db, 'SELECT row_index, system, "user", assistant FROM records ORDER BY row_index')
        assert [r[0] for r in records] == [i for i in range(12) if i not in (5, 6, 7)]
        for row_index, system, user, assistant in records:
            assert system == plan.erase["cautious"].system
            assert user == _q(row_index)
            assert assistant.endswith(f"Answer: {2 * row_index + 1}")
        attempts = dict(rows(db, "SELECT row_index, attempts FROM jobs"))
        assert attempts[1] >= 2 and attempts[2] >= 3 and attempts[4] >= 2 and attempts[8] >= 2
        summary = capsys.readouterr()
        assert "truncated 1" in summary.out and "bad_response 1" in summary.out and "timeout 1" in summary.out
        assert "2 job(s) failed after retries: run the same command to retry them" in summary.err

        # A re-run sends only the two failed jobs again, and writes nothing twice.
        before = server.stats()["hits"]
        assert _build(path) == 0
        after = server.stats()["hits"]
        grown = {key for key in after if after[key] != before.get(key)}
        assert grown == {_q(5), _q(7)}
        assert rows(db, "SELECT count(*), count(DISTINCT row_index) FROM records") == [(9, 9)]
        assert rows(db, "SELECT count(*) FROM checks") == [(10,)]


def test_a_finished_build_rerun_makes_zero_calls_and_keys_stay_out(tmp_path):
    with Loopback(arith_answer, latency=0.01) as server:
        plan = make_plan(tmp_path, n=40, teacher=_teacher(server))
        path = write_plan(tmp_path, plan)
        assert _build(path) == 0
        calls = server.stats()["requests"]
        assert calls == plan.tasks["arith"].counts.train
        assert _build(path) == 0
        assert server.stats()["requests"] == calls
        db = tmp_path / ".orca" / "spec.duckdb"
        assert rows(db, "SELECT count(*) FROM records") == [(calls,)]
        # Held-out rows are stored as examples and never sent.
        holdout = {r[0] for r in rows(db, "SELECT prompt FROM examples WHERE split = 'holdout'")}
        assert len(holdout) == plan.tasks["arith"].counts.holdout
        assert holdout.isdisjoint(server.stats()["hits"])
        assert server.stats()["auth"]  # the key did go to the server...
        _assert_secret_absent(db)  # ...and nowhere else


def _assert_secret_absent(db):
    assert SECRET.encode() not in db.read_bytes()
    for (table,) in rows(db, "SELECT table_name FROM information_schema.tables"):
        text = rows(db, f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM {table}")
        assert not any(SECRET in (v or "") for row in text for v in row), table


def test_limit_and_dry_run(tmp_path, capsys):
    from orcac import costs

    with Loopback(arith_answer) as server:
        # a model litellm's price map knows, served by the loopback (api_base)
        plan = make_plan(tmp_path, n=30, teacher=_teacher(server, model="openai/gpt-4o-mini"))
        path = write_plan(tmp_path, plan)
        assert _build(path, "--dry-run") == 0
        out = capsys.readouterr().out
        assert server.stats()["requests"] == 0
        train = plan.tasks["arith"].counts.train
        assert "dry run: nothing was called" in out
        line = next(line for line in out.splitlines() if line.startswith("arith"))
        examples, cached, calls = (int(x) for x in line.split()[1:4])
        assert (examples, cached, calls) == (train, 0, train)
        tokens = int(line.split()[5].replace(",", ""))
        priced = costs.cost("openai/gpt-4o-mini", tokens, train, plan.teachers["t"].max_tokens)
        assert priced > 0 and line.split()[-1] == f"${priced:,.4f}"  # the price map's, for these prompts
        assert _build(path, "--limit", "5") == 0
        assert server.stats()["requests"] == 5
        capsys.readouterr()
        assert _build(path, "--dry-run") == 0
        line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("arith"))
        assert [int(x) for x in line.split()[1:4]] == [train, 5, train - 5]


def test_a_row_that_fails_to_render_is_reported_and_the_rest_are_built(tmp_path, capsys):
    from tests.support.plans import arithmetic_rows

    data = arithmetic_rows(8)
    del data[3]["a"]  # strict undefined: its gold cannot render
    with Loopback(arith_answer) as server:
        plan = make_plan(tmp_path, data, holdout=0.0, teacher=_teacher(server))
        path = write_plan(tmp_path, plan)
        assert _build(path) == 0
        err = capsys.readouterr().err
        assert "task arith: row 4 skipped: UndefinedError: 'a' is undefined" in err
        db = tmp_path / ".orca" / "spec.duckdb"
        assert sorted(r[0] for r in rows(db, "SELECT row_index FROM jobs")) == [0, 1, 2, 4, 5, 6, 7]


def test_a_bad_key_stops_the_build_with_one_line_naming_the_teacher(tmp_path, capsys):
    with Loopback(arith_answer, faults="401") as server:
        plan = make_plan(tmp_path, n=10, teacher=_teacher(server))
        path = write_plan(tmp_path, plan)
        assert _build(path) == 1
        err = capsys.readouterr().err
        assert "error: teacher t (openai/loopback): authentication failed (401)" in err
        assert "Traceback" not in err and SECRET not in err
        db = tmp_path / ".orca" / "spec.duckdb"
        assert rows(db, "SELECT status FROM runs") == [("failed",)]


def test_changed_rules_and_erase_text_take_effect_without_calls(tmp_path):
    from orcac.specs.plan import CheckRule, ErasePlan

    with Loopback(arith_answer) as server:
        plan = make_plan(tmp_path, n=10, holdout=0.0, teacher=_teacher(server))
        path = write_plan(tmp_path, plan)
        assert _build(path) == 0
        calls = server.stats()["requests"]
        db = tmp_path / ".orca" / "spec.duckdb"

        erase = ErasePlan(name="cautious", system="You are a helpful assistant who reasons with care.", origin="t:3")
        write_plan(tmp_path, plan.model_copy(update={"erase": {"cautious": erase}}))
        assert _build(path) == 0
        assert rows(db, "SELECT DISTINCT system FROM records") == [(erase.system,)]
        assert rows(db, "SELECT count(*) FROM records") == [(10,)]

        strict = plan.tasks["arith"].model_copy(update={"accept": (CheckRule(kind="regex", pattern="^Never$"),)})
        write_plan(tmp_path, plan.model_copy(update={"tasks": {"arith": strict}}))
        assert _build(path) == 0
        assert rows(db, "SELECT count(*) FROM records") == [(0,)]
        assert rows(db, "SELECT DISTINCT accepted, reason FROM checks") == [(False, "regex")]

        assert server.stats()["requests"] == calls  # all of it from stored answers


def test_records_of_another_strategy_are_replaced_not_kept(tmp_path):
    with Loopback(arith_answer) as server:
        plan = make_plan(tmp_path, n=10, holdout=0.0, teacher=_teacher(server))
        path = write_plan(tmp_path, plan)
        assert _build(path) == 0
        other = make_plan(
            tmp_path,
            n=10,
            holdout=0.0,
            teacher=_teacher(server),
            strategy_text="Solve it the short way. Reply with one line of the form 'Answer: <number>'.",
        )
        write_plan(tmp_path, other)
        assert _build(path) == 0
        assert server.stats()["requests"] == 20  # new system prompt, new jobs
        db = tmp_path / ".orca" / "spec.duckdb"
        assert rows(db, "SELECT count(*), count(DISTINCT job_id) FROM records") == [(10, 10)]
        assert rows(db, "SELECT count(*) FROM checks") == [(10,)]
        systems = {r[0] for r in rows(db, "SELECT messages FROM jobs j JOIN records r USING (job_id)")}
        assert all("short way" in s for s in systems)


def test_live_progress_and_summary_show_counts_tokens_cost_and_failures():
    import io
    from collections import Counter

    from rich.console import Console

    from orcac.runtime.commands.build_records.progress import BuildProgress, Tally, summary_table

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200)
    display = BuildProgress(4, live=True, console=console).start()
    for reason in (None, None, "timeout", None):
        display.outcome(failed_reason=reason, prompt_tokens=10, completion_tokens=5, cost=0.25)
        if reason is None:
            display.verdict(passed=True)
    display.stop()
    shown = buffer.getvalue()
    assert "4/4 calls" in shown and "req/s" in shown and "60 tokens" in shown and "$1.0000" in shown
    assert "passed 3, rejected 0" in shown and "failed: timeout 1" in shown

    tallies = {
        ("arith", "step"): Tally(
            rows=4,
            items=4,
            calls=4,
            passed=2,
            accepted=2,
            rejected=Counter(truncated=1),
            failed=Counter(timeout=1),
            prompt_tokens=40,
            completion_tokens=20,
            cost=1.0,
        ),
        ("qa", "direct"): Tally(rows=2, items=2, cached=2, passed=2, accepted=2),
    }
    out = io.StringIO()
    Console(file=out, width=200).print(summary_table(tallies, 3.0))
    table = out.getvalue()
    for expected in ("arith", "step", "truncated 1", "timeout 1", "$1.0000", "qa", "direct", "all", "passed", "kept"):
        assert expected in table
    assert "not kept" not in table  # a column only where judges or `keep` left answers out


def test_control_characters_from_a_provider_never_reach_the_terminal(tmp_path, capsys):
    with Loopback(arith_answer, faults="401", error_text=" \x1b[2J\x1b]0;owned\x07\rgone") as server:
        path = write_plan(tmp_path, make_plan(tmp_path, n=4, teacher=_teacher(server)))
        assert _build(path) == 1
    err = capsys.readouterr().err
    assert "authentication failed (401)" in err
    assert "\x1b" not in err and "\x07" not in err and "\r" not in err
    assert "\\x1b[2J" in err  # shown, neutralised, so the user still sees what the provider sent


EXPERIMENT = """orca 1

import "std/strategies.orca"
import "std/erase.orca"

teacher t {{
  model       = "openai/loopback"
  api_base    = "{url}"
  api_key     = env("LOOPBACK_KEY")
  max_retries = 1
}}

student s {{ model = "local/smollm2-135m-instruct" }}

task arith {{
  from     = jsonl("data.jsonl")
  prompt   = "{{{{ q }}}}"
  gold     = "{{{{ a }}}}"
  strategy = {strategy}
  erase    = cautious
  holdout  = 0%
  accept   = contains(gold)
}}

train {{
  student = s
  stage only {{ tasks = [arith] }}
}}
"""


def test_specs_that_share_a_name_prefix_share_nothing(tmp_path, capsys):
    """exp.v1.orca and exp.v2.orca: one database and one output directory each, by one rule,
    and a build never deletes records another spec's build wrote."""
    from orcac.compiler import load_plan
    from tests.support.plans import arithmetic_rows, write_jsonl

    write_jsonl(tmp_path / "data.jsonl", arithmetic_rows(6))
    with Loopback(arith_answer) as server:
        v1, v2 = tmp_path / "exp.v1.orca", tmp_path / "exp.v2.orca"
        v1.write_text(EXPERIMENT.format(url=server.url, strategy="step_by_step"))
        v2.write_text(EXPERIMENT.format(url=server.url, strategy="direct_answer"))
        assert _build(v1) == 0
        db1 = tmp_path / ".orca" / "exp.v1.duckdb"
        before = rows(db1, "SELECT * FROM records ORDER BY record_id")
        assert len(before) == 6
        assert _build(v2) == 0
        db2 = tmp_path / ".orca" / "exp.v2.duckdb"
        assert rows(db1, "SELECT * FROM records ORDER BY record_id") == before
        assert rows(db2, "SELECT count(*) FROM records") == [(6,)]
        assert load_plan(v1).plan.train.output == ".orca/exp.v1/student"  # the same stem as the database
        assert load_plan(v2).plan.train.output == ".orca/exp.v2/student"

        capsys.readouterr()
        assert _build(v2, "--db", str(db1)) == 1  # sharing on purpose: refused, not merged
        err = capsys.readouterr().err
        assert "holds the build of spec 'exp.v1', not of 'exp.v2'" in err and len(err.strip().splitlines()) == 2
        assert rows(db1, "SELECT * FROM records ORDER BY record_id") == before


def test_every_run_says_how_it_ended(tmp_path):
    with Loopback(arith_answer) as server:
        path = write_plan(tmp_path, make_plan(tmp_path, n=5, holdout=0.0, teacher=_teacher(server)))
        assert _build(path) == 0
        db = tmp_path / ".orca" / "spec.duckdb"
        assert rows(db, "SELECT status FROM runs") == [("finished",)]
        con = duckdb.connect(str(db))  # what a build killed with kill -9 leaves behind
        con.execute("INSERT INTO runs (run_id, started, status) VALUES ('dead', now(), 'running')")
        con.close()
        assert _build(path) == 0
        assert sorted(rows(db, "SELECT run_id = 'dead', status FROM runs")) == [
            (False, "finished"),
            (False, "finished"),
            (True, "interrupted"),
        ]


def _hold_lock(db) -> subprocess.Popen:
    """Another process with the database open for writing (as a running build has it)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(120)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "ready"
    return holder


@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_database_locked_by_another_process_is_one_line(tmp_path, capsys, command):
    from orcac.compiler import dump_plan
    from tests.support.plans import train_plan
    from tests.support.train_data import orca_rows, write_records

    (tmp_path / "test.plan.yaml").write_text(dump_plan(train_plan("unused-model")))
    db = write_records(tmp_path / "build.duckdb", orca_rows("add", 2), holdout=orca_rows("add", 2, seed=1))
    holder = _hold_lock(db)
    try:
        assert cli.main([command, str(tmp_path / "test.plan.yaml"), "--db", str(db)]) == 1
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    err = capsys.readouterr().err
    assert f"error: {db} is in use by another orcac process" in err
    assert "internal error" not in err and len(err.strip().splitlines()) == 2


def test_a_request_that_drops_its_connection_fails_alone_and_a_rerun_finishes(tmp_path, capsys):
    with Loopback(arith_answer, script={_q(3): ["drop"] * 3}) as server:  # 3 = every attempt of one build
        path = write_plan(tmp_path, make_plan(tmp_path, n=10, holdout=0.0, teacher=_teacher(server)))
        assert _build(path) == 0
        db = tmp_path / ".orca" / "spec.duckdb"
        assert rows(db, "SELECT row_index, split_part(error, ':', 1) FROM jobs WHERE status = 'failed'") == [
            (3, "connection_error")
        ]
        assert rows(db, "SELECT count(*) FROM records") == [(9,)]
        assert "1 job(s) failed after retries" in capsys.readouterr().err
        assert _build(path) == 0
        assert rows(db, "SELECT count(*) FROM records") == [(10,)]
        assert server.stats()["hits"][_q(3)] == 4 and server.stats()["requests"] == 13
