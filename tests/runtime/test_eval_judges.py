"""`orcac eval` with judges: a judged task's judges score every arm's answers, through real
litellm calls to the loopback server acting as the judge. The arms' answers are canned (no
model is loaded): what is tested is what eval does with them."""

from __future__ import annotations

import re

import pytest

from orcac.errors import OrcacError
from orcac.runtime.commands.evaluate import command as evaluate
from orcac.runtime.commands.evaluate.command import Answer
from orcac.specs.plan import CheckRule, EvalPlan, JudgedRule, JudgePlan, TeacherPlan
from tests.support.db import rows
from tests.support.loopback import Loopback, key_of
from tests.support.plans import context, train_plan
from tests.support.train_data import write_records

pytestmark = [pytest.mark.xdist_group("loopback"), pytest.mark.usefixtures("fast_backoff")]

RUBRIC = 'Question: {{ prompt }}\nAnswer: {{ answer }}\nEnd with a line "Score: N", N from 1 to 10.'
N = 4  # held-out rows per task; every gold is 42
EXPLAINED, BARE, UNSURE = "Because 40 + 2 = 42.\nAnswer: 42", "Answer: 42", "no idea"

# Per arm and task, the canned answers. `add` is judged only; `mul` has numeric(gold) too, so
# its judge is asked only about answers that are right.
CANNED = {
    "base": {"add": [UNSURE] * N, "mul": [UNSURE] * N},
    "prompted": {"add": [EXPLAINED] * N, "mul": [EXPLAINED] * N},
    "trained": {"add": [EXPLAINED, EXPLAINED, BARE, "I cannot say."], "mul": [EXPLAINED, BARE, UNSURE, UNSURE]},
}


def judge(body: dict) -> str:
    """9 for an explained answer, 3 for another; no score at all for "I cannot say."."""
    answer = key_of(body).split("Answer: ", 1)[1]
    if answer.startswith("I cannot say."):
        return "I have no opinion."
    return "It shows its working.\nScore: 9" if "Because" in answer else "It gives no reason.\nScore: 3"


def judged_plan(url: str, **eval_settings):
    plan = train_plan("unused")  # answers are canned: the student is never loaded
    referee = TeacherPlan(
        name="referee", model="openai/judge", api_base=url, api_key_env="LOOPBACK_KEY", max_retries=1, timeout_s=10.0
    )
    helpful = JudgedRule(
        kind="judged",
        judge=JudgePlan(name="helpful", teacher="referee", rubric=RUBRIC, threshold=7, origin="test.orca:1"),
    )
    tasks = {
        "add": plan.tasks["add"].model_copy(update={"accept": (helpful,)}),
        "mul": plan.tasks["mul"].model_copy(update={"accept": (CheckRule(kind="numeric"), helpful)}),
    }
    return plan.model_copy(
        update={
            "teachers": {**plan.teachers, "referee": referee},
            "tasks": tasks,
            "eval": EvalPlan(max_new_tokens=24, batch_size=8, **eval_settings),
        }
    )


@pytest.fixture
def database(tmp_path):
    holdout = [
        {"task": t, "id": i, "user": f"What is 40 + 2? ({t} {i})", "gold": "42"}
        for t in ("add", "mul")
        for i in range(N)
    ]
    return write_records(tmp_path / "build.duckdb", [], holdout=holdout)


@pytest.fixture
def canned(monkeypatch):
    asked = []

    def answer_all(name, plan, root, held, db_path):
        asked.append(name)
        return {task: [Answer(text, "stop", 5) for text in CANNED[name][task]] for task in held}, name

    monkeypatch.setattr(evaluate, "answer_all", answer_all)
    monkeypatch.setattr(evaluate, "check_ready", lambda *args: None)  # no model to look for
    monkeypatch.setenv("LOOPBACK_KEY", "sk-judge")
    return asked


