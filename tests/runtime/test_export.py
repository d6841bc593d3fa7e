"""`orcac export`: JSONL, Parquet and HF-on-disk, each loadable by `datasets` and trainable by TRL."""

from __future__ import annotations

import json

import pytest

from orcac import cli
from orcac.specs.plan import TeacherPlan
from tests.support import retries
from tests.support.loopback import Loopback
from tests.support.plans import ERASE, arith_answer, make_plan, write_plan

SECRET = "sk-export-SECRET-42c9"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    mp = pytest.MonkeyPatch()
    retries.fast_backoff(mp)
    mp.setenv("LOOPBACK_KEY", SECRET)
    try:
        with Loopback(arith_answer) as server:
            teacher = TeacherPlan(name="t", model="openai/loopback", api_base=server.url, api_key_env="LOOPBACK_KEY")
            plan = make_plan(root, n=20, holdout=0.2, teacher=teacher)
            path = write_plan(root, plan)
            assert cli.main(["build", str(path), "--no-progress"]) == 0
    finally:
        mp.undo()
    return root, path, plan


def _export(path, output, fmt, *extra) -> int:
    return cli.main(["export", str(path), "--format", fmt, "-o", str(output), *extra])


def _load(fmt, output):
    import datasets

    if fmt == "hf":
        return datasets.load_from_disk(str(output))
    return datasets.load_dataset("json" if fmt == "jsonl" else "parquet", data_files=str(output), split="train")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_each_format_loads_with_datasets_in_chat_form(built, tmp_path, fmt):
    root, path, plan = built
    output = tmp_path / f"out.{fmt}"
    assert _export(path, output, fmt) == 0
    ds = _load(fmt, output)
    train = plan.tasks["arith"].counts.train
    assert len(ds) == train
    row = ds[0]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][0]["content"] == ERASE
    assert row["messages"][1]["content"].startswith("What is ")
    assert row["messages"][2]["content"].startswith("First take ")
    assert (row["task"], row["strategy"], row["split"]) == ("arith", "step", "train")
    assert sorted(ds["row_index"]) == sorted(set(ds["row_index"]))
    files = [output] if output.is_file() else list(output.rglob("*"))
    assert not any(SECRET.encode() in f.read_bytes() for f in files if f.is_file())


def test_jsonl_is_one_chat_object_per_line(built, tmp_path):
    root, path, plan = built
    output = tmp_path / "r.jsonl"
    assert _export(path, output, "jsonl") == 0
    lines = output.read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) >= {"messages", "task", "strategy", "record_id"}
    assert len(lines) == plan.tasks["arith"].counts.train


def test_holdout_export_has_no_teacher_answers(built, tmp_path):
    root, path, plan = built
    output = tmp_path / "h.jsonl"
    assert _export(path, output, "jsonl", "--split", "holdout") == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == plan.tasks["arith"].counts.holdout
    assert all([m["role"] for m in r["messages"]] == ["system", "user"] and r["gold"] for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "hf"])
def test_trl_sft_trainer_takes_the_export(built, tiny, tmp_path, fmt):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    root, path, plan = built
    output = tmp_path / f"sft.{fmt}"
    assert _export(path, output, fmt) == 0
    model_dir = tiny
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        train_dataset=_load(fmt, output),
        args=SFTConfig(
            output_dir=str(tmp_path / "out"),
            max_steps=1,
            per_device_train_batch_size=2,
            max_length=128,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            logging_steps=1,
            dataloader_num_workers=0,
        ),
    )
    result = trainer.train()
    assert result.global_step == 1 and result.training_loss > 0
