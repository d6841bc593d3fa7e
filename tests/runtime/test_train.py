"""`orcac train` on a tiny random Llama with the SmolLM2 tokenizer (CPU, a few seconds a run)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from orcac.errors import OrcacError
from orcac.runtime.commands.train import command as train
from orcac.runtime.commands.train import resume
from orcac.runtime.commands.train.student import load_student
from orcac.runtime.commands.train.trainer import encode_records
from orcac.runtime.models import chat_format
from tests.support.db import rows
from tests.support.plans import ERASE, context, train_plan
from tests.support.train_data import orca_rows, write_records

pytestmark = pytest.mark.xdist_group("train")


@pytest.fixture(autouse=True)
def _checkpoint_every_step(monkeypatch):
    monkeypatch.setattr(train, "CHECKPOINT_EVERY_S", 0.0)


N_PER_TASK = 12


@pytest.fixture(scope="module")
def records():
    return orca_rows("add", N_PER_TASK) + orca_rows("mul", N_PER_TASK)


def _runs(db: Path):
    return rows(db, "SELECT status FROM train_runs")


def _steps(db: Path):
    return rows(db, "SELECT stage_index, stage, step, loss FROM train_steps ORDER BY stage_index, step")


@pytest.fixture(scope="module")
def full_run(tiny, records, tmp_path_factory):
    """One uninterrupted two-stage run; several tests read what it left behind."""
    root = tmp_path_factory.mktemp("full")
    db = write_records(root / "build.duckdb", records)
    plan = train_plan(str(tiny))
    assert train.run(context(plan, root, db)) == 0
    return root, db, plan


# ---- labels ---------------------------------------------------------------------------


def test_labels_mask_system_and_user_on_a_packed_batch(tiny, records, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    chat_format.prepare_tokenizer(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    plan = train_plan(str(tiny), batch_size=4)
    stage = plan.train.stages[1]
    trainer = train.stage_trainer(model, tokenizer, stage, 1, records, plan=plan, stage_dir=tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))

    assert "attention_mask" not in batch  # the block mask comes from position_ids
    assert batch["input_ids"].shape[0] > 1  # one pack a row (runtime/training/batches.py)
    segments = []
    for ids, labels, positions in zip(batch["input_ids"], batch["labels"], batch["position_ids"]):
        real = len(ids)
        while real and positions[real - 1] == 0:  # right padding: position 0, label -100
            assert labels[real - 1] == -100
            real -= 1
        starts = (positions[:real] == 0).nonzero().flatten().tolist() + [real]
        segments += [(ids[a:b].tolist(), labels[a:b].tolist()) for a, b in zip(starts, starts[1:])]
    assert len(segments) > 2, "the batch should hold several packed examples"
    im_start, im_end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assistant_header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    for seg_ids, seg_labels in segments:
        # Find where the assistant's turn opens: everything up to its header is system/user.
        for k in range(len(seg_ids)):
            if seg_ids[k : k + len(assistant_header)] == assistant_header:
                answer_start = k + len(assistant_header)
                break
        else:
            pytest.fail("no assistant turn in a packed example")
        text = tokenizer.decode(seg_ids[:answer_start])
        assert text.startswith(f"<|im_start|>system\n{ERASE}<|im_end|>\n<|im_start|>user\n")
        assert all(x == -100 for x in seg_labels[:answer_start]), "a system or user token carries a label"
        assert seg_labels[answer_start:] == seg_ids[answer_start:], "an assistant token is not labelled"
        assert seg_ids[-1] == im_end and seg_ids.count(im_start) == 3  # the example ends with its turn


def test_encode_labels_only_the_answer_and_the_end_of_turn(tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    chat_format.prepare_tokenizer(tokenizer)
    e = chat_format.encode(tokenizer, ERASE, "What is 2 + 2?", "1. Add.\nAnswer: 4")
    answer = [t for t, lab in zip(e.input_ids, e.labels) if lab != -100]
    assert tokenizer.decode(answer) == "1. Add.\nAnswer: 4<|im_end|>"
    # Training continues exactly the prompt that eval feeds to generate.
    assert e.input_ids[: e.prompt_tokens] == chat_format.prompt_ids(tokenizer, ERASE, "What is 2 + 2?")


def test_chatml_and_pad_token_are_added_where_missing(tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    tokenizer.chat_template = None
    tokenizer.pad_token = None
    added = chat_format.prepare_tokenizer(tokenizer)
    assert added == 1 and tokenizer.pad_token == chat_format.PAD_TOKEN
    assert tokenizer.chat_template == chat_format.CHATML_TEMPLATE
    assert tokenizer.eos_token == "<|im_end|>"


# ---- packing isolation ------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_a_packed_forward_equals_separate_forwards(tiny, impl):
    model = AutoModelForCausalLM.from_pretrained(tiny, attn_implementation=impl).eval()
    g = torch.Generator().manual_seed(3)
    a, b = torch.randint(0, 49152, (9,), generator=g), torch.randint(0, 49152, (6,), generator=g)
    with torch.no_grad():
        alone_a = model(a[None], use_cache=False).logits[0]
        alone_b = model(b[None], use_cache=False).logits[0]
        packed = model(
            input_ids=torch.cat([a, b])[None],
            position_ids=torch.cat([torch.arange(9), torch.arange(6)])[None],
            use_cache=False,
        ).logits[0]
    torch.testing.assert_close(packed[:9], alone_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[9:], alone_b, atol=1e-5, rtol=1e-5)
    assert train.isolation_check(model)


# ---- stages, outputs, resume --------------------------------------------------------------


@pytest.mark.slow
def test_two_stages_run_in_order_and_the_second_starts_from_the_first(full_run, tiny):
    root, db, plan = full_run
    out = root / plan.train.output
    first = json.loads((out / "stages/01-basics/stage.json").read_text())
    second = json.loads((out / "stages/02-reason/stage.json").read_text())
    base = train.fingerprint(AutoModelForCausalLM.from_pretrained(tiny))
    assert first["weights_in"] == base
    assert second["weights_in"] == first["weights_out"] != base
    steps = _steps(db)
    assert [s[1] for s in steps] == ["basics"] * first["steps"] + ["reason"] * second["steps"]
    assert [s[2] for s in steps] == list(range(1, first["steps"] + 1)) + list(range(1, second["steps"] + 1))


@pytest.mark.slow
def test_final_weights_come_with_tokenizer_plan_and_hash(full_run):
    root, db, plan = full_run
    out = root / plan.train.output
    final = out / train.FINAL_DIR
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "plan.yaml"):
        assert (final / name).is_file(), name
    digest = hashlib.sha256((final / "plan.yaml").read_bytes()).hexdigest()
    assert (final / "plan.sha256").read_text().split()[0] == digest
    assert "basics" in (final / "plan.yaml").read_text()
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("stages/*/checkpoint-*")), "checkpoints of finished stages are dropped"
    ((status, final_loss),) = rows(db, "SELECT status, final_loss FROM train_runs")
    assert status == "finished" and final_loss == pytest.approx(_steps(db)[-1][3])
    # The trained student generates with its saved tokenizer.
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert tokenizer.chat_template and tokenizer.pad_token


# Pinned: the losses the first steps produce today (tiny model, seed 0, fp32 on CPU).
PINNED = [10.812813, 10.803339, 10.636694, 10.525096]


@pytest.mark.slow
def test_pinned_losses(full_run):
    _, db, _ = full_run
    losses = [s[3] for s in _steps(db)[: len(PINNED)]]
    assert losses == pytest.approx(PINNED, abs=2e-3)


class _StopAfterSave(TrainerCallback):
    """Simulate a crash right after the checkpoint at `step` of stage `stage_index` is written."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_resume_mid_stage_gives_the_same_final_loss(full_run, tiny, records, tmp_path, monkeypatch):
    _, full_db, plan = full_run
    expected = _steps(full_db)
    second_stage_steps = sum(1 for s in expected if s[0] == 1)
    stop_at = second_stage_steps // 2  # a checkpoint step in the middle of stage 2

    db = write_records(tmp_path / "build.duckdb", records)
    monkeypatch.setattr(train, "extra_callbacks", lambda stage, index: [_StopAfterSave(stop_at)] if index == 1 else [])
    with pytest.raises(KeyboardInterrupt):
        train.run(context(plan, tmp_path, db))
    checkpoints = list((tmp_path / plan.train.output).glob("stages/02-reason/checkpoint-*"))
    assert checkpoints and resume.checkpoint_step(checkpoints[0]) < second_stage_steps
    assert _runs(db) == [("interrupted",)]
    con = duckdb.connect(str(db))  # and one that a kill -9 left 'running'
    con.execute("INSERT INTO train_runs (run_id, output, status) VALUES ('dead', ?, 'running')", [plan.train.output])
    con.close()

    monkeypatch.setattr(train, "extra_callbacks", lambda stage, index: [])
    assert train.run(context(plan, tmp_path, db), resume=True) == 0
    assert sorted(_runs(db)) == [("finished",), ("interrupted",)]
    resumed = _steps(db)
    assert [s[:3] for s in resumed] == [s[:3] for s in expected]  # every step once, none twice
    assert resumed[-1][3] == pytest.approx(expected[-1][3], abs=1e-4)