def test_a_judged_tasks_accuracy_is_the_share_its_judges_keep(tmp_path, database, canned, capsys):
    with Loopback(judge) as server:
        evaluate.run(context(judged_plan(server.url), tmp_path, database))
        first = server.stats()["requests"]
        # Judged: add's every answer (base 4, prompted 4, trained 4), mul's right ones (0, 4, 2).
        # Trained's explained answers to add 0, 1 and mul 0 are prompted's, to the same prompts:
        # the same judge jobs, asked once.
        assert first == 4 + 8 + 3

        scores = rows(database, "SELECT model, task, accuracy FROM eval_runs ORDER BY model, task")
        assert scores == [
            ("base", "add", 0.0),
            ("base", "mul", 0.0),
            ("prompted", "add", 1.0),
            ("prompted", "mul", 1.0),
            ("trained", "add", 0.5),
            ("trained", "mul", 0.25),  # add: 2 explained; mul: 1 right and explained
        ]
        reasons = dict(
            rows(database, "SELECT row_index, reason FROM eval_answers WHERE model = 'trained' AND task = 'add'")
        )
        assert reasons == {
            0: "accepted",
            1: "accepted",
            2: "judged(helpful): score 3 below 7",
            3: "judged(helpful): no score: the judge's answer has no 'Score: N' line",
        }
        verdicts = rows(
            database,
            "SELECT task, row_index, score, reasoning, accepted FROM eval_judgements "
            "WHERE model = 'trained' ORDER BY task, row_index",
        )
        assert verdicts == [
            ("add", 0, 9.0, "It shows its working.", True),
            ("add", 1, 9.0, "It shows its working.", True),
            ("add", 2, 3.0, "It gives no reason.", False),
            ("add", 3, None, "I have no opinion.", False),
            ("mul", 0, 9.0, "It shows its working.", True),
            ("mul", 1, 3.0, "It gives no reason.", False),
        ]
        gaps = dict(rows(database, "SELECT task || ' ' || metric, gap_closed FROM eval_gaps WHERE metric = 'accuracy'"))
        assert gaps == {"add accuracy": 0.5, "mul accuracy": 0.25, "all accuracy": pytest.approx(3 / 8)}
        out = capsys.readouterr()
        assert "add: mean score of judge helpful: base 3.00, prompted 9.00, trained 7.00" in out.out
        assert "mul: mean score of judge helpful: base n/a, prompted 9.00, trained 6.00" in out.out
        assert "base: judges: 0 judgements reused, 4 asked" in out.err
        assert "trained: judges: 3 judgements reused, 3 asked" in out.err

        # A second eval asks no judge again, and scores the same.
        evaluate.run(context(judged_plan(server.url), tmp_path, database))
        assert server.stats()["requests"] == first
        runs = rows(database, "SELECT run_id, model, task, accuracy FROM eval_runs ORDER BY model, task")
        assert sorted((m, t, a) for _, m, t, a in runs) == sorted([(m, t, a) for m, t, a in scores] * 2)
        assert "trained: judges: 6 judgements reused, 0 asked" in capsys.readouterr().err

    # The report's eval section: each judge's mean score and kept share per arm (the latest runs).
    from orcac.runtime.commands.report import command as report
    from orcac.runtime.store.database import Store

    with Store.open(database, read_only=True) as store:
        page = report.gather(judged_plan(server.url), store)
    assert page["evaluation"]["judges"] == [
        {
            "task": "add",
            "judge": "helpful",
            "arms": [
                {"judged": 4, "kept": 0, "mean": 3.0},
                {"judged": 4, "kept": 4, "mean": 9.0},
                {"judged": 4, "kept": 2, "mean": 7.0},
            ],
        },
        {
            "task": "mul",
            "judge": "helpful",
            "arms": [
                None,  # no answer of base's was right: none judged
                {"judged": 4, "kept": 4, "mean": 9.0},
                {"judged": 2, "kept": 1, "mean": 6.0},
            ],
        },
    ]
    html = report.render({**page, "database": database.name})
    row = re.search(r'<tr data-task="add" data-judge="helpful"><td>(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r'class="mean">([^<]*)<', row) == ["3.00", "9.00", "7.00"]


def test_judges_off_asks_none_and_a_judged_only_task_has_no_accuracy(tmp_path, database, canned):
    with Loopback(judge) as server:
        evaluate.run(context(judged_plan(server.url, judges=False), tmp_path, database))
        assert server.stats()["requests"] == 0
    scores = rows(database, "SELECT model, task, accuracy FROM eval_runs ORDER BY model, task")
    assert [s for s in scores if s[1] == "add"] == [
        ("base", "add", None),
        ("prompted", "add", None),
        ("trained", "add", None),
    ]
    assert [s for s in scores if s[1] == "mul"] == [
        ("base", "mul", 0.0),
        ("prompted", "mul", 1.0),
        ("trained", "mul", 0.5),
    ]
    assert rows(database, "SELECT count(*) FROM eval_judgements") == [(0,)]


def test_a_judge_without_its_key_stops_eval_before_any_arm_answers(tmp_path, database, canned, monkeypatch):
    monkeypatch.delenv("LOOPBACK_KEY")
    with Loopback(judge) as server, pytest.raises(OrcacError, match="LOOPBACK_KEY"):
        evaluate.run(context(judged_plan(server.url), tmp_path, database))
    assert canned == []


def test_a_judge_call_that_fails_rejects_the_answer_and_the_next_eval_asks_it_again(tmp_path, database, canned, capsys):
    # base's answer to add row 1, judged: a 500 on the first call and on its one retry
    failing = _judge_message(judged_plan("http://unused"), 1)
    with Loopback(judge, script={failing: ["500", "500"]}) as server:
        evaluate.run(context(judged_plan(server.url), tmp_path, database), models=["base"])
        reasons = dict(rows(database, "SELECT row_index, reason FROM eval_answers WHERE task = 'add'"))
        assert reasons[1] == "judged(helpful): judge call failed"
        assert rows(database, "SELECT count(*) FROM eval_calls") == [(3,)]  # the failure is not kept
        assert "base: judges: 0 judgements reused, 4 asked, 1 failed" in capsys.readouterr().err
        before = server.stats()["requests"]
        evaluate.run(context(judged_plan(server.url), tmp_path, database), models=["base"])
        assert server.stats()["requests"] == before + 1  # only the failed one, which now answers
        assert "base: judges: 3 judgements reused, 1 asked" in capsys.readouterr().err
        latest = rows(
            database,
            "SELECT reason FROM eval_answers WHERE task = 'add' AND row_index = 1 "
            "AND run_id = (SELECT arg_max(run_id, created_at) FROM eval_runs)",
        )
        assert latest == [("judged(helpful): score 3 below 7",)]


def _judge_message(plan, row: int) -> str:
    """The judge's message about base's answer to add's row `row`, as the rubric renders it."""
    from orcac.runtime.answers import judges

    return judges.messages(plan.tasks["add"].accept[0].judge, f"What is 40 + 2? (add {row})", UNSURE, "42")[0][
        "content"
    ]


def test_the_dry_run_counts_the_prompted_and_judge_calls_and_what_is_kept(tmp_path, database, monkeypatch, capsys):
    """`orcac eval --dry-run` calls nothing; it counts what is kept: after an eval of the
    prompted arm, its answers and their judgements are cached, base's and trained's judges
    are still an upper bound (one call per held-out row)."""
    from orcac import cli

    monkeypatch.setenv("LOOPBACK_KEY", "sk-judge")

    def respond(body: dict) -> str:
        return judge(body) if body["model"] == "judge" else EXPLAINED

    with Loopback(respond) as server:
        plan = judged_plan(server.url)
        teacher = TeacherPlan(name="t", model="openai/teacher", api_base=server.url, api_key_env="LOOPBACK_KEY")
        plan = plan.model_copy(update={"teachers": {**plan.teachers, "t": teacher}})
        from orcac.compiler import write_plan

        path = tmp_path / "judged.plan.yaml"
        write_plan(plan, path)
        argv = ["eval", str(path), "--db", str(database), "--dry-run"]

        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert server.stats()["requests"] == 0
        assert re.search(r"^prompted +add +t +4 +0 +4 ", out, re.M), out
        for arm in ("base", "prompted", "trained"):
            assert re.search(rf"^{arm} +mul +judged\(helpful\) +4 +0 +4 ", out, re.M), (
                out
            )  # not in yet: as if all passed
        assert re.search(r"^total +32 +0 +32 ", out, re.M) and "dry run: nothing was called" in out

        evaluate.run(context(plan, tmp_path, database), models=["prompted"])
        asked = server.stats()["requests"]
        assert asked == 8 + 8  # the teacher's answers, then one judgement each
        capsys.readouterr()
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert server.stats()["requests"] == asked
        assert re.search(r"^prompted +add +t +4 +4 +0 +0 +\$0\.0000", out, re.M), out
        assert re.search(r"^prompted +add +judged\(helpful\) +4 +4 +0 +0 +\$0\.0000", out, re.M), out
        assert re.search(r"^trained +add +judged\(helpful\) +4 +0 +4 ", out, re.M), out
        assert "base and trained: the student on this machine, no calls" in out
