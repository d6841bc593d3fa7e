"""Examples follow the plan's split, render with the task's templates, and skip broken rows."""

from __future__ import annotations

from orcac.runtime.answers.examples import materialize
from orcac.sampling import split_rows
from tests.support.plans import arithmetic_rows, make_plan


def test_split_matches_sampling_and_counts(tmp_path):
    plan = make_plan(tmp_path, n=30, holdout=0.2, limit=25, probe_size=4)
    examples = materialize(plan, tmp_path, "arith")
    task = plan.tasks["arith"]
    expected = split_rows(30, task="arith", seed=0, limit=25, holdout=0.2, probe=4)
    assert [e.row_index for e in examples if e.split == "holdout"] == list(expected.holdout)
    assert [e.row_index for e in examples if e.split == "train"] == list(expected.train)
    assert [e.row_index for e in examples if e.probe] == list(expected.probe)
    assert sum(e.split == "train" for e in examples) == task.counts.train
    first = examples[0]
    assert first.prompt == f"What is {first.row_index} plus {first.row_index + 1}?"
    assert first.gold == str(2 * first.row_index + 1)


def test_deterministic_across_calls(tmp_path):
    plan = make_plan(tmp_path, n=50)
    assert materialize(plan, tmp_path, "arith") == materialize(plan, tmp_path, "arith")


def test_a_row_that_fails_to_render_is_reported_and_the_rest_go_on(tmp_path):
    rows = arithmetic_rows(10)
    del rows[3]["a"]  # strict undefined: the gold template cannot render this row
    plan = make_plan(tmp_path, rows, holdout=0.0)
    problems = []
    examples = materialize(plan, tmp_path, "arith", report=problems.append)
    assert len(examples) == 9
    assert 3 not in {e.row_index for e in examples}
    assert [(p.task, p.row_index) for p in problems] == [("arith", 3)]
    assert "row 4 skipped" in str(problems[0]) and "'a' is undefined" in str(problems[0])


def test_templates_cannot_reach_python_internals(tmp_path):
    plan = make_plan(tmp_path, n=3, holdout=0.0, prompt="{{ q.__class__.__mro__[1].__subclasses__() }}")
    problems = []
    assert materialize(plan, tmp_path, "arith", report=problems.append) == []
    assert len(problems) == 3 and all("SecurityError" in p.reason or "unsafe" in p.reason for p in problems)
