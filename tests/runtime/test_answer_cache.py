"""The machine's answer cache (orcac/runtime/store/answer_cache.py) and answers reused across a
changed max_tokens (orcac/runtime/commands/build_records/reuse.py), end to end against the loopback teacher."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orcac import cli
from orcac.runtime.store.answer_cache import FILE, AnswerCache
from orcac.specs.plan import TeacherPlan
from tests.support.db import rows
from tests.support.loopback import Loopback
from tests.support.plans import arith_answer, make_plan, write_plan

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("fast_backoff")


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("LOOPBACK_KEY", "sk-answer-cache-SECRET-51c2")


def _teacher(server: Loopback, **fields) -> TeacherPlan:
    options = dict(model="openai/loopback", timeout_s=10.0, max_retries=2, concurrency=8, api_key_env="LOOPBACK_KEY")
    options.update(fields)
    return TeacherPlan(name="t", api_base=server.url, **options)


def _spec(root: Path, name: str, teacher: TeacherPlan, n: int = 12) -> Path:
    """A spec `name` over the same 12 questions and teacher as any other made here."""
    root.mkdir(parents=True, exist_ok=True)
    return write_plan(
        root, make_plan(root, n=n, holdout=0.0, teacher=teacher, spec=f"{name}.orca"), f"{name}.plan.yaml"
    )


def _build(path: Path, *extra: str) -> int:
    return cli.main(["build", str(path), "--no-progress", *extra])


def _db(path: Path, name: str) -> Path:
    return path.parent / ".orca" / f"{name}.duckdb"


def test_a_second_spec_over_the_same_tasks_and_teacher_makes_no_calls(tmp_path, answer_cache, capsys):
    with Loopback(arith_answer) as server:
        first = _spec(tmp_path / "a", "distill", _teacher(server))
        second = _spec(tmp_path / "b", "other_student", _teacher(server))
        assert _build(first) == 0
        paid = server.stats()["requests"]
        assert paid == 12
        capsys.readouterr()

        assert _build(second, "--dry-run") == 0
        out = capsys.readouterr().out
        total = next(line for line in out.splitlines() if line.startswith("total")).split()
        assert total[1:4] == ["12", "12", "0"]  # examples, cached, calls
        assert f"cached: 12 answer(s) from the answer cache ({answer_cache / FILE})" in out

        assert _build(second) == 0
        second_requests = server.stats()["requests"] - paid
        with capsys.disabled():  # the measurement, shown with `pytest -s`
            print(f"\nsecond spec's build: {second_requests} requests to the teacher (the first spec's: {paid})")
        assert second_requests == 0
        assert "12 answer(s) from the answer cache" in capsys.readouterr().err

    for part in answer_cache.iterdir():  # the file and its WAL: answers only, never the key
        assert b"SECRET-51c2" not in part.read_bytes()
    # its own database records everything its build used, marked as from the cache, costing nothing here
    db = _db(second, "other_student")
    assert rows(db, "SELECT origin, count(*), sum(cost) FROM responses GROUP BY origin") == [("cache", 12, 0.0)]
    assert rows(db, "SELECT status, attempts, count(*) FROM jobs GROUP BY ALL") == [("ok", 0, 12)]
    assert rows(db, "SELECT count(*) FROM records")[0][0] == 12
    same = "SELECT job_id, text, finish_reason FROM responses ORDER BY job_id"
    assert rows(db, same) == rows(_db(first, "distill"), same)
    assert rows(_db(first, "distill"), "SELECT DISTINCT origin FROM responses") == [("teacher",)]

    # the report counts what each build paid for: the second asked nothing, its answers reused
    from orcac.runtime.commands.report.command import gather
    from orcac.runtime.store.database import Store
    from orcac.specs.plan_file import read_plan

    for path, name, calls, reused in ((first, "distill", 12, 0), (second, "other_student", 0, 12)):
        with Store.open(_db(path, name), read_only=True) as store:
            report = gather(read_plan(path), store, sample=0)
        assert [(t["calls"], t["reused"]) for t in report["tasks"]] == [(calls, reused)]
        assert [t["calls"] for t in report["teachers"]] == [calls]
        assert (report["teachers"][0]["latency"] is None) == (calls == 0)


def test_no_cache_and_off_ask_the_teacher_and_store_nothing(tmp_path, answer_cache, monkeypatch):
    with Loopback(arith_answer) as server:
        first = _spec(tmp_path / "a", "distill", _teacher(server))
        assert _build(first, "--no-cache") == 0
        assert not (answer_cache / FILE).exists()
        monkeypatch.setenv("ORCAC_ANSWER_CACHE", "off")
        assert _build(_spec(tmp_path / "b", "other", _teacher(server))) == 0
        assert server.stats()["requests"] == 24


def test_a_database_from_before_the_cache_fills_it_on_its_next_build(tmp_path, answer_cache, monkeypatch):
    """Answers a build stored without the cache (an older orcac, --no-cache, or a kill between
    its two writes) go into it on the next build of that database, which asks nothing."""
    with Loopback(arith_answer) as server:
        first = _spec(tmp_path / "a", "distill", _teacher(server))
        assert _build(first, "--no-cache") == 0
        assert _build(first) == 0
        assert _build(_spec(tmp_path / "b", "other", _teacher(server))) == 0
        assert server.stats()["requests"] == 12


def test_failures_are_never_cached(tmp_path, answer_cache):
    from tests.runtime.test_build import _q

    with Loopback(arith_answer, script={_q(3): ["400"] * 10}) as server:
        first = _spec(tmp_path / "a", "distill", _teacher(server))
        assert _build(first) == 0
        with AnswerCache.open() as cache:
            assert sum(r[1] for r in cache.summary()) == 11
        before = server.stats()["requests"]
        assert _build(_spec(tmp_path / "b", "other", _teacher(server))) == 0
        assert server.stats()["requests"] - before == 1  # only the failed one is asked again


def test_an_entry_that_does_not_match_its_id_is_ignored_and_asked_again(tmp_path, answer_cache):
    with Loopback(arith_answer) as server:
        assert _build(_spec(tmp_path / "a", "distill", _teacher(server))) == 0
        con = sqlite3.connect(answer_cache / FILE)
        ids = [r[0] for r in con.execute("SELECT job_id FROM answers ORDER BY job_id")]
        # one answer swapped for another job's, one edited: neither is handed to its job
        con.execute(
            "UPDATE answers SET text = (SELECT text FROM answers WHERE job_id = ?) WHERE job_id = ?", [ids[1], ids[0]]
        )
        con.execute("UPDATE answers SET text = 'Answer: 0' WHERE job_id = ?", [ids[2]])
        con.commit()
        con.close()
        before = server.stats()["requests"]
        second = _spec(tmp_path / "b", "other", _teacher(server))
        assert _build(second) == 0
        assert server.stats()["requests"] - before == 2
    db = _db(second, "other")
    assert rows(db, "SELECT origin, count(*) FROM responses GROUP BY origin ORDER BY origin") == [
        ("cache", 10),
        ("teacher", 2),
    ]
    assert rows(db, "SELECT count(*) FROM records")[0][0] == 12  # both answered correctly again


def test_an_unreadable_cache_is_a_note_and_a_build_without_it(tmp_path, answer_cache, capsys):
    answer_cache.mkdir()
    (answer_cache / FILE).write_bytes(b"not a database at all" * 100)
    with Loopback(arith_answer) as server:
        assert _build(_spec(tmp_path / "a", "distill", _teacher(server))) == 0
        assert server.stats()["requests"] == 12
    assert "the answer cache at" in capsys.readouterr().err
    assert cli.main(["cache", "clear"]) == 0
    assert not (answer_cache / FILE).exists()


def _start(plan_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orcac.cli", "build", str(plan_path), "--no-progress"],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_two_builds_at_once_share_the_cache(tmp_path, answer_cache):
    """Two processes writing the one cache file at once: both finish, every answer is stored
    once, and a third spec then asks nothing."""
    with Loopback(arith_answer, latency=0.02) as server:
        specs = [_spec(tmp_path / name, name, _teacher(server), n=120) for name in ("a", "b")]
        procs = [_start(path) for path in specs]
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err.decode()
        asked = server.stats()["requests"]
        assert 120 <= asked <= 240  # each asked what the other had not stored yet
        with AnswerCache.open() as cache:
            assert sum(r[1] for r in cache.summary()) == 120
        assert _build(_spec(tmp_path / "c", "c", _teacher(server), n=120)) == 0
        assert server.stats()["requests"] == asked
    for name, path in zip(("a", "b"), specs):
        assert rows(_db(path, name), "SELECT count(*) FROM records")[0][0] == 120


@pytest.mark.slow
def test_kill_9_mid_build_then_resume_from_the_cache(tmp_path, answer_cache):
    """A build killed with -9 leaves the cache readable with what it committed; a resumed build,
    and another spec after it, ask only what was never stored."""
    with Loopback(arith_answer, latency=0.05) as server:
        first = _spec(tmp_path / "a", "a", _teacher(server), n=200)
        proc = _start(first)
        deadline = time.monotonic() + 60
        while server.stats()["requests"] < 80 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
        with AnswerCache.open() as cache:
            stored = sum(r[1] for r in cache.summary())
        in_database = rows(_db(first, "a"), "SELECT count(*) FROM responses")[0][0]
        assert 0 < stored <= in_database < 200  # into the cache once in the database, never before
        before = server.stats()["requests"]
        assert _build(first) == 0
        asked = server.stats()["requests"]
        assert asked - before == 200 - in_database  # what was stored before the kill was not asked again
        assert _build(_spec(tmp_path / "b", "b", _teacher(server), n=200)) == 0
        assert server.stats()["requests"] == asked
    with AnswerCache.open() as cache:
        assert sum(r[1] for r in cache.summary()) == 200


def test_orcac_cache_info_prune_and_clear(tmp_path, answer_cache, capsys):
    with Loopback(arith_answer) as server:
        assert _build(_spec(tmp_path / "a", "distill", _teacher(server))) == 0
    capsys.readouterr()
    assert cli.main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"answer cache: {answer_cache / FILE}" in out and "12 answers" in out and "openai/loopback" in out
    assert cli.main(["cache", "prune", "--older-than", "30d"]) == 0
    assert "pruned 0 answer(s)" in capsys.readouterr().out
    assert cli.main(["cache", "prune", "--model", "openai/other"]) == 0
    assert "pruned 0 answer(s)" in capsys.readouterr().out
    assert cli.main(["cache", "prune", "--model", "openai/loopback", "--older-than", "0s"]) == 0
    assert "pruned 12 answer(s)" in capsys.readouterr().out
    assert cli.main(["cache", "prune"]) == 1
    assert cli.main(["cache", "prune", "--older-than", "soon"]) == 1
    assert "not an age" in capsys.readouterr().err
    assert cli.main(["cache", "clear"]) == 0
    assert not (answer_cache / FILE).exists()


# ---- answers reused across a changed max_tokens ----------------------------------------------------


def _limited(server: Loopback, root: Path, max_tokens: int) -> Path:
    return _spec(root, "distill", _teacher(server, max_tokens=max_tokens))


def test_raising_max_tokens_asks_again_only_the_answers_that_were_cut_off(tmp_path, capsys):
    from tests.runtime.test_build import _q

    cut = {_q(i): ["length:chars=5"] for i in (2, 5, 9)}  # cut under max_tokens 64, whole the next time
    with Loopback(arith_answer, script=cut) as server:
        assert _build(_limited(server, tmp_path, 64)) == 0
        assert server.stats()["requests"] == 12
        db = _db(tmp_path / "distill.plan.yaml", "distill")
        assert rows(db, "SELECT count(*) FROM records")[0][0] == 9
        capsys.readouterr()

        raised = _limited(server, tmp_path, 128)
        assert _build(raised, "--dry-run") == 0
        out = capsys.readouterr().out
        assert "cached: 9 answer(s) reused from max_tokens 64 (they stopped before it)" in out
        total = next(line for line in out.splitlines() if line.startswith("total")).split()
        assert total[1:4] == ["12", "9", "3"]

        assert _build(raised) == 0
        asked = [key for _, key, _ in server.stats()["log"][12:]]
        assert sorted(asked) == sorted(cut)  # only the cut ones, again
    assert rows(db, "SELECT count(*) FROM records")[0][0] == 12
    assert rows(db, "SELECT origin, max_tokens, count(*) FROM responses GROUP BY ALL ORDER BY ALL") == [
        ("reused", 64, 9),
        ("teacher", 64, 12),
        ("teacher", 128, 3),
    ]


def test_lowering_max_tokens_reuses_only_answers_that_fit_the_new_limit(tmp_path, capsys):
    def answer(body: dict) -> str:  # one long answer: 50 more tokens at the loopback's 4 characters a token
        text = arith_answer(body)
        return text + "x" * 200 if text.startswith("First take 3,") else text

    with Loopback(answer) as server:
        assert _build(_limited(server, tmp_path, 128)) == 0
        capsys.readouterr()
        assert _build(_limited(server, tmp_path, 32), "--dry-run") == 0
        assert (
            "cached: 11 answer(s) reused from max_tokens 128 (they stopped within 32 tokens)" in capsys.readouterr().out
        )
        assert _build(_limited(server, tmp_path, 32)) == 0
        assert server.stats()["requests"] == 13


def test_anything_else_that_determines_the_answer_reuses_nothing(tmp_path):
    with Loopback(arith_answer) as server:
        assert _build(_limited(server, tmp_path, 64)) == 0
        assert _build(_spec(tmp_path, "distill", _teacher(server, max_tokens=128, temperature=0.7))) == 0
        assert server.stats()["requests"] == 24


def test_judges_and_probes_of_a_second_spec_make_no_calls(tmp_path, answer_cache, capsys):
    """A judged task's judge jobs and a best_of task's probe jobs are teacher jobs like any:
    a second spec over the same tasks finds them all in the cache."""
    from tests.runtime import test_judges, test_probe

    with Loopback(test_judges.respond) as server:
        for name in ("a", "b"):
            (tmp_path / "judged" / name).mkdir(parents=True)
            assert _build(test_judges.write_spec(tmp_path / "judged" / name, server)) == 0
            if name == "a":
                paid = server.stats()["requests"]
                assert paid > 12  # the teacher's answers and the judge's
        assert server.stats()["requests"] == paid
    db = tmp_path / "judged" / "b" / ".orca" / "judged.duckdb"
    assert rows(db, "SELECT DISTINCT origin FROM responses") == [("cache",)]
    assert rows(db, "SELECT count(*) FROM judgements")[0][0] > 0

    with Loopback(test_probe.sums) as server:
        for name in ("a", "b"):
            (tmp_path / "probe" / name).mkdir(parents=True)
            spec = test_probe.write_spec(tmp_path / "probe" / name, server, "direct, step")
            if name == "b":
                capsys.readouterr()
                assert _build(spec, "--dry-run") == 0
                line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("arith") and "x 2" in x)
                assert line.split()[1:6] == ["4", "x", "2", "8", "0"]  # rows x candidates, cached, calls
            assert _build(spec) == 0
            if name == "a":
                paid = server.stats()["requests"]
        assert server.stats()["requests"] == paid


def test_eval_reads_and_fills_the_same_cache(tmp_path, answer_cache):
    """eval's prompted arm and judges ask through orcac/runtime/commands/evaluate/calls.py: what one
    database's eval asked, another's finds (and a build's answers, an eval's)."""
    from orcac.runtime.commands.evaluate import calls
    from orcac.runtime.teachers.jobs import make_job

    with Loopback(arith_answer) as server:
        plan = make_plan(tmp_path, n=4, teacher=_teacher(server))
        teacher = plan.teachers["t"]
        jobs = [
            make_job(teacher, [{"role": "user", "content": f"What is {i} plus 1?"}], {"max_tokens": 32})
            for i in range(4)
        ]
        heard, failed = calls.ask(
            plan,
            tmp_path,
            tmp_path / "one.duckdb",
            jobs,
            dict.fromkeys((j.id for j in jobs), "prompted"),
            label="prompted",
        )
        assert len(heard) == 4 and not failed
        assert server.stats()["requests"] == 4
        again = calls.stored(tmp_path / "another.duckdb", [j.id for j in jobs])
        assert again == heard
        with AnswerCache.open() as cache:
            assert {a.max_tokens for a in cache.get([j.id for j in jobs]).values()} == {32}