def test_max_steps_caps_each_stage(tiny, records, tmp_path):
    db = write_records(tmp_path / "build.duckdb", records)
    plan = train_plan(str(tiny))
    train.run(context(plan, tmp_path, db), max_steps=2)
    assert [(s[0], s[2]) for s in _steps(db)] == [(0, 1), (0, 2), (1, 1), (1, 2)]


def test_a_run_writes_through_one_database_connection(tiny, records, tmp_path, monkeypatch):
    """The run's rows, every step's flush (a checkpoint every step here) and the losses read
    back for the curve go through the run's one connection, not a new one each time."""
    from orcac.runtime.store import database

    db = write_records(tmp_path / "build.duckdb", records)
    opened = []
    real = database.connect
    monkeypatch.setattr(
        database,
        "connect",
        lambda path, *, read_only=False: opened.append(read_only) or real(path, read_only=read_only),
    )
    assert train.run(context(train_plan(str(tiny)), tmp_path, db), max_steps=2) == 0
    assert opened.count(False) == 1, opened
    assert len(_steps(db)) == 4 and _runs(db) == [("finished",)]


@pytest.mark.slow
def test_bf16_trains_on_a_cpu_with_or_without_native_bf16(tiny, records, tmp_path):
    """precision = bf16 once stopped `orcac train` with transformers' "Your setup doesn't support
    bf16/gpu"; on a CPU it is autocast (native where the CPU has it, emulated where not)."""
    db = write_records(tmp_path / "build.duckdb", records)
    plan = train_plan(str(tiny), stages=(("only", ("add",), 1.0),))
    plan = plan.model_copy(update={"train": plan.train.model_copy(update={"precision": "bf16"})})
    assert train.run(context(plan, tmp_path, db), max_steps=2) == 0
    ((used,),) = rows(db, "SELECT precision FROM train_runs")
    assert used == "bf16"
    assert all(s[3] == s[3] and s[3] < 20 for s in _steps(db))  # finite losses


