"""`mode = batch`: a build through the provider's files and batches API, against a loopback one.

litellm's real files and batches functions talk to tests/support/batch_server.py; the build is
the real `orcac build` (in-process, or a subprocess where a test kills it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import litellm
import pytest

from orcac import cli
from orcac.runtime.teachers import batch as batch_api
from orcac.specs.plan import TeacherPlan
from tests.support.batch_server import BatchServer
from tests.support.db import rows
from tests.support.plans import arith_answer, arithmetic_rows, make_plan, write_plan

pytestmark = pytest.mark.xdist_group("loopback")
ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-batch-test-k3y-0123456789"


@pytest.fixture(autouse=True)
def _quick_polls(monkeypatch):
    monkeypatch.setattr(batch_api, "POLL_SECONDS", 0.01)
    monkeypatch.setenv("LOOPBACK_KEY", KEY)


def _teacher(server: BatchServer, **fields) -> TeacherPlan:
    options = dict(name="t", model="openai/loopback", api_base=server.url, api_key_env="LOOPBACK_KEY", mode="batch")
    options.update(fields)
    return TeacherPlan(**options)


def _spec(tmp_path, server, data=None, n=10, **teacher_fields) -> Path:
    plan = make_plan(tmp_path, data, n=n, holdout=0.0, teacher=_teacher(server, **teacher_fields))
    return write_plan(tmp_path, plan)


def _db(tmp_path) -> Path:
    return tmp_path / ".orca" / "spec.duckdb"


def _build(path, *extra) -> int:
    return cli.main(["build", str(path), "--no-progress", *extra])


def test_a_batch_build_answers_checks_and_records_like_an_online_one(tmp_path, capsys):
    with BatchServer(arith_answer) as server:
        spec = _spec(tmp_path, server)
        assert _build(spec) == 0
        stats = server.stats()
    db = _db(tmp_path)
    jobs = {r[0] for r in rows(db, "SELECT job_id FROM jobs WHERE status = 'ok'")}
    assert len(jobs) == 10
    assert stats["batches_created"] == 1 and set(stats["batches"][0]["custom_ids"]) == jobs  # custom_id = job id
    assert rows(db, "SELECT count(*) FROM records")[0][0] == 10  # the same checks accepted them
    assert rows(db, "SELECT batch_id, status, lines, collected FROM batches") == [("batch_1", "completed", 10, True)]
    cost = rows(db, "SELECT sum(cost), sum(prompt_tokens) FROM responses")[0]
    assert cost[1] > 0
    err = capsys.readouterr().err
    assert "batch batch_1: teacher t: in_progress" in err and "completed, 10/10 done" in err  # the display


def test_a_rerun_of_a_finished_batch_build_makes_no_call(tmp_path):
    with BatchServer(arith_answer) as server:
        spec = _spec(tmp_path, server)
        assert _build(spec) == 0
        before = server.stats()
        assert _build(spec) == 0
        after = server.stats()
    assert after == before  # no upload, no batch, no retrieve, no download


def test_jobs_go_in_files_within_the_provider_limits(tmp_path, monkeypatch):
    monkeypatch.setattr(batch_api, "MAX_LINES", 4)
    with BatchServer(arith_answer) as server:
        assert _build(_spec(tmp_path, server)) == 0
        stats = server.stats()
    assert [b["lines"] for b in stats["batches"]] == [4, 4, 2]
    assert batch_api.chunks([100] * 5, max_bytes=250) == [range(0, 2), range(2, 4), range(4, 5)]


def test_per_line_errors_and_missing_lines_become_failures_with_reasons(tmp_path, capsys):
    data = arithmetic_rows(4) + [
        {"q": "line-error please", "a": "x"},
        {"q": "missing please", "a": "x"},
        {"q": "line-5xx please", "a": "x"},
    ]
    with BatchServer(arith_answer) as server:
        spec = _spec(tmp_path, server, data=data)
        assert _build(spec) == 0
        errors = dict(
            rows(
                _db(tmp_path),
                "SELECT json_extract_string(messages, '$[1].content'), error FROM jobs WHERE status = 'failed'",
            )
        )
        assert errors["line-error please"].startswith("bad_request: injected line error 400")
        assert errors["line-5xx please"].startswith("server_error: injected line error 500")
        assert errors["missing please"].startswith("missing: not in the batch's output")
        assert "3 job(s) failed" in capsys.readouterr().err
        # The next build sends only those three again, in a new batch.
        assert _build(spec) == 0
        stats = server.stats()
    assert [b["lines"] for b in stats["batches"]] == [7, 3]


def test_an_expired_batch_resubmits_only_the_jobs_without_an_answer(tmp_path):
    with BatchServer(arith_answer, ends=["expired"], expired_share=0.5) as server:
        assert _build(_spec(tmp_path, server)) == 0
        stats = server.stats()
    assert [(b["status"], b["lines"]) for b in stats["batches"]] == [("expired", 10), ("completed", 5)]
    assert sorted(stats["lines_seen"].values()) == [1] * 5 + [2] * 5
    assert set(stats["batches"][1]["custom_ids"]).isdisjoint(stats["batches"][0]["custom_ids"][:5])
    assert rows(_db(tmp_path), "SELECT count(*) FROM records")[0][0] == 10


def test_a_failed_batch_fails_its_jobs_and_the_next_build_sends_them_again(tmp_path):
    with BatchServer(arith_answer, ends=["failed"]) as server:
        spec = _spec(tmp_path, server)
        assert _build(spec) == 0
        reasons = {r[0] for r in rows(_db(tmp_path), "SELECT error FROM jobs")}
        assert reasons == {"batch_failed: injected: the input was rejected"}
        assert _build(spec) == 0
        stats = server.stats()
    assert [(b["status"], b["lines"]) for b in stats["batches"]] == [("failed", 10), ("completed", 10)]
    assert rows(_db(tmp_path), "SELECT count(*) FROM records")[0][0] == 10


def _start_build(spec: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), ORCAC_BATCH_POLL_S="0.05")
    return subprocess.Popen(
        [sys.executable, "-m", "orcac.cli", "build", str(spec), "--no-progress"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_while_polling(spec: Path, server: BatchServer) -> None:
    """`orcac build` in a subprocess, killed with SIGKILL once it has polled its batch twice."""
    build = _start_build(spec)
    try:
        deadline = time.monotonic() + 60
        while server.stats().get("retrieves", 0) < 2:
            assert time.monotonic() < deadline, "the build never polled"
            time.sleep(0.1)
    finally:
        build.kill()
        build.wait(30)
        build.stderr.close()


@pytest.mark.slow
def test_a_killed_build_resumes_polling_the_same_batch_and_sends_nothing_twice(tmp_path):
    with BatchServer(arith_answer, hold=True) as server:
        spec = _spec(tmp_path, server)
        _kill_while_polling(spec, server)
        # The ids were written before the build waited on anything.
        assert rows(_db(tmp_path), "SELECT batch_id, status FROM batches") == [("batch_1", "in_progress")]
        server.release()
        assert _build(spec) == 0
        stats = server.stats()
    assert stats["batches_created"] == 1 and stats["file_uploads"] == 1
    assert set(stats["lines_seen"].values()) == {1}  # no job was submitted twice
    assert rows(_db(tmp_path), "SELECT count(*) FROM records")[0][0] == 10


def test_a_build_killed_after_the_upload_creates_the_batch_once(tmp_path, monkeypatch):
    with BatchServer(arith_answer) as server:
        spec = _spec(tmp_path, server)
        real = litellm.acreate_batch

        async def created_then_killed(**kwargs):
            await real(**kwargs)
            raise KeyboardInterrupt  # the batch exists at the provider; this build never recorded it

        monkeypatch.setattr(litellm, "acreate_batch", created_then_killed)
        assert _build(spec) == 130  # interrupted, as Ctrl-C would
        assert rows(_db(tmp_path), "SELECT batch_id FROM batches") == [(None,)]
        monkeypatch.setattr(litellm, "acreate_batch", real)
        assert _build(spec) == 0
        stats = server.stats()
    assert stats["batches_created"] == 1 and stats["file_uploads"] == 1  # found by its file id, not made again
    assert rows(_db(tmp_path), "SELECT count(*) FROM records")[0][0] == 10


@pytest.mark.slow
def test_cancel_cancels_live_batches_and_the_next_build_sends_only_the_unanswered(tmp_path, capsys):
    with BatchServer(arith_answer, hold=True) as server:
        spec = _spec(tmp_path, server)
        _kill_while_polling(spec, server)
        assert _build(spec, "--cancel") == 0
        assert "teacher t: batch batch_1: cancelling" in capsys.readouterr().out
        assert server.stats()["cancels"] == 1
        server.release()  # the batch sent again is not held
        assert _build(spec) == 0
        stats = server.stats()
    assert [(b["status"], b["lines"]) for b in stats["batches"]] == [("cancelled", 10), ("completed", 5)]
    assert set(stats["lines_seen"].values()) == {1, 2} and sum(stats["lines_seen"].values()) == 15
    assert rows(_db(tmp_path), "SELECT count(*) FROM records")[0][0] == 10


def test_cancel_without_live_batches_says_so(tmp_path, capsys):
    with BatchServer() as server:
        assert _build(_spec(tmp_path, server), "--cancel") == 0
    assert "nothing to cancel" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("openai/gpt-4o-mini", "litellm's batch price"),
        ("openai/gpt-3.5-turbo", "assumed 50% of the online price"),
        ("openai/loopback", "no price known for openai/loopback"),
    ],
)
def test_the_dry_run_prices_the_batch_and_says_where_the_price_came_from(tmp_path, capsys, model, says):
    with BatchServer() as server:
        assert _build(_spec(tmp_path, server, model=model), "--dry-run") == 0
        assert server.stats().get("file_uploads", 0) == 0
    out = capsys.readouterr().out
    assert "teacher t: 10 jobs in 1 batch file(s)" in out and says in out


def test_batch_prices_are_litellms_where_it_has_them():
    from orcac.costs import batch_price, price

    assert batch_price("gpt-4o-mini")[:2] == (7.5e-08, 3e-07)
    assert batch_price("gpt-3.5-turbo")[:2] == tuple(p * 0.5 for p in price("gpt-3.5-turbo"))


def test_a_provider_without_a_jsonl_batch_api_is_a_one_line_error(tmp_path, capsys):
    with BatchServer() as server:
        spec = _spec(tmp_path, server, model="anthropic/claude-3-5-haiku-latest")
        assert cli.main(["build", str(spec), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "mode = batch is not supported for provider anthropic" in err and "Traceback" not in err
