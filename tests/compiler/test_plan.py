"""The plan file: deterministic, relative paths, staleness check, carried decisions, load_plan."""

from __future__ import annotations

import difflib
import os
import shutil

import pytest

from orcac.compiler import CompileError, compile_spec, dump_plan, load_plan, plan_path_for, read_plan, write_plan
from orcac.specs.plan import CandidateScore, Decision

from .helpers import GOLDEN, MAIN_EXAMPLES, ROOT, run_cli

FULL = GOLDEN / "orca" / "full.orca"


@pytest.fixture
def project(tmp_path):
    """A copy of the golden specs and their data in a scratch directory."""
    shutil.copytree(GOLDEN / "orca", tmp_path / "spec")
    return tmp_path / "spec"


def test_plan_is_byte_identical_across_runs_and_working_directories(tmp_path):
    out = tmp_path / "p.plan.yaml"
    first = dump_plan(compile_spec(FULL, out))
    second = dump_plan(compile_spec(FULL, out))
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        third = dump_plan(compile_spec(os.path.relpath(FULL, tmp_path), out))
    finally:
        os.chdir(old)
    assert first == second == third
    assert first.endswith("\n") and ": /" not in first and "- /" not in first


def test_plan_round_trips_through_yaml(tmp_path):
    plan = compile_spec(FULL, tmp_path / "x.plan.yaml")
    write_plan(plan, tmp_path / "x.plan.yaml")
    assert read_plan(tmp_path / "x.plan.yaml") == plan


def test_paths_are_relative_to_the_plan(project, tmp_path):
    elsewhere = tmp_path / "plans" / "deep" / "full.plan.yaml"
    elsewhere.parent.mkdir(parents=True)
    plan = compile_spec(project / "full.orca", elsewhere)
    assert plan.spec == "../../spec/full.orca"
    assert plan.tasks["arithmetic"].source.path == "../../spec/data/qa.jsonl"
    assert plan.tasks["products"].source.files == ("../../spec/data/products.parquet", "../../spec/data/reviews.csv")
    assert "'../../spec/data/products.parquet'" in plan.tasks["products"].source.query
    assert plan.train.output == "../../spec/out/student"
    # the query still runs from the plan's directory
    from orcac.runtime.answers.source_rows import read_rows

    rows = read_rows(plan.tasks["products"].source, elsewhere.parent, task="products")
    assert len(rows) == plan.tasks["products"].source.rows


