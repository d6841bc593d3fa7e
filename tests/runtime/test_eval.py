"""`orcac eval`: scoring hand-made answers, and a whole run on the tiny model."""

from __future__ import annotations

import pytest

from orcac.errors import OrcacError
from orcac.runtime.commands.evaluate import arms, scoring
from orcac.runtime.commands.evaluate import command as evaluate
from orcac.runtime.commands.evaluate.command import Answer, Held
from orcac.runtime.commands.train import command as train
from orcac.stats import bootstrap_gap, mcnemar, wilson
from tests.support.db import rows
from tests.support.plans import context, train_plan
from tests.support.train_data import orca_rows, write_records

pytestmark = pytest.mark.xdist_group("eval")

# (answer, finish_reason) -> (accepted, reason, adheres): gold is 42, accept = numeric,
# strategy = numbered steps + an "Answer:" line.
HAND_MADE = [
    ("1. 40 + 2 = 42.\nAnswer: 42", "stop", (True, "accepted", True)),  # right, in form
    ("1. 40 + 3 = 43.\nAnswer: 43", "stop", (False, "numeric", True)),  # wrong, in form
    ("1. 40 + 2 = 42.\nAnswer: 4", "length", (False, "truncated", True)),  # cut off by max_new_tokens
    ("The answer is 42", "stop", (True, "accepted", False)),  # right, but no steps, no Answer: line
    ("1. Let me think.\n2. Adding gives 42.", "stop", (True, "accepted", False)),  # no Answer: line
    ("1. Hmm.\n2. It is hard.", "stop", (False, "numeric", False)),  # no answer at all
    ("", "stop", (False, "empty", False)),
]


@pytest.fixture(scope="module")
def plan(tiny):
    return train_plan(str(tiny))


@pytest.mark.parametrize("text, finish, expected", HAND_MADE)
def test_hand_made_answers_are_scored(plan, text, finish, expected):
    s = scoring.score(plan, Held("add", 0, "What is 40 + 2?", "42"), Answer(text, finish, 5))
    assert (s.accepted, s.reason, s.adheres) == expected


def test_summary_counts_accuracy_adherence_and_truncation(plan):
    items = [scoring.score(plan, Held("add", i, "q", "42"), Answer(t, f, 5)) for i, (t, f, _) in enumerate(HAND_MADE)]
    (row,) = scoring.summarise("trained", {"add": items}, plan)
    assert row["examples"] == 7 and row["accepted"] == 3 and row["adherent"] == 3 and row["truncated"] == 1
    assert row["accuracy"] == pytest.approx(3 / 7) and row["adherence"] == pytest.approx(3 / 7)


def test_a_run_with_hand_made_answers_stores_and_shows_scores(plan, tmp_path, monkeypatch, capsys):
    holdout = [{"task": "add", "id": i, "user": f"What is 40 + {i}?", "gold": "42"} for i in range(len(HAND_MADE))]
    db = write_records(tmp_path / "build.duckdb", [], holdout=holdout)
    canned = {
        "base": [Answer("no idea", "stop", 2)] * len(HAND_MADE),
        "prompted": [Answer(HAND_MADE[0][0], "stop", 5)] * 6 + [Answer("no idea", "stop", 2)],  # 6 of 7 right, in form
        "trained": [Answer(t, f, 5) for t, f, _ in HAND_MADE],  # 3 of 7 right, 3 of 7 in form
    }
    monkeypatch.setattr(evaluate, "answer_all", lambda name, plan, root, held, db_path: ({"add": canned[name]}, name))
    monkeypatch.setattr(evaluate, "check_ready", lambda *args: None)  # canned answers: no model to look for
    evaluate.run(context(plan, tmp_path, db))

    scores = rows(db, "SELECT model, task, examples, accuracy, adherence FROM eval_runs ORDER BY model")
    (answers,) = rows(db, "SELECT count(*), count(*) FILTER (WHERE accepted) FROM eval_answers WHERE model = 'trained'")
    gaps = rows(db, "SELECT task, metric, base, prompted, trained, gap_closed FROM eval_gaps ORDER BY ALL")
    assert scores == [
        ("base", "add", 7, 0.0, 0.0),
        ("prompted", "add", 7, pytest.approx(6 / 7), pytest.approx(6 / 7)),
        ("trained", "add", 7, pytest.approx(3 / 7), pytest.approx(3 / 7)),
    ]
    assert answers == (7, 3)
    # (3/7 - 0) / (6/7 - 0) = 0.5 of the prompt's effect, per task and overall, for both metrics
    assert gaps == [
        (task, metric, 0.0, pytest.approx(6 / 7), pytest.approx(3 / 7), pytest.approx(0.5))
        for task in ("add", "all")
        for metric in ("accuracy", "adherence")
    ]
    shown = capsys.readouterr().out
    assert "0.50" in shown and "86%" in shown and "43%" in shown  # the arms and the gap, in the terminal table
    assert (tmp_path / plan.train.output / "eval.png").read_bytes()[:4] == b"\x89PNG"
    # 3 of 7 rows better, none worse: p = 0.25, and seven rows cannot tell a difference under 6 rows
    assert "[16-75]" in shown and "0.250" in shown  # trained's 3 of 7 with its Wilson interval; the paired p
    assert "add accuracy, trained against base: n=7: a difference under ~86 points cannot be told from chance" in shown


