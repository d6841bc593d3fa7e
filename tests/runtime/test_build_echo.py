"""`orcac build` and answers that point at a prompt the student never sees (issue 21): a real
build against a loopback teacher whose answers to some rows say "as instructed". Without
`no_echo` they become records and the summary warns; with it they are rejected as `echo`."""

from __future__ import annotations

import pytest

from orcac import cli
from orcac.runtime.store.database import Store
from orcac.specs.plan import CheckRule, TeacherPlan
from tests.support import retries
from tests.support.loopback import Loopback
from tests.support.plans import arith_answer, arithmetic_rows, make_plan, write_plan

pytestmark = pytest.mark.xdist_group("loopback")

N = 6


def _answer(body: dict) -> str:
    text = arith_answer(body)
    if any(f"What is {i} plus" in body["messages"][-1]["content"] for i in (1, 4)):
        return "As instructed, I add the numbers.\n" + text  # right, and points at the hidden prompt
    return text


def _build(tmp_path, accept, capsys):
    with pytest.MonkeyPatch.context() as mp, Loopback(_answer) as server:
        retries.fast_backoff(mp)
        mp.setenv("LOOPBACK_KEY", "sk-loopback")
        teacher = TeacherPlan(
            name="t",
            model="openai/loopback",
            api_base=server.url,
            max_retries=1,
            timeout_s=10.0,
            api_key_env="LOOPBACK_KEY",
        )
        plan = make_plan(tmp_path, arithmetic_rows(N), holdout=0.0, teacher=teacher, accept=accept)
        path = write_plan(tmp_path, plan)
        capsys.readouterr()
        assert cli.main(["build", str(path), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    with Store.open(tmp_path / ".orca" / "spec.duckdb", read_only=True) as store:
        reasons = store.rows("SELECT reason, count(*) FROM checks GROUP BY ALL ORDER BY ALL")
    return out, err, reasons


def test_echoing_records_kept_without_no_echo_are_counted_in_the_summary(tmp_path, capsys):
    out, err, reasons = _build(tmp_path, (CheckRule(kind="contains"),), capsys)
    assert reasons == [("accepted", N)]
    assert (
        "warning: 2 record(s) point at a prompt the student never sees (arith 2): "
        "add no_echo to the task's accept, or to its strategy's expect"
    ) in err


def test_no_echo_rejects_them_as_echo_in_the_summary(tmp_path, capsys):
    out, err, reasons = _build(tmp_path, (CheckRule(kind="contains"), CheckRule(kind="no_echo")), capsys)
    assert reasons == [("accepted", N - 2), ("echo", 2)]
    assert "echo 2" in out  # the summary's rejected column
    assert "point at a prompt" not in err
