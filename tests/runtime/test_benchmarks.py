"""`eval { benchmarks = [...] }`: lm-evaluation-harness tasks on the base and trained students,
offline, through a custom task (YAML over a local JSONL) and the tiny model."""

from __future__ import annotations

import json

import pytest

from orcac.errors import OrcacError
from orcac.runtime.commands.evaluate import benchmarks
from orcac.runtime.commands.evaluate import command as evaluate
from orcac.runtime.commands.report.command import benchmark_table
from orcac.runtime.commands.train import command as train
from tests.support.db import rows
from tests.support.plans import ERASE, context, train_plan
from tests.support.train_data import orca_rows, write_records

pytestmark = pytest.mark.xdist_group("eval")


BENCH = "bench/arith.yaml"


def _with_benchmarks(plan, *names):
    return plan.model_copy(update={"eval": plan.eval.model_copy(update={"benchmarks": names})})


def write_task(root, records) -> None:
    """An lm-eval task over a local JSONL: the log-likelihood of each teacher answer's last line
    (its perplexity falls as the student learns them: a planted difference between base and
    trained; the whole answer's would overflow lm-eval's exp on a random model)."""
    (root / "bench").mkdir(exist_ok=True)
    data = root / "bench" / "arith.jsonl"
    data.write_text(
        "".join(json.dumps({"question": r["user"], "answer": r["assistant"].splitlines()[-1]}) + "\n" for r in records)
    )
    (root / BENCH).write_text(
        "task: orcac_arith\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: loglikelihood\n"
        'doc_to_text: "{{question}}"\n'
        'doc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: perplexity\n    aggregation: perplexity\n    higher_is_better: false\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )


def test_lm_eval_results_become_rows_with_their_stderr_and_groups_marked():
    results = {
        "results": {
            "bbh": {
                "sample_len": 27,
                "exact_match,get-answer": 0.25,
                "exact_match_stderr,get-answer": 0.01,
                "alias": "bbh",
            },
            "bbh_navigate": {"exact_match,get-answer": 0.5, "exact_match_stderr,get-answer": "N/A"},
            "gsm8k": {"exact_match,strict-match": 0.125, "exact_match_stderr,strict-match": 0.02},
        },
        "group_subtasks": {"bbh": ["bbh_navigate"], "gsm8k": []},
        "n-shot": {"bbh_navigate": 3, "gsm8k": 5},
        "n-samples": {"gsm8k": {"original": 1319, "effective": 8}},
        "lm_eval_version": "0.4.13",
    }
    got = benchmarks.result_rows(results, model="trained", where="out/final", system=ERASE)
    assert [
        (r["benchmark"], r["top"], r["metric"], r["filter"], r["value"], r["stderr"], r["samples"], r["shots"])
        for r in got
    ] == [
        ("bbh", True, "exact_match", "get-answer", 0.25, 0.01, None, None),
        ("bbh_navigate", False, "exact_match", "get-answer", 0.5, None, None, 3),
        ("gsm8k", True, "exact_match", "strict-match", 0.125, 0.02, 8, 5),
    ]
    table = benchmark_table(got)  # the terminal's, the report's and the model card's
    assert [(r["benchmark"], r["n"], r["cells"]) for r in table["rows"]] == [
        ("bbh", None, ["0.25 ± 0.01"]),
        ("gsm8k", 8, ["0.125 ± 0.02"]),  # bbh_navigate: a subtask, in DuckDB only
    ]
    assert table["arms"] == ["trained"] and table["system"] == ERASE


def test_the_dry_run_lists_the_benchmarks_and_the_system_instruction(tiny, capsys):
    plan = _with_benchmarks(train_plan(str(tiny)), "gsm8k", "bbh")
    benchmarks.dry_run(plan, ["base", "prompted", "trained"])
    out = capsys.readouterr().out
    assert "benchmarks (lm-evaluation-harness, on base, trained): gsm8k, bbh" in out
    assert ERASE[:40] in out
    benchmarks.dry_run(train_plan(str(tiny)), ["base", "trained"])  # none named: nothing said
    assert capsys.readouterr().out == ""


def test_orcac_eval_dry_run_lists_them_after_the_calls(tiny, tmp_path, capsys):
    db = write_records(tmp_path / "build.duckdb", [], holdout=orca_rows("add", 2, seed=9))
    plan = _with_benchmarks(train_plan(str(tiny)), "gsm8k", "bbh")
    assert evaluate.dry_run(context(plan, tmp_path, db), models=["base", "trained"]) == 0
    assert "benchmarks (lm-evaluation-harness, on base, trained): gsm8k, bbh" in capsys.readouterr().out


def test_without_lm_eval_installed_eval_stops_in_one_line_before_it_starts(tiny, tmp_path, monkeypatch):
    plan = _with_benchmarks(train_plan(str(tiny)), "gsm8k")
    monkeypatch.setattr(benchmarks.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(OrcacError, match="lm-eval is not installed") as error:
        benchmarks.check_ready(plan, tmp_path, ["base"])
    assert 'pip install "orcac[benchmarks]"' in error.value.hint
    benchmarks.check_ready(plan, tmp_path, ["prompted"])  # no student arm: no benchmark, nothing needed


def test_check_names_a_benchmark_task_file_that_is_not_there(tmp_path, capsys):
    from orcac import cli

    spec = tmp_path / "s.orca"
    spec.write_text(f'orca 1\n\neval {{\n  benchmarks = [gsm8k, "{BENCH}"]\n}}\n')
    assert cli.main(["check", str(spec)]) == 1
    assert f"s.orca:4:16: error: benchmark task file '{BENCH}' not found" in capsys.readouterr().err
    (tmp_path / "bench").mkdir()
    (tmp_path / BENCH).write_text("task: mine\n")
    assert cli.main(["check", str(spec)]) == 0


def test_a_missing_task_file_is_named(tiny, tmp_path):
    plan = _with_benchmarks(train_plan(str(tiny)), BENCH)
    with pytest.raises(OrcacError, match="no task file"):
        benchmarks.check_ready(plan, tmp_path, ["base"])


@pytest.mark.slow
def test_a_lora_student_is_benchmarked_with_its_adapter_and_the_results_are_stored(tiny, tmp_path, capsys):
    records = orca_rows("add", 8)
    db = write_records(tmp_path / "build.duckdb", records, holdout=orca_rows("add", 2, seed=9))
    plan = _with_benchmarks(train_plan(str(tiny), lora=True, stages=(("only", ("add",), 1.0),)), BENCH)
    write_task(tmp_path, records)
    train.run(context(plan, tmp_path, db), max_steps=3)
    evaluate.run(context(plan, tmp_path, db), limit=4, models=["base", "trained"])

    stored = rows(
        db,
        "SELECT model, benchmark, top, metric, value, stderr, samples, system_instruction "
        "FROM eval_benchmarks ORDER BY model, metric",
    )
    assert [r[:4] for r in stored] == [
        ("base", "orcac_arith", True, "acc"),
        ("base", "orcac_arith", True, "perplexity"),
        ("trained", "orcac_arith", True, "acc"),
        ("trained", "orcac_arith", True, "perplexity"),
    ]
    assert {r[6] for r in stored} == {4} and {r[7] for r in stored} == {ERASE}
    perplexity = {r[0]: r[4] for r in stored if r[3] == "perplexity"}
    # The adapter's training is in what lm-eval scored: the answers it learnt are likelier.
    assert perplexity["trained"] < perplexity["base"]
    shown = capsys.readouterr().out
    assert "orcac_arith" in shown and "perplexity" in shown and "lm-evaluation-harness" in shown

    # final/ holds the merged weights: no adapter, plain transformers loads it; its card says so
    # and shows the benchmarks beside the held-out table.
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    final = tmp_path / plan.train.output / train.FINAL_DIR
    assert not list(final.glob("adapter_*"))
    assert not any("lora" in name for name in AutoModelForCausalLM.from_pretrained(final).state_dict())
    card = ModelCard.load(final / "README.md").text
    assert "LoRA (r=4, alpha=8" in card and "merged into the weights" in card
    benchmarks_part = card.split("## Standard benchmarks")[1]
    assert "| orcac_arith | perplexity | none | 4 |" in benchmarks_part and " ± " in benchmarks_part


# ---- a local teacher's weights, benchmarked beside the students ---------------------------------


def _with_teacher(plan, model: str):
    teacher = plan.teachers["t"].model_copy(update={"model": model})
    return plan.model_copy(
        update={
            "teachers": {"t": teacher},
            "eval": plan.eval.model_copy(update={"benchmarks": (BENCH,), "benchmark_teachers": ("t",)}),
        }
    )


def test_a_benchmarked_teacher_runs_with_the_prompted_arm(tiny, capsys):
    plan = _with_teacher(train_plan(str(tiny)), f"local/{tiny}")
    assert benchmarks.wanted(plan, ["base", "prompted", "trained"]) == ["base", "trained", "teacher t"]
    assert benchmarks.wanted(plan, ["base", "trained"]) == ["base", "trained"]  # no prompted arm: no teacher
    benchmarks.dry_run(plan, ["base", "prompted", "trained"])
    assert f"benchmarks (lm-evaluation-harness, on base, trained, teacher t): {BENCH}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("teacher", "extra", "message"),
    [
        (
            'teacher t { model = "local/smollm2-135m-instruct" }',
            "benchmark_teachers = [tt]",
            "s.orca:6:50: error: benchmark_teachers names 'tt', which is not a declared teacher",
        ),
        (
            'teacher t { model = "openai/gpt-4o" }',
            "benchmark_teachers = [t]",
            "s.orca:6:50: error: benchmark_teachers: teacher 't' (openai/gpt-4o) is an API, not weights lm-eval can score",
        ),
    ],
)
def test_check_refuses_a_benchmarked_teacher_that_is_not_local_weights(tmp_path, capsys, teacher, extra, message):
    from orcac import cli

    spec = tmp_path / "s.orca"
    spec.write_text(f"orca 1\n\n{teacher}\n\n\neval {{ benchmarks = [gsm8k] {extra} }}\n")
    assert cli.main(["check", str(spec)]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_a_local_teachers_own_weights_are_benchmarked_and_stored(tiny, tmp_path, capsys):
    records = orca_rows("add", 4)
    db = write_records(tmp_path / "build.duckdb", records, holdout=orca_rows("add", 2, seed=9))
    plan = _with_teacher(train_plan(str(tiny)), f"local/{tiny}")
    write_task(tmp_path, records)
    scored = benchmarks.run(plan, tmp_path, db, ["prompted"], run_id="r1", plan_sha="x", load=None, limit=2)
    assert {(r["model"], r["model_path"], r["metric"]) for r in scored} == {
        ("teacher t", str(tiny), "acc"),
        ("teacher t", str(tiny), "perplexity"),
    }
    assert rows(db, "SELECT DISTINCT model, system_instruction FROM eval_benchmarks") == [("teacher t", ERASE)]
    assert "teacher t" in capsys.readouterr().out