def _canned_run(plan, tmp_path, monkeypatch, canned: dict[str, list[Answer]]):
    n = len(canned["base"])
    holdout = [{"task": "add", "id": i, "user": f"What is 40 + {i}?", "gold": "42"} for i in range(n)]
    db = write_records(tmp_path / "build.duckdb", [], holdout=holdout)
    monkeypatch.setattr(evaluate, "answer_all", lambda name, plan, root, held, db_path: ({"add": canned[name]}, name))
    monkeypatch.setattr(evaluate, "check_ready", lambda *args: None)  # canned answers: no model to look for
    evaluate.run(context(plan, tmp_path, db))
    return db


def test_every_rate_has_its_interval_and_base_against_trained_its_paired_test(plan, tmp_path, monkeypatch, capsys):
    """12 rows: base right on 2 (no form), prompted right and in form on all, trained on 10.
    Accuracy: 8 rows better, none worse (p = 2 / 2^8); adherence: 10 better (p = 2 / 2^10)."""
    right_in_form, right_bare, wrong = (
        Answer(HAND_MADE[0][0], "stop", 5),
        Answer("The answer is 42", "stop", 4),
        Answer("no idea", "stop", 2),
    )
    canned = {
        "base": [right_bare] * 2 + [wrong] * 10,
        "prompted": [right_in_form] * 12,
        "trained": [right_in_form] * 10 + [wrong] * 2,
    }
    db = _canned_run(plan, tmp_path, monkeypatch, canned)

    stored = rows(
        db,
        "SELECT model, accuracy_n, accuracy_low, accuracy_high, adherence_n, adherence_low, adherence_high "
        "FROM eval_runs ORDER BY model",
    )
    assert stored == [
        ("base", 12, *map(pytest.approx, wilson(2, 12)), 12, *map(pytest.approx, wilson(0, 12))),
        ("prompted", 12, *map(pytest.approx, wilson(12, 12)), 12, *map(pytest.approx, wilson(12, 12))),
        ("trained", 12, *map(pytest.approx, wilson(10, 12)), 12, *map(pytest.approx, wilson(10, 12))),
    ]
    paired = rows(db, "SELECT task, metric, pairs, worse, better, p_value FROM eval_paired ORDER BY ALL")
    assert paired == [
        (task, metric, 12, 0, better, pytest.approx(p))
        for task in ("add", "all")
        for metric, better, p in (("accuracy", 8, 2 / 2**8), ("adherence", 10, 2 / 2**10))
    ]
    assert mcnemar(0, 8) == pytest.approx(2 / 2**8)
    gaps = rows(db, "SELECT metric, gap_closed, gap_low, gap_high FROM eval_gaps WHERE task = 'add' ORDER BY metric")
    # the bootstrap over the same rows (base, prompted, trained), seeded: the stored interval is reproducible
    accuracy_rows = [(True, True, True)] * 2 + [(False, True, True)] * 8 + [(False, True, False)] * 2
    adherence_rows = [(False, True, True)] * 10 + [(False, True, False)] * 2
    assert gaps == [
        ("accuracy", pytest.approx(0.8), *map(pytest.approx, bootstrap_gap(accuracy_rows))),
        ("adherence", pytest.approx(10 / 12), *map(pytest.approx, bootstrap_gap(adherence_rows))),
    ]
    low, high = gaps[0][2:]
    assert low < 0.8 < high
    shown = capsys.readouterr().out
    assert "83%" in shown and "[55-95]" in shown  # trained's 10 of 12 over its interval
    assert "0.008" in shown and "0.002" in shown  # the paired p of both metrics
    assert f"[{low:.2f}, {high:.2f}]" in shown  # the gap closed's interval
    assert "cannot be told from chance" not in shown and "could be chance" not in shown  # told apart: no such line