def test_lora_trains_and_merges(tiny, records, tmp_path):
    db = write_records(tmp_path / "build.duckdb", records)
    plan = train_plan(str(tiny), lora=True, stages=(("only", ("add",), 1.0),))
    train.run(context(plan, tmp_path, db), max_steps=2)
    final = tmp_path / plan.train.output / train.FINAL_DIR
    merged = AutoModelForCausalLM.from_pretrained(final)
    assert not any("lora" in name for name in merged.state_dict())
    assert train.fingerprint(merged) != train.fingerprint(AutoModelForCausalLM.from_pretrained(tiny))


# ---- one-line errors ------------------------------------------------------------------------


def test_no_records_for_a_stage_names_the_tasks_and_says_build(tiny, tmp_path):
    db = write_records(tmp_path / "build.duckdb", orca_rows("add", 4))
    plan = train_plan(str(tiny), stages=(("basics", ("add",), 1.0), ("later", ("mul",), 1.0)))
    with pytest.raises(OrcacError) as error:
        train.run(context(plan, tmp_path, db))
    assert "stage later: no training records for task(s) mul" in error.value.message
    assert "orcac build" in error.value.hint


def test_a_task_without_records_in_a_mixed_stage_is_a_warning(tiny, tmp_path, capsys):
    db = write_records(tmp_path / "build.duckdb", orca_rows("add", 4))
    train.run(context(train_plan(str(tiny)), tmp_path, db), max_steps=1)
    assert "warning: stage reason: no training records for task(s) mul" in capsys.readouterr().err


