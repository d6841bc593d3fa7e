"""`orcac eval`: which strategy's form each answer follows, per task and arm (issue 21).

Hand-made answers in known forms, scored against a plan of two strategies whose forms tell
them apart (direct: one "Answer:" line; steps: numbered steps and an "Answer:" line); the
table counts each, and every answer's strategy is stored in DuckDB."""

from __future__ import annotations

import pytest

from orcac.runtime.commands.evaluate import command as evaluate
from orcac.runtime.commands.evaluate import scoring
from orcac.runtime.commands.evaluate.command import Answer, Held
from orcac.specs.forms import FORMS
from orcac.specs.plan import AdherenceRule, StrategyPlan
from tests.support.db import rows
from tests.support.plans import context, train_plan
from tests.support.train_data import write_records

pytestmark = pytest.mark.xdist_group("eval")

STEPS = "1. 40 + 2 = 42.\n2. So it is 42.\nAnswer: 42"
DIRECT = "Answer: 42"
NEITHER = "It is 42."
BOTH_IF_LOOSE = "1. 40 + 2 = 42.\n2. Done.\nAnswer: 42"


def _rule(name: str) -> AdherenceRule:
    pattern, description = FORMS[name]
    return AdherenceRule(kind="regex", pattern=pattern, description=description)


@pytest.fixture
def plan():
    """add's strategy is steps (numbered steps, an "Answer:" line), mul's is direct (one
    "Answer:" line and nothing else)."""
    plan = train_plan("no-model-loaded")
    direct = StrategyPlan(
        name="direct",
        system="Answer in one line.",
        origin="test:3",
        adherence=(_rule("answer_line"), _rule("single_line")),
    )
    mul = plan.tasks["mul"].model_copy(update={"strategy": "direct", "system": direct.system})
    return plan.model_copy(
        update={"strategies": {**plan.strategies, "direct": direct}, "tasks": {**plan.tasks, "mul": mul}}
    )


def _scored(plan, task: str, texts: list[str]):
    return [
        scoring.score(plan, Held(task, i, "What is 40 + 2?", "42"), Answer(t, "stop", 5)) for i, t in enumerate(texts)
    ]


def test_each_answer_is_scored_with_the_strategy_whose_form_it_follows(plan):
    follows = [s.follows for s in _scored(plan, "add", [STEPS, DIRECT, NEITHER])]
    assert follows == ["steps", "direct", "none"]


def test_an_answer_two_forms_accept_counts_as_several(plan):
    loose = StrategyPlan(name="loose", system="Say the answer.", origin="test:4", adherence=(_rule("answer_line"),))
    plan = plan.model_copy(update={"strategies": {**plan.strategies, "loose": loose}})
    assert [s.follows for s in _scored(plan, "add", [BOTH_IF_LOOSE, DIRECT, NEITHER])] == ["several", "several", "none"]


def test_the_confusion_table_on_known_answers(plan):
    scored = {
        "add": _scored(plan, "add", [STEPS, STEPS, DIRECT, NEITHER]),
        "mul": _scored(plan, "mul", [DIRECT, DIRECT, STEPS]),
    }
    table = scoring.strategies_followed("trained", scored, plan)
    assert table == [
        {
            "model": "trained",
            "task": "add",
            "strategy": "steps",
            "examples": 4,
            "counts": {"direct": 1, "steps": 2, "none": 1, "several": 0},
        },
        {
            "model": "trained",
            "task": "mul",
            "strategy": "direct",
            "examples": 3,
            "counts": {"direct": 2, "steps": 1, "none": 0, "several": 0},
        },
    ]


def test_a_plan_whose_strategies_have_no_form_has_no_table(plan):
    bare = {name: s.model_copy(update={"adherence": ()}) for name, s in plan.strategies.items()}
    plan = plan.model_copy(update={"strategies": bare})
    scored = {"add": _scored(plan, "add", [STEPS])}
    assert scored["add"][0].follows is None
    assert scoring.strategies_followed("base", scored, plan) == []


def test_a_run_stores_each_answers_strategy_and_shows_the_table(plan, tmp_path, monkeypatch, capsys):
    holdout = [
        {"task": task, "id": i, "user": f"What is 40 + {i}?", "gold": "42"} for task in ("add", "mul") for i in range(3)
    ]
    db = write_records(tmp_path / "build.duckdb", [], holdout=holdout)
    canned = {  # the trained student collapsed onto steps; prompted follows each task's own
        "base": {"add": [NEITHER] * 3, "mul": [NEITHER, NEITHER, DIRECT]},
        "prompted": {"add": [STEPS] * 3, "mul": [DIRECT] * 3},
        "trained": {"add": [STEPS] * 3, "mul": [STEPS, STEPS, DIRECT]},
    }
    monkeypatch.setattr(
        evaluate,
        "answer_all",
        lambda name, plan, root, held, db_path: (
            {task: [Answer(t, "stop", 5) for t in canned[name][task]] for task in held},
            name,
        ),
    )
    monkeypatch.setattr(evaluate, "check_ready", lambda *args: None)
    evaluate.run(context(plan, tmp_path, db))

    stored = rows(db, "SELECT model, task, follows, count(*) FROM eval_answers GROUP BY ALL ORDER BY ALL")
    assert stored == [
        ("base", "add", "none", 3),
        ("base", "mul", "direct", 1),
        ("base", "mul", "none", 2),
        ("prompted", "add", "steps", 3),
        ("prompted", "mul", "direct", 3),
        ("trained", "add", "steps", 3),
        ("trained", "mul", "direct", 1),
        ("trained", "mul", "steps", 2),
    ]
    shown = capsys.readouterr().out
    assert "the strategy whose form each answer follows" in shown
    table = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in shown.split("the strategy whose form")[1].splitlines()
        if line.startswith("│")
    ]
    assert table == [  # the body's rows (rich draws the header with ┃)
        ["add", "base", "3", "0", "0*", "3", "0"],
        ["", "prompted", "3", "0", "3*", "0", "0"],
        ["", "trained", "3", "0", "3*", "0", "0"],
        ["mul", "base", "3", "1*", "0", "2", "0"],
        ["", "prompted", "3", "3*", "0", "0", "0"],
        ["", "trained", "3", "1*", "2", "0", "0"],  # collapsed onto steps: 2 of 3 in add's form
    ]