@pytest.mark.slow
def test_base_and_trained_tiny_models_answer_every_held_out_example(plan, tmp_path):
    records = orca_rows("add", 8) + orca_rows("mul", 8)
    holdout = orca_rows("add", 5, seed=9) + orca_rows("mul", 3, seed=9)
    db = write_records(tmp_path / "build.duckdb", records, holdout=holdout)
    train.run(context(plan, tmp_path, db), max_steps=1)
    evaluate.run(context(plan, tmp_path, db), limit=4, models=["base", "trained"])
    counts = rows(db, "SELECT model, task, count(*) FROM eval_answers GROUP BY ALL ORDER BY ALL")
    finish = {r[0] for r in rows(db, "SELECT DISTINCT finish_reason FROM eval_answers")}
    assert counts == [("base", "add", 4), ("base", "mul", 3), ("trained", "add", 4), ("trained", "mul", 3)]
    assert finish <= {"stop", "length"}
    # without the prompted arm there is no gap, but base and trained are still paired on the same rows
    paired = rows(db, "SELECT task, metric, pairs, worse + better, p_value FROM eval_paired ORDER BY ALL")
    assert [r[:3] for r in paired] == [
        (t, m, n) for t, n in (("add", 4), ("all", 7), ("mul", 3)) for m in ("accuracy", "adherence")
    ]
    differing = {
        (task, metric): n
        for task, metric, n in rows(
            db,
            "SELECT b.task, m.metric, count(*) FILTER (WHERE CASE m.metric WHEN 'accuracy' THEN b.accepted <> t.accepted "
            "ELSE b.adheres <> t.adheres END) FROM eval_answers b JOIN eval_answers t USING (task, row_index) "
            "CROSS JOIN (SELECT unnest(['accuracy', 'adherence']) AS metric) m "
            "WHERE b.model = 'base' AND t.model = 'trained' GROUP BY ALL",
        )
    }
    assert all(differing[(task, metric)] == d for task, metric, _, d, _ in paired if task != "all")  # the same rows
    assert all(0 < p <= 1 for *_, p in paired)
    bounds = rows(
        db, "SELECT accuracy_n, accuracy_low <= accuracy AND accuracy <= accuracy_high, adherence_n FROM eval_runs"
    )
    assert sorted(bounds) == [(3, True, 3), (3, True, 3), (4, True, 4), (4, True, 4)]
    assert rows(db, "SELECT count(*) FROM eval_gaps") == [(0,)]