def test_missing_database_says_build_first(tiny, tmp_path):
    with pytest.raises(OrcacError, match="no build database"):
        train.run(context(train_plan(str(tiny)), tmp_path, tmp_path / "nothing.duckdb"))


def test_a_prompt_longer_than_max_length_says_what_to_change(tiny, tmp_path):
    long = orca_rows("add", 2) + orca_rows("mul", 2)
    long[0]["user"] = "What is 2 + 2? " * 40
    db = write_records(tmp_path / "build.duckdb", long)
    with pytest.raises(OrcacError) as error:
        train.run(context(train_plan(str(tiny), max_length=64), tmp_path, db))
    assert "record add-0 of task add: its prompt is" in error.value.message
    assert _runs(db) == [("failed",)]
    assert "max_length" in error.value.hint


def test_a_student_that_cannot_be_loaded(records, tmp_path):
    db = write_records(tmp_path / "build.duckdb", records)
    with pytest.raises(OrcacError, match="cannot load|not found"):
        train.run(context(train_plan(str(tmp_path / "missing.gguf")), tmp_path, db))


@pytest.mark.slow
def test_the_gguf_student_loads_trainable_and_saveable(tmp_path):
    """The demo's student: GGUF, dequantised by transformers but flagged as quantized."""
    from transformers.trainer_utils import validate_quantization_for_training

    from orcac.specs.plan import StudentPlan

    model, tokenizer = load_student(StudentPlan(name="s", model="local/smollm2-135m-instruct"), tmp_path)
    validate_quantization_for_training(model)  # raises for a "purely quantized" model
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").is_file()
    assert model.dtype == torch.float32 and tokenizer.pad_token is not None


def test_the_command_line_runs_a_plan_file(tiny, records, tmp_path):
    from orcac.cli import main
    from orcac.compiler import dump_plan

    plan = train_plan(str(tiny), stages=(("only", ("add",), 1.0),))
    (tmp_path / "test.plan.yaml").write_text(dump_plan(plan))
    db = write_records(tmp_path / "build.duckdb", records)
    args = ["train", str(tmp_path / "test.plan.yaml"), "--db", str(db), "--max-steps", "1"]
    assert main(args) == 0
    assert main([*args, "--resume"]) == 0  # everything done: nothing to train again
    assert (tmp_path / "out/student/final/plan.yaml").read_text() == dump_plan(plan)


class _StopBeforeStage(TrainerCallback):
    """Simulate a crash after the earlier stages finished, before this one trained a step."""

    def on_train_begin(self, args, state, control, **kwargs):
        raise KeyboardInterrupt


def _student_without_pad_token(tiny: Path, where: Path) -> Path:
    """The tiny model with a tokenizer that lacks a pad token: orcac adds one, so it grows."""
    import shutil

    shutil.copytree(tiny, where)
    tokenizer = AutoTokenizer.from_pretrained(where)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(where)
    return where


