"""benchmarks/compare_objectives.py: each arm's spec compiles to its objective, and the side-by-side
table is built from eval's own tables (written here by eval's own writers) without recomputing."""

from __future__ import annotations

import shutil

import pytest

from benchmarks import compare_objectives as compare
from orcac import compiler
from orcac.runtime.commands.evaluate import stored
from orcac.runtime.store import evaluations
from orcac.runtime.store.database import open_database

DEMO = compare.DEMO


@pytest.fixture(scope="module")
def demo_train(tmp_path_factory):
    return compiler.compile_spec(DEMO / compare.SPEC, tmp_path_factory.mktemp("demo") / "plan.yaml").train


@pytest.mark.parametrize(
    ("arm", "objective", "on_policy"),
    [
        ("sft", "sft", None),
        ("distill", "distill", 0.0),
        ("distill_kl", "distill", 0.0),
        ("sft+distill", "sft+distill", 0.0),
        ("on_policy", "distill", 0.25),
    ],
)
def test_each_arm_is_the_demo_with_its_objective_and_output(tmp_path, demo_train, arm, objective, on_policy):
    shutil.copytree(DEMO / "data", tmp_path / "data")
    spec = tmp_path / compare.SPEC
    spec.write_text(compare.arm_spec((DEMO / compare.SPEC).read_text(), arm))
    plan = compiler.compile_spec(spec, tmp_path / "plan.yaml")
    assert plan.train.objective == objective
    assert (plan.train.distill.on_policy if plan.train.distill else None) == on_policy
    assert plan.train.output == compare.arm_output(arm)
    assert (plan.train.distill.beta if plan.train.distill else None) == {"sft": None, "distill": 0.5}.get(arm, 0.0)
    same = {"objective": demo_train.objective, "distill": demo_train.distill, "output": demo_train.output}
    assert plan.train.model_copy(update=same) == demo_train  # nothing else in training changed


def _eval_run(db, run_id, trained_path, trained_rate, gap):
    """One eval run as eval stores it: base and prompted and trained rates on one task, its gaps and p."""
    con = open_database(db)
    try:
        for model, path, (hits, n) in (
            ("base", "smol", (3, 12)),
            ("prompted", "smol", (11, 12)),
            ("trained", trained_path, trained_rate),
        ):
            con.execute(
                "INSERT INTO eval_runs (run_id, model, model_path, task, examples, accuracy, accuracy_n, "
                "adherence, adherence_n, created_at) VALUES (?, ?, ?, 'sentiment', 12, ?, ?, ?, ?, now())",
                [run_id, model, path, hits / n, n, hits / n, n],
            )
    finally:
        con.close()
    gaps = [
        {
            "task": t,
            "metric": m,
            "base": 0.25,
            "prompted": 0.92,
            "trained": 0.5,
            "gap_closed": gap,
            "gap_low": gap - 0.25,
            "gap_high": gap + 0.25,
        }
        for t in ("sentiment", "all")
        for m in compare.METRICS
    ]
    with evaluations.writing(db) as store:
        evaluations.insert_gaps(store, stored.gap_rows(run_id, "sha", gaps))
    paired = [
        {"task": t, "metric": m, "pairs": 12, "worse": 0, "better": 4, "p": 0.125}
        for t in ("sentiment", "all")
        for m in compare.METRICS
    ]
    with evaluations.writing(db) as store:
        evaluations.insert_paired(store, stored.paired_rows(run_id, "sha", paired))


def test_the_table_reads_each_arms_eval_run_by_its_students_path(tmp_path):
    db = tmp_path / "cautious.duckdb"
    _eval_run(db, "r-sft", "/w/student-sft/final", (6, 12), 0.5)
    _eval_run(db, "r-distill", "/w/student-distill/final", (9, 12), 0.75)
    con = open_database(db, read_only=True)
    try:
        evals = {arm: compare.read_eval(con, f"/w/student-{arm}/final") for arm in ("sft", "distill")}
        assert compare.read_eval(con, "/w/elsewhere/final") is None
    finally:
        con.close()
    assert evals["sft"].run_id == "r-sft" and evals["distill"].run_id == "r-distill"
    table = compare.comparison_table(evals).splitlines()
    assert table[0] == (
        "| task | metric | base | prompted | sft: trained | gap closed | p | distill: trained | gap closed | p |"
    )
    assert table[2] == (
        "| sentiment | accuracy | 25% [9-53] n=12 | 92% [65-99] n=12 "
        "| 50% [25-75] n=12 | 0.50 [0.25, 0.75] | 0.125 "
        "| 75% [47-91] n=12 | 0.75 [0.50, 1.00] | 0.125 |"
    )
    assert table[4] == "| all | accuracy |  |  |  | 0.50 [0.25, 0.75] | 0.125 |  | 0.75 [0.50, 1.00] | 0.125 |"
    assert not any(line.startswith("note") for line in table)