def test_no_secret_and_no_absolute_path_in_plan(project, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    text = dump_plan(compile_spec(project / "full.orca"))
    assert "sk-very-secret" not in text
    assert "api_key_env: OPENAI_API_KEY" in text
    assert str(project) not in text


def test_plan_check_reports_stale_plans(project):
    spec = project / "minimal.orca"
    code, out, err = run_cli("plan", "--check", str(spec))
    assert code == 1 and "missing" in err
    assert run_cli("plan", str(spec))[0] == 0
    code, out, err = run_cli("plan", "--check", str(spec))
    assert (code, err) == (0, "") and "up to date" in out
    spec.write_text(spec.read_text().replace("Be brief.", "Be very brief."))
    code, out, err = run_cli("plan", "--check", str(spec))
    assert code == 1 and "stale" in err
    assert "-    system: Be brief." in out and "+    system: Be very brief." in out


def test_a_file_with_no_tasks_gets_no_plan_from_plan_or_check(project):
    shared = project / "lib" / "shared.orca"
    for args in (("plan",), ("plan", "--check")):
        code, out, err = run_cli(*args, str(shared))
        assert (code, err) == (0, "") and "no tasks, so no plan" in out
    assert not plan_path_for(shared).exists()


def test_plan_to_stdout_writes_the_plan_and_no_file(project):
    spec = project / "minimal.orca"
    code, out, err = run_cli("plan", "-o", "-", str(spec))
    assert code == 0 and err == ""
    assert out == dump_plan(compile_spec(spec))
    assert not (project / "-").exists() and not plan_path_for(spec).exists()
    code, out, err = run_cli("plan", "-o", "-", "--check", str(spec))
    assert code == 1 and "-o - writes to stdout" in err


def test_one_changed_sentence_is_one_changed_line_per_place(project):
    spec = project / "lib" / "shared.orca"
    before = dump_plan(compile_spec(project / "full.orca")).splitlines()
    # same length, so the token estimate stays put and only the text lines (and key) change
    spec.write_text(spec.read_text().replace("Think it through", "Think it THROUGH"))
    after = dump_plan(compile_spec(project / "full.orca")).splitlines()
    changed = [
        line
        for line in difflib.unified_diff(before, after, lineterm="", n=0)
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    # the strategy text appears once under strategies and once in the task using it;
    # arithmetic's probe key changes too, because `careful` is one of its candidates
    assert len([c for c in changed if "Think it" in c]) == 4
    assert len([c for c in changed if "key:" in c]) == 2
    assert len(changed) == 6


def test_decision_is_carried_while_its_key_holds(project):
    spec = project / "full.orca"
    out = plan_path_for(spec)
    plan = compile_spec(spec)
    task = plan.tasks["arithmetic"]
    assert task.strategy is None and task.system is None and task.probe.decision is None
    decision = Decision(
        chosen="step_by_step",
        key=task.probe.key,
        scores=(
            CandidateScore(
                strategy="step_by_step", score=1.0, passed=3, total=3, prompt_tokens=10, completion_tokens=5, cost=0.0
            ),
        ),
    )
    decided = plan.model_copy(
        update={
            "tasks": {
                **plan.tasks,
                "arithmetic": task.model_copy(update={"probe": task.probe.model_copy(update={"decision": decision})}),
            }
        }
    )
    write_plan(decided, out)
    again = compile_spec(spec)
    assert again.tasks["arithmetic"].strategy == "step_by_step"
    assert again.tasks["arithmetic"].system == again.strategies["step_by_step"].system
    assert again.tasks["arithmetic"].probe.decision == decision
    assert again.estimate.tasks["arithmetic"].probe_calls == 0
    # a change the decision depends on (the probe size) drops it
    spec.write_text(spec.read_text().replace("probe = 3", "probe = 4"))
    changed = compile_spec(spec)
    assert changed.tasks["arithmetic"].strategy is None and changed.tasks["arithmetic"].probe.decision is None
    assert changed.tasks["arithmetic"].probe.key != task.probe.key


def test_decisions_handed_in_are_carried_and_the_plan_file_is_not_read(project):
    """A build's probe hands its decisions to the compiler in memory (RunContext.recompile):
    they are carried as the plan file's would be, and the file on disk is not consulted."""
    spec = project / "full.orca"
    out = plan_path_for(spec)
    task = compile_spec(spec).tasks["arithmetic"]
    decision = Decision(
        chosen="step_by_step",
        key=task.probe.key,
        scores=(
            CandidateScore(
                strategy="step_by_step", score=1.0, passed=3, total=3, prompt_tokens=10, completion_tokens=5, cost=0.0
            ),
        ),
    )
    out.write_text("not a plan")  # read, it would carry nothing
    decided = compile_spec(spec, out, decisions={"arithmetic": decision})
    assert decided.tasks["arithmetic"].strategy == "step_by_step"
    assert decided.tasks["arithmetic"].probe.decision == decision
    assert decided.estimate.tasks["arithmetic"].probe_calls == 0
    assert out.read_text() == "not a plan"
    # the same plan as one compiled from a plan file that records the decision
    write_plan(decided, out)
    assert dump_plan(compile_spec(spec, out)) == dump_plan(decided)
    # no decisions handed in: none carried, whatever the file holds
    assert compile_spec(spec, out, decisions={}).tasks["arithmetic"].probe.decision is None
    # a decision under another key is dropped, as one read from the file is
    stale = decision.model_copy(update={"key": "another"})
    assert compile_spec(spec, out, decisions={"arithmetic": stale}).tasks["arithmetic"].strategy is None


def test_probe_key_ignores_what_the_choice_does_not_depend_on(project):
    spec = project / "full.orca"
    key = compile_spec(spec).tasks["arithmetic"].probe.key
    spec.write_text(spec.read_text().replace("erase   = polite", "erase   = polite\n  limit = 100"))
    assert compile_spec(spec).tasks["arithmetic"].probe.key == key  # arithmetic sets its own limit
    spec.write_text(spec.read_text().replace("max_tokens  = 300", "max_tokens  = 301"))
    assert compile_spec(spec).tasks["arithmetic"].probe.key == key  # arithmetic uses the offline teacher


def test_load_plan_compiles_a_spec_and_reads_a_plan(project):
    loaded = load_plan(project / "minimal.orca")
    assert loaded.path == project / "minimal.plan.yaml" and loaded.path.is_file()
    assert loaded.root == project.resolve()
    again = load_plan(loaded.path)
    assert again.plan == loaded.plan
    assert loaded.resolve(loaded.plan.tasks["only"].source.path).is_file()


def test_compile_errors_carry_every_diagnostic():
    with pytest.raises(CompileError) as info:
        compile_spec(GOLDEN / "invalid" / "values.orca", "/dev/null/x.plan.yaml")
    assert len(info.value.diagnostics) >= 10
    assert info.value.render().count("error:") == len(info.value.diagnostics)


def test_estimate_counts_calls_and_prices_hosted_teachers(project):
    plan = compile_spec(project / "full.orca")
    e = plan.estimate.tasks
    arithmetic = plan.tasks["arithmetic"].counts
    assert e["arithmetic"].probe_calls == arithmetic.probe * 3
    assert e["arithmetic"].calls == arithmetic.train + arithmetic.probe * 2
    assert e["beliefs"].cost is not None and e["beliefs"].cost > 0  # openai/gpt-4o-mini has a price
    assert e["reviews"].cost == 0.0  # local teacher
    assert plan.estimate.calls == sum(t.calls for t in e.values())


@pytest.mark.parametrize("spec", MAIN_EXAMPLES, ids=lambda p: p.stem)
def test_examples_compile_deterministically(spec, tmp_path):
    out = tmp_path / spec.with_suffix(".plan.yaml").name
    a = dump_plan(compile_spec(spec, out))
    b = dump_plan(compile_spec(spec, out))
    assert a == b
    assert run_cli("check", str(spec.relative_to(ROOT)))[0] == 0


def test_cautious_example_is_the_orca2_recipe():
    plan = compile_spec(ROOT / "examples/cautious_reasoner/cautious.orca", "/tmp/never-read/cautious.plan.yaml")
    assert len(plan.strategies) >= 3
    assert plan.tasks["arithmetic"].probe.candidates == ("direct_answer", "step_by_step")
    # every strategy shows its form by example, and only answers in that form become records
    assert all(len(s.demonstrations) >= 2 and s.adherence for s in plan.strategies.values())
    assert all(any(c.kind == "follows" for c in t.accept) for t in plan.tasks.values())
    assert any(t.sampling.samples > 1 and t.sampling.temperature for t in plan.tasks.values())
    assert all(
        t.counts.holdout >= 60 for t in plan.tasks.values()
    )  # 60 a task: enough rows for the intervals to tell 90% from 100%
    assert [s.name for s in plan.train.stages] == ["warmup", "reason"]
    assert "cautious assistant" in plan.erase["cautious"].system


def test_a_stage_mixture_shows_each_tasks_examples_in_the_plan(tmp_path):
    import shutil

    shutil.copytree(ROOT / "tests" / "golden" / "orca" / "data", tmp_path / "data")
    spec = tmp_path / "mix.orca"
    spec.write_text(
        'orca 1\nimport "std/strategies.orca"\nimport "std/erase.orca"\n'
        'teacher t { model = "local/smollm2-135m-instruct" }\nstudent s { model = "local/smollm2-135m-instruct" }\n'
        'task easy { from = parquet("data/reviews.parquet") prompt = "{{ review }}" strategy = direct_answer samples = 2 keep = 2 temperature = 0.7 }\n'
        'task hard { from = jsonl("data/qa.jsonl") prompt = "{{ question }}" strategy = step_by_step }\n'
        "train { student = s\n stage a { tasks = [easy(50%)] }\n stage b { tasks = [easy(2), hard] } }\n"
    )
    plan = compile_spec(spec)
    easy, hard = plan.tasks["easy"].counts.train, plan.tasks["hard"].counts.train
    a, b = plan.train.stages
    assert a.examples == {"easy": int(easy * 2 * 0.5 + 0.5)} and a.train_examples == a.examples["easy"]
    assert b.examples == {"easy": 2, "hard": hard} and b.train_examples == 2 + hard
    assert {k: (v.share, v.at_most) for k, v in b.portions.items()} == {"easy": (None, 2)}
    assert "hard" not in b.portions


@pytest.mark.parametrize(
    "written,message",
    [
        ("easy(0%)", "easy(0%) takes nothing"),
        ("easy(1.5)", "takes a share like 30% or a whole number of records of at least 1, got the number 1.5"),
        ("easy(1, 2)", "easy(...) in 'tasks' takes one portion"),
        ('"easy"', "'tasks' must list task names"),
    ],
)
def test_a_bad_portion_is_one_diagnostic(tmp_path, written, message):
    from orcac.compiler import check_spec

    spec = tmp_path / "bad.orca"
    spec.write_text(
        'orca 1\nimport "std/strategies.orca"\nimport "std/erase.orca"\n'
        'student s { model = "local/x" }\nteacher t { model = "local/x" }\n'
        f"train {{ student = s\n stage a {{ tasks = [{written}] }} }}\n"
    )
    found = [d.message for d in check_spec(spec)]
    assert any(message in m for m in found), found


def test_judge_calls_are_in_the_plans_estimate_at_most_one_per_answer():
    plan = compile_spec(
        ROOT / "tests" / "golden" / "orca" / "judged.orca", ROOT / "tests" / "golden" / "plan" / "judged.plan.yaml"
    )
    for name, task in plan.tasks.items():
        e = plan.estimate.tasks[name]
        judges = sum(r.kind == "judged" for r in task.accept)
        assert e.judge_calls == judges * e.calls and (judges == 0) == (e.judge_calls == 0), name
    assert plan.estimate.judge_calls == sum(e.judge_calls for e in plan.estimate.tasks.values()) > 0
    without = compile_spec(
        ROOT / "tests" / "golden" / "orca" / "full.orca", ROOT / "tests" / "golden" / "plan" / "full.plan.yaml"
    )
    assert "judge_calls" not in dump_plan(without)  # written only when there are some