@pytest.mark.slow
def test_a_resumed_run_equals_an_uninterrupted_one_when_a_lora_stage_follows(tiny, records, tmp_path, monkeypatch):
    """The tokenizer grew for the student, so every LoRA stage trains the embeddings in full:
    a resumed run, which loads stage 2's starting weights from disk, must know that too."""
    student = _student_without_pad_token(tiny, tmp_path / "student")
    plan = train_plan(str(student), lora=True)
    full_root, resumed_root = tmp_path / "full", tmp_path / "resumed"
    full_db = write_records(full_root / "build.duckdb", records)
    assert train.run(context(plan, full_root, full_db), max_steps=3) == 0

    db = write_records(resumed_root / "build.duckdb", records)
    monkeypatch.setattr(train, "extra_callbacks", lambda stage, index: [_StopBeforeStage()] if index == 1 else [])
    with pytest.raises(KeyboardInterrupt):
        train.run(context(plan, resumed_root, db), max_steps=3)
    monkeypatch.setattr(train, "extra_callbacks", lambda stage, index: [])
    assert train.run(context(plan, resumed_root, db), resume=True, max_steps=3) == 0

    assert [s[:3] for s in _steps(db)] == [s[:3] for s in _steps(full_db)]
    assert [s[3] for s in _steps(db)] == pytest.approx([s[3] for s in _steps(full_db)], abs=1e-5)
    final = [
        AutoModelForCausalLM.from_pretrained(root / plan.train.output / train.FINAL_DIR)
        for root in (full_root, resumed_root)
    ]
    assert train.fingerprint(final[1]) == train.fingerprint(final[0])


# ---- memory ---------------------------------------------------------------------------------