def test_the_forgetting_probe_table_gives_each_change_from_base_with_an_interval():
    losses = {"base": [1.0, 2.0, 3.0, 4.0], "sft": [1.5, 2.5, 3.5, 4.5], "distill": [1.0, 2.0, 3.0, 4.0]}
    assert compare.paired_change(losses["base"], losses["sft"]) == (0.5, 0.5, 0.5)  # every row rose by 0.5
    table = compare.forgetting_table(losses).splitlines()
    assert table[2] == "| base | 2.500 |  |"
    assert table[3] == "| sft | 3.000 | +0.500 [+0.500, +0.500] |"
    assert table[4] == "| distill | 2.500 | +0.000 [+0.000, +0.000] |"


@pytest.mark.slow  # imports torch and transformers
def test_the_probe_loss_of_a_row_is_the_models_own_loss_on_its_answer_tokens():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from orcac.runtime.models import chat_format
    from tests.support.tiny_model import tiny_model_dir

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir())
    chat_format.prepare_tokenizer(tokenizer, "chatml")
    rows = compare.probe_rows(2)
    assert rows[0]["user"] == "How many grams are in 9 kilograms?"  # openorca_mix's first row
    losses = compare.row_losses(model, tokenizer, rows, max_length=512)
    for row, loss in zip(rows, losses, strict=True):
        e = chat_format.encode(tokenizer, row["system"], row["user"], row["assistant"], max_length=512)
        with torch.no_grad():  # transformers' own shifted cross-entropy over the labelled tokens
            expected = model(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels])).loss.item()
        assert loss == pytest.approx(expected, rel=1e-5)


def test_the_cost_table_gives_each_stages_tokens_per_second_and_seconds_an_epoch(tmp_path):
    """From train_steps of the output's last finished run (an interrupted later run is not read)."""
    from orcac.runtime.store import training

    db = tmp_path / "cautious.duckdb"
    store = training.open_for_training(db)

    def run(run_id, steps, finished):
        row = training.TrainRun(run_id, "sha", "m", compare.arm_output("distill"), "cpu", "bf16", False, True, "{}")
        training.begin_run(store, row)
        training.add_steps(store, [(run_id, *s) for s in steps])
        if finished:
            training.finish_run(store, row, final_loss=0.1)

    run(
        "r1",
        [
            ("warmup", 0, 1, 0.5, 0.3, 2e-4, 1.0, 600, 50.0),
            ("warmup", 0, 2, 1.0, 0.2, 1e-4, 1.0, 400, 100.0),
            ("reason", 1, 1, 1.0, 0.2, 2e-4, 1.0, 1000, 100.0),
            ("reason", 1, 2, 2.0, 0.1, 1e-4, 1.0, 1000, 400.0),
        ],
        finished=True,
    )
    run("r2", [("warmup", 0, 1, 0.5, 0.3, 2e-4, 1.0, 9999, 1.0)], finished=False)
    store.con.close()
    con = open_database(db, read_only=True)
    try:
        costs = compare.training_cost(con, compare.arm_output("distill"))
    finally:
        con.close()
    assert costs == [compare.StageCost("warmup", 2, 1.0, 1000, 100.0), compare.StageCost("reason", 2, 2.0, 2000, 400.0)]
    table = compare.cost_table({"distill": (compare.ArmEval("e1"), costs)}).splitlines()
    assert table[2] == "| distill | warmup | 2 | 1 | 1,000 | 100 | 10.0 | 100 | e1 |"
    assert table[3] == "| distill | reason | 2 | 2 | 2,000 | 400 | 5.0 | 200 | e1 |"
    assert table[4] == "| distill | all | 4 | | 3,000 | 500 | 6.0 | | e1 |"