def test_generate_is_greedy_and_left_padded(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from orcac.runtime.models import chat_format

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    prompts = [chat_format.prompt_ids(tokenizer, "sys", u) for u in ("Hi", "What is a much longer question, really?")]
    together = arms.generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=2)
    alone = [arms.generate(model, tokenizer, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert together == alone  # padding does not change a greedy answer


def test_generate_streams_past_its_batch_and_reports_progress(tiny):
    """More prompts than `batch_size`: one stream (finished rows replaced by waiting prompts),
    the same answers as one prompt at a time, and progress heard every `batch_size` answers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from orcac.runtime.models import chat_format

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    prompts = [chat_format.prompt_ids(tokenizer, "sys", f"Question {i}: " + "why? " * i) for i in range(5)]
    heard: list[int] = []
    streamed = arms.generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=2, progress=heard.append)
    alone = [arms.generate(model, tokenizer, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert streamed == alone
    assert heard == sorted(heard) and heard[-1] == 5 and len(heard) <= 3


def test_no_trained_student_says_train_first(plan, tmp_path):
    db = write_records(tmp_path / "build.duckdb", [], holdout=orca_rows("add", 2))
    with pytest.raises(OrcacError, match="no trained student") as error:
        evaluate.run(context(plan, tmp_path, db), models=["trained"])
    assert "orcac train" in error.value.hint


def test_unknown_model_name(plan, tmp_path):
    with pytest.raises(OrcacError, match="unknown model 'student'"):
        evaluate.run(context(plan, tmp_path, tmp_path / "x.duckdb"), models=["student"])


@pytest.mark.slow
def test_the_prompted_arm_is_the_teacher_with_its_strategy_prompt_through_the_teacher_runtime(
    plan, tiny, tmp_path, monkeypatch
):
    from orcac.runtime.teachers import calls as teachers
    from orcac.runtime.teachers import jobs as teacher_jobs
    from orcac.specs.plan import TeacherPlan

    teacher = TeacherPlan(name="t", model=f"local/{tiny}", max_tokens=6, batch_size=4, threads=2)
    with_teacher = plan.model_copy(update={"teachers": {"t": teacher}})
    db = write_records(tmp_path / "build.duckdb", [], holdout=orca_rows("add", 3) + orca_rows("mul", 2))
    sent = []
    real_make_job = teacher_jobs.make_job
    monkeypatch.setattr(
        teacher_jobs,
        "make_job",
        lambda t, messages, options=None: sent.append(messages) or real_make_job(t, messages, options),
    )
    before = teachers.run_jobs
    asked = []
    monkeypatch.setattr(
        teachers, "run_jobs", lambda p, jobs, *a, **k: asked.append(len(jobs)) or before(p, jobs, *a, **k)
    )
    evaluate.run(context(with_teacher, tmp_path, db), models=["prompted"])
    assert {m[0]["content"] for m in sent} == {with_teacher.tasks["add"].system}  # the full strategy prompt
    runs = rows(db, "SELECT model, model_path, task, examples FROM eval_runs ORDER BY task")
    assert [(r[0], r[2], r[3]) for r in runs] == [("prompted", "add", 3), ("prompted", "mul", 2)]
    evaluate.run(context(with_teacher, tmp_path, db), models=["prompted"])
    assert asked == [5]  # the second eval reuses the stored answers: nothing is paid twice


@pytest.mark.slow
def test_a_student_trained_on_another_plan_is_flagged(plan, tmp_path, capsys):
    records = orca_rows("add", 4) + orca_rows("mul", 4)
    db = write_records(tmp_path / "build.duckdb", records, holdout=orca_rows("add", 1, seed=5))
    train.run(context(plan, tmp_path, db), max_steps=1)
    evaluate.run(context(plan, tmp_path, db), models=["trained"])
    assert "another version of this plan" not in capsys.readouterr().err
    eval_only = plan.model_copy(update={"eval": plan.eval.model_copy(update={"max_new_tokens": 3})})
    evaluate.run(context(eval_only, tmp_path, db), models=["trained"])
    assert "another version of this plan" not in capsys.readouterr().err  # training never reads the eval block
    retrained = plan.model_copy(update={"train": plan.train.model_copy(update={"lr": 0.5})})
    evaluate.run(context(retrained, tmp_path, db), models=["trained"])
    assert "was trained on another version of this plan" in capsys.readouterr().err


def test_every_phase_is_checked_before_the_first_starts(plan, tmp_path, monkeypatch):
    from orcac.specs.plan import TeacherPlan

    monkeypatch.delenv("ORCAC_TEST_UNSET_KEY", raising=False)
    teacher = TeacherPlan(name="t", model="openai/gpt-4o-mini", api_key_env="ORCAC_TEST_UNSET_KEY")
    with_teacher = plan.model_copy(
        update={"teachers": {"t": teacher}, "eval": plan.eval.model_copy(update={"prompted": True})}
    )
    db = write_records(tmp_path / "build.duckdb", [], holdout=orca_rows("add", 2))
    started = []
    monkeypatch.setattr(evaluate, "answer_all", lambda name, *a, **k: started.append(name))
    with pytest.raises(OrcacError, match="ORCAC_TEST_UNSET_KEY is not set"):
        evaluate.run(context(with_teacher, tmp_path, db), models=["base", "prompted"])
    assert started == []  # the base model was not scored first
    with pytest.raises(OrcacError, match="no trained student"):
        evaluate.run(context(plan, tmp_path, db), models=["base", "trained"])
    assert started == []


def test_eval_runs_the_student_as_train_does_fp32_weights_under_bf16_autocast(plan, tmp_path):
    """precision = bf16 (train's, which eval reads): the arm's weights stay fp32 and its
    matmuls run in bf16, the arithmetic its training loss was measured in, not cast weights."""
    import torch

    bf16 = plan.model_copy(update={"train": plan.train.model_copy(update={"precision": "bf16"})})
    model, tokenizer, _, chosen = evaluate.load_model("base", bf16, tmp_path)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    ids = torch.tensor([tokenizer("1 + 1 =")["input_ids"]])
    with torch.no_grad(), chosen.running("cpu"):
        assert model(ids).logits.dtype == torch.bfloat16