def _free_memory_between(monkeypatch, pick):
    """Make the machine have `pick(estimate)` bytes free, whatever it really has."""
    from orcac.runtime.training import memory

    seen = []
    real = memory.step_memory
    monkeypatch.setattr(memory, "step_memory", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    monkeypatch.setattr(memory, "free_memory", lambda on_gpu: (pick(seen[-1]), "on this machine"))
    return seen


def test_a_step_that_cannot_fit_is_refused_in_one_line_before_it_starts(tiny, records, tmp_path, monkeypatch):
    _free_memory_between(monkeypatch, lambda need: need.total(checkpointing=True) - 1)
    db = write_records(tmp_path / "build.duckdb", records)
    with pytest.raises(OrcacError) as error:
        train.run(context(train_plan(str(tiny)), tmp_path, db))
    assert error.value.message.startswith("stage basics: a training step needs about")
    assert "logits" in error.value.message and "\n" not in error.value.message
    assert "lower train.batch_size (now 2) or max_length (now 256)" in error.value.hint
    assert _steps(db) == [] and _runs(db) == [("failed",)]


@pytest.mark.slow
def test_a_step_that_fits_with_activation_checkpointing_trains_the_same(tiny, records, tmp_path, monkeypatch, capsys):
    plan = train_plan(str(tiny))
    plain_db = write_records(tmp_path / "plain" / "build.duckdb", records)
    assert train.run(context(plan, tmp_path / "plain", plain_db), max_steps=2) == 0
    assert "activation checkpointing" not in capsys.readouterr().err

    _free_memory_between(monkeypatch, lambda need: (need.total() + need.total(checkpointing=True)) // 2)
    checkpointing = []

    class Checkpointing(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            checkpointing.append(model.is_activation_checkpointing)

    monkeypatch.setattr(train, "extra_callbacks", lambda stage, index: [Checkpointing()])
    db = write_records(tmp_path / "tight" / "build.duckdb", records)
    assert train.run(context(plan, tmp_path / "tight", db), max_steps=2) == 0
    assert "activation checkpointing on" in capsys.readouterr().err
    assert checkpointing and all(checkpointing)  # said, and done: every step recomputes its layers
    assert [s[3] for s in _steps(db)] == pytest.approx([s[3] for s in _steps(plain_db)], abs=1e-5)


def test_the_orca_2_settings_on_the_135m_student_need_checkpointing_or_less():
    """The demo's student with max_length 4096, packing and batch_size 4 in bf16: the vocabulary
    head is bounded by loss.CHUNK (it was 9.0 GiB of logits), and on a 24 GB machine the step
    fits only with activation checkpointing (benchmarks/bench_memory.py measures both)."""
    from transformers import LlamaConfig

    from orcac.runtime.training import loss, memory

    config = LlamaConfig(
        hidden_size=576,
        num_hidden_layers=30,
        intermediate_size=1536,
        vocab_size=49152,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    need = memory.step_memory(model, tokens=4 * 4096, compute_bytes=2, on_gpu=False)
    assert need.logits == loss.CHUNK * 49152 * (2 + 12)
    assert memory.fit(need, 20 * memory.GB, "on this machine", stage="s", batch_size=4, max_length=4096)
    assert not memory.fit(
        need, int(need.total() / memory.HEADROOM) + 1, "on this machine", stage="s", batch_size=4, max_length=4096
    )
    with pytest.raises(OrcacError, match="more than the 3.0 GB free on this machine"):
        memory.fit(need, 3 * memory.GB, "on this machine", stage="s", batch_size=4, max_length=4096)


def test_free_memory_respects_a_container_limit(tmp_path):
    from orcac.runtime.training import memory

    (tmp_path / "memory.max").write_text("8589934592\n")
    (tmp_path / "memory.current").write_text("2147483648\n")
    assert memory.cgroup_room(tmp_path) == 6 * memory.GB
    (tmp_path / "memory.max").write_text("max\n")
    assert memory.cgroup_room(tmp_path) is None
    assert memory.cgroup_room(tmp_path / "nowhere") is None
    free, where = memory.free_memory(on_gpu=False)
    assert free > 0 and where


# ---- stage mixtures -------------------------------------------------------------------------


def test_a_stage_takes_its_tasks_portions_by_the_train_seed(records, tmp_path):
    from orcac.runtime.commands.train.mixture import mixture_line as _mixture_line
    from orcac.runtime.commands.train.mixture import stage_records as _stage_records
    from orcac.specs.plan import PortionPlan

    db = write_records(tmp_path / "build.duckdb", records)
    plan = train_plan("unused")
    stage = plan.train.stages[1].model_copy(
        update={"portions": {"add": PortionPlan(share=0.5), "mul": PortionPlan(at_most=3)}}
    )
    built = {t: sum(r["task"] == t for r in records) for t in ("add", "mul")}
    taken = _stage_records(db, plan, stage)
    counts = {t: sum(r["task"] == t for r in taken) for t in ("add", "mul")}
    assert counts == {"add": int(built["add"] * 0.5 + 0.5), "mul": 3}
    assert taken == _stage_records(db, plan, stage)  # the same records every run
    reseeded = plan.model_copy(update={"train": plan.train.model_copy(update={"seed": 1})})
    assert {r["id"] for r in _stage_records(db, reseeded, stage)} != {r["id"] for r in taken}
    line = _mixture_line(stage, taken)
    assert line == (
        f"stage reason: add {counts['add']} of {built['add']} (50%), mul 3 of {built['mul']} (at most 3); "
        f"{counts['add'] + 3} examples"
    )


def test_step_tokens_count_the_examples_and_not_the_padding(full_run, tiny, records):
    """train_steps.tokens: every example's tokens once per epoch, none of the one-pack rows' padding."""
    root, db, plan = full_run
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    chat_format.prepare_tokenizer(tokenizer)
    for index, stage in enumerate(plan.train.stages):
        stage_rows = [r for r in records if r["task"] in stage.tasks]
        encoded = encode_records(tokenizer, plan, stage_rows, plan.train.max_length)
        ((seen,),) = rows(db, "SELECT sum(tokens) FROM train_steps WHERE stage_index = ?", [index])
        assert seen == sum(len(e.input_ids) for e in encoded) * stage.epochs, stage.name
