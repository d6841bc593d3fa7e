"""`objective = distill`: the student learns the prompted teacher's next-token distributions
(orcac/runtime/training/distill.py), on the tiny random Llama."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from orcac.runtime.commands.train import command as train
from orcac.runtime.models import chat_format
from orcac.runtime.training import distill
from orcac.specs.plan import DistillPlan
from tests.support.db import rows
from tests.support.plans import context, train_plan
from tests.support.train_data import orca_rows, write_records

pytestmark = pytest.mark.xdist_group("train")


@pytest.fixture(autouse=True)
def _checkpoint_every_step(monkeypatch):
    monkeypatch.setattr(train, "CHECKPOINT_EVERY_S", 0.0)


def _distill_plan(tiny, objective="distill", beta=0.0, on_policy=0.0, epochs=1.0, lr=1e-3):
    plan = train_plan(str(tiny), stages=(("only", ("add",), epochs),), lr=lr)
    update = {"objective": objective, "distill": DistillPlan(teacher="t", beta=beta, on_policy=on_policy)}
    return plan.model_copy(update={"train": plan.train.model_copy(update=update)})


@pytest.fixture(scope="module")
def tokenizer(tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    chat_format.prepare_tokenizer(tokenizer)
    return tokenizer


def _perturbed(tiny, seed=1, scale=0.5):
    """The tiny model with noise on every weight: a teacher that differs from the student."""
    model = AutoModelForCausalLM.from_pretrained(tiny)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale * parameter.std())
    return model.eval()


def _hand_divergence(student, teacher, pairs, beta):
    """Each pair run alone (no padding), the divergence written out from its definition, summed
    over answer tokens and divided by their count."""
    total, count = 0.0, 0
    torch.set_grad_enabled(False)
    for pair in pairs:
        n = pair.answer_tokens
        s = student(input_ids=torch.tensor([pair.input_ids])).logits[0, -n - 1 : -1].double()
        t = teacher(input_ids=torch.tensor([pair.teacher_input_ids])).logits[0, -n - 1 : -1].double()
        p_s, p_t = s.softmax(-1), t.softmax(-1)

        def kl(p, q):  # KL(p || q) per position
            return (p * (p.log() - q.log())).sum(-1)

        if beta == 0:
            per_token = kl(p_t, p_s)
        else:
            mixture = beta * p_t + (1 - beta) * p_s
            per_token = beta * kl(p_t, mixture) + (1 - beta) * kl(p_s, mixture)
        total += float(per_token.sum())
        count += n
    torch.set_grad_enabled(True)
    return total / count


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_the_loss_equals_a_hand_computed_divergence(tiny, tokenizer, beta):
    plan = _distill_plan(tiny, beta=beta)
    student, teacher = AutoModelForCausalLM.from_pretrained(tiny).eval(), _perturbed(tiny)
    # answers of different lengths and prompts of different lengths: the padding is exercised
    pairs = [distill.encode_pair(tokenizer, plan, row, 256) for row in orca_rows("add", 3)]
    assert len({p.answer_tokens for p in pairs}) > 1
    batch = distill.collate(tokenizer.pad_token_id)([p.__dict__ for p in pairs])
    with torch.no_grad():
        loss, divergence = distill.distill_loss(student, teacher, batch, beta=beta)
    assert float(loss) == pytest.approx(_hand_divergence(student, teacher, pairs, beta), rel=1e-4)
    assert float(loss) > 1e-3  # a random tiny model is nearly uniform: small, but not nothing


def test_the_loss_is_zero_when_teacher_and_student_see_the_same_prompt(tiny, tokenizer):
    plan = _distill_plan(tiny, beta=0.5)
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    pairs = [distill.encode_pair(tokenizer, plan, row, 256) for row in orca_rows("add", 3)]
    same = [{**p.__dict__, "teacher_input_ids": p.input_ids} for p in pairs]
    collate = distill.collate(tokenizer.pad_token_id)
    with torch.no_grad():
        loss, _ = distill.distill_loss(model, model, collate(same), beta=0.5)
        # the teacher shown the strategy's prompt instead: the same model, another distribution
        prompted, _ = distill.distill_loss(model, model, collate([p.__dict__ for p in pairs]), beta=0.5)
    assert abs(float(loss)) < 1e-6
    assert float(prompted) > 1e-4


def test_the_teacher_sees_the_strategy_and_the_student_the_erase_message(tiny, tokenizer):
    plan = _distill_plan(tiny)
    pair = distill.encode_pair(tokenizer, plan, orca_rows("add", 1)[0], 256)
    student_text, teacher_text = tokenizer.decode(pair.input_ids), tokenizer.decode(pair.teacher_input_ids)
    task = plan.tasks["add"]
    assert plan.erase[task.erase].system in student_text and task.system not in student_text
    assert task.system in teacher_text and plan.erase[task.erase].system not in teacher_text
    n = pair.answer_tokens
    assert pair.input_ids[-n:] == pair.teacher_input_ids[-n:]


def _divergence_on(model_dir_or_model, teacher, tokenizer, plan, records):
    model = model_dir_or_model
    if not hasattr(model, "forward"):
        model = AutoModelForCausalLM.from_pretrained(model)
    pairs = [distill.encode_pair(tokenizer, plan, row, 256) for row in records]
    with torch.no_grad():
        loss, _ = distill.distill_loss(
            model.eval(), teacher, distill.collate(tokenizer.pad_token_id)([p.__dict__ for p in pairs]), beta=0.0
        )
    return float(loss)


@pytest.mark.slow
def test_train_with_the_distill_objective_lowers_the_divergence(tiny, tokenizer, tmp_path):
    """Another local model as the teacher (the tiny one, perturbed, in a directory)."""
    records = orca_rows("add", 6, long_every=100)
    db = write_records(tmp_path / "build.duckdb", records)
    teacher = _perturbed(tiny)
    teacher.save_pretrained(tmp_path / "teacher")
    AutoTokenizer.from_pretrained(tiny).save_pretrained(tmp_path / "teacher")
    plan = _distill_plan(tiny, beta=0.0, epochs=2.0, lr=1e-3)
    teachers = {"t": plan.teachers["t"].model_copy(update={"model": str(tmp_path / "teacher")})}
    plan = plan.model_copy(update={"teachers": teachers})
    before = _divergence_on(tiny, teacher, tokenizer, plan, records)
    assert train.run(context(plan, tmp_path, db)) == 0
    after = _divergence_on(tmp_path / plan.train.output / train.FINAL_DIR, teacher, tokenizer, plan, records)
    assert after < 0.8 * before


@pytest.mark.slow
def test_on_policy_and_sft_plus_distill_train(tiny, tmp_path):
    db = write_records(tmp_path / "build.duckdb", orca_rows("add", 4))
    plan = _distill_plan(tiny, objective="sft+distill", beta=0.5, on_policy=1.0)
    assert train.run(context(plan, tmp_path, db), max_steps=2) == 0
    losses = [r[0] for r in rows(db, "SELECT loss FROM train_steps ORDER BY step")]
    assert len(losses) == 2 and all(loss == loss for loss in losses)


@pytest.mark.slow
def test_train_steps_count_the_students_tokens_not_the_padding(tiny, tokenizer, tmp_path):
    """tokens/s of distillation against SFT: a step's tokens are its pairs' student tokens,
    as SFT counts its records', not the width of the left-padded batch times its rows."""
    records = orca_rows("add", 8, long_every=3)  # answers of mixed lengths: every batch is padded
    db = write_records(tmp_path / "build.duckdb", records)
    plan = _distill_plan(tiny)
    assert train.run(context(plan, tmp_path, db)) == 0
    pairs = [distill.encode_pair(tokenizer, plan, row, plan.train.max_length) for row in records]
    logged = rows(db, "SELECT sum(tokens) FROM train_steps")[0][0]
    assert logged == sum(len(p.input_ids) for p in pairs)
