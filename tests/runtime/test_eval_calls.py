"""`orcac eval`'s teacher calls are each paid once: the prompted arm's answers are kept as they
arrive, so an eval that stops half-way loses none, and the next asks only what is missing
(real litellm calls to the loopback server as the teacher)."""

from __future__ import annotations

import re

import pytest

from orcac.errors import OrcacError
from orcac.runtime.commands.evaluate import command as evaluate
from orcac.specs.plan import TeacherPlan
from tests.support.db import rows
from tests.support.loopback import Loopback
from tests.support.plans import context, train_plan
from tests.support.train_data import write_records

pytestmark = [pytest.mark.xdist_group("loopback"), pytest.mark.usefixtures("fast_backoff")]

N = 12


def test_an_eval_stopped_half_way_keeps_the_prompted_answers_it_got(tmp_path, monkeypatch, capsys):
    from orcac.runtime.commands.evaluate import calls

    monkeypatch.setenv("LOOPBACK_KEY", "sk-eval")
    monkeypatch.setattr(calls, "PROGRESS_EVERY_S", 0.0)  # a progress line per answer
    holdout = [{"task": "add", "id": i, "user": f"What is 40 + {i}?", "gold": str(40 + i)} for i in range(N)]
    db = write_records(tmp_path / "build.duckdb", [], holdout=holdout)
    stop_at = f"What is 40 + {N - 1}?"
    # concurrency 1: the jobs go in order, so the 401 on the last stops the run after the others
    with Loopback(script={stop_at: ["401"]}) as server:
        teacher = TeacherPlan(
            name="t",
            model="openai/teacher",
            api_base=server.url,
            api_key_env="LOOPBACK_KEY",
            max_retries=1,
            timeout_s=10.0,
            concurrency=1,
        )
        plan = train_plan("unused", tasks=("add",), stages=(("only", ("add",), 1.0),))
        plan = plan.model_copy(update={"teachers": {"t": teacher}})
        with pytest.raises(OrcacError, match="401|auth"):
            evaluate.run(context(plan, tmp_path, db), models=["prompted"])
        progress = re.findall(r"^  prompted: (\d+)/12 calls, \d+s$", capsys.readouterr().err, re.M)
        assert progress == [str(i) for i in range(1, N)]  # the stop came with the 12th
        kept = rows(db, "SELECT count(*) FROM eval_calls WHERE purpose = 'prompted'")
        assert kept == [(N - 1,)]  # every answer that arrived before the stop
        assert rows(db, "SELECT count(*) FROM eval_runs") == [(0,)]  # no result from a stopped run

        evaluate.run(context(plan, tmp_path, db), models=["prompted"])
        hits = server.stats()["hits"]
        assert hits.pop(stop_at) == 2 and set(hits.values()) == {1}  # none of the kept ones asked again
        assert rows(db, "SELECT examples FROM eval_runs") == [(N,)]
