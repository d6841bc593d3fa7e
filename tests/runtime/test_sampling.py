"""Rejection sampling: N samples per example are N content-addressed jobs; up to K accepted,
distinct answers become records; a killed sampled build resumes without asking anything twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orcac import cli
from orcac.runtime.answers.checks import kept_samples
from orcac.runtime.answers.items import items_for_task, plan_work
from orcac.specs.plan import CheckRule, SamplingPlan, TeacherPlan
from tests.support.db import rows
from tests.support.loopback import Loopback
from tests.support.plans import make_plan, seeded_answer, write_plan

ROOT = Path(__file__).resolve().parents[2]


def sampled_plan(tmp_path, teacher, *, samples=4, keep=2, n=10):
    plan = make_plan(tmp_path, n=n, holdout=0.0, teacher=teacher, accept=(CheckRule(kind="numeric"),))
    task = plan.tasks["arith"].model_copy(
        update={"sampling": SamplingPlan(samples=samples, keep=keep, temperature=0.9)}
    )
    return plan.model_copy(update={"tasks": {"arith": task}})


def test_n_samples_are_n_jobs_with_their_own_seeds(tmp_path):
    plan = sampled_plan(tmp_path, None, samples=3)
    work = plan_work(plan, tmp_path)
    assert len(work.items) == 3 * 10
    by_row: dict[int, list] = {}
    for item in work.items:
        by_row.setdefault(item.row_index, []).append(item)
    for items in by_row.values():
        assert [i.sample for i in items] == [0, 1, 2]
        assert len({i.job.id for i in items}) == 3  # the sample is part of the key
        options = [dict(i.job.options) for i in items]
        assert {o["temperature"] for o in options} == {0.9}
        assert len({o["seed"] for o in options}) == 3
    again = plan_work(plan, tmp_path)
    assert [i.job.id for i in again.items] == [i.job.id for i in work.items]  # reproducible
    one = items_for_task(plan, plan.tasks["arith"], work.examples["arith"], "step", samples=1)
    assert [i.job.id for i in one] == [i.job.id for i in work.items if i.sample == 0]  # the probe's jobs


def test_keep_chooses_the_lowest_accepted_distinct_samples_whatever_the_order():
    answers = [(3, "Answer: 7", True), (1, "answer: 7 ", True), (0, "Answer: 8", False), (2, "So 7.\nAnswer: 7", True)]
    assert kept_samples(answers, keep=2) == {3: "duplicate"}
    assert kept_samples(list(reversed(answers)), keep=1) == {2: "beyond keep", 3: "duplicate"}


def _records(db: Path) -> list[tuple]:
    return rows(db, "SELECT row_index, assistant FROM records ORDER BY row_index, assistant")


def _expected(n: int, samples: int, keep: int, plan) -> list[tuple]:
    """What the records must be, worked out from the responder and the seeds alone."""
    from orcac.runtime.answers.items import sample_options

    task = plan.tasks["arith"]
    out = []
    for row in range(n):
        body = {"messages": [{"role": "user", "content": f"What is {row} plus {row + 1}?"}]}
        answers = []
        for i in range(samples):
            text = seeded_answer({**body, "seed": sample_options(task, row, i)["seed"]})
            answers.append((i, text, text.endswith(f"Answer: {2 * row + 1}")))
        dropped = kept_samples(answers, keep)
        out += [(row, text) for i, text, ok in answers if ok and i not in dropped]
    return sorted(out)


def test_a_sampled_build_keeps_up_to_k_accepted_distinct_answers(tmp_path, monkeypatch, capsys, fast_backoff):
    monkeypatch.setenv("LOOPBACK_KEY", "sk-sampling")
    with Loopback(seeded_answer) as server:
        teacher = TeacherPlan(name="t", model="openai/loopback", api_base=server.url, api_key_env="LOOPBACK_KEY")
        plan = sampled_plan(tmp_path, teacher)
        path = write_plan(tmp_path, plan)
        assert cli.main(["build", str(path), "--dry-run"]) == 0
        assert "arith" in (out := capsys.readouterr().out) and " 40 " in out  # every sample is counted
        assert cli.main(["build", str(path), "--no-progress"]) == 0
        assert server.stats()["requests"] == 40
        summary = capsys.readouterr().out
        records = _records(tmp_path / ".orca" / "spec.duckdb")
        assert records == _expected(10, 4, 2, plan)
        assert max(sum(1 for r, _ in records if r == row) for row in range(10)) == 2
        assert f"{100 * len(records) / 40:.0f}%" in summary  # the yield, kept / asked
        # fewer kept: the same answers, no new calls, fewer records
        fewer = plan.model_copy(
            update={
                "tasks": {
                    "arith": plan.tasks["arith"].model_copy(
                        update={"sampling": SamplingPlan(samples=4, keep=1, temperature=0.9)}
                    )
                }
            }
        )
        path = write_plan(tmp_path, fewer)
        assert cli.main(["build", str(path), "--no-progress"]) == 0
        assert server.stats()["requests"] == 40
        assert _records(tmp_path / ".orca" / "spec.duckdb") == _expected(10, 4, 1, plan)


@pytest.mark.slow
def test_a_killed_sampled_build_resumes_without_asking_anything_twice(tmp_path):
    with Loopback(seeded_answer, latency=0.05, process=True) as server:
        teacher = TeacherPlan(
            name="t", model="openai/loopback", api_base=server.url, api_key_env="LOOPBACK_KEY", concurrency=8
        )
        plan = sampled_plan(tmp_path, teacher, samples=4, keep=2, n=120)
        path = write_plan(tmp_path, plan)
        db = tmp_path / "build.duckdb"
        env = dict(os.environ, LOOPBACK_KEY="sk-sampling", LITELLM_LOCAL_MODEL_COST_MAP="True")
        argv = [sys.executable, "-m", "orcac.cli", "build", str(path), "--db", str(db), "--no-progress"]
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.stats()["requests"] < 120:  # a quarter asked
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
        stored = _stored(db)
        assert 0 < stored < 480
        before = server.stats()["requests"]
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert server.stats()["requests"] - before == 480 - stored  # only what had no answer
        assert _records(db) == _expected(120, 4, 2, plan)


def _stored(db: Path) -> int:
    return rows(db, "SELECT count(*) FROM responses")[0][0]
