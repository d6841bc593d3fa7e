"""The trained student leaves ready to use: its chat template renders the erase message by
default, final/ carries a Hub model card, and final/ loads with plain transformers."""

from __future__ import annotations

import re

import pytest
from transformers import AutoTokenizer

from orcac.runtime.commands.evaluate import command as evaluate
from orcac.runtime.commands.train import command as train
from orcac.runtime.models import chat_format
from orcac.runtime.results import model_card
from tests.support.plans import ERASE, context, train_plan
from tests.support.train_data import orca_rows, write_records

pytestmark = pytest.mark.xdist_group("train")

USER = [{"role": "user", "content": "What is 2 + 3?"}]


def _ids(tokenizer, messages):
    return tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)[
        "input_ids"
    ]


def _two_erase_messages(plan):
    """`plan` with task mul trained under a second erase message."""
    other = plan.erase["cautious"].model_copy(update={"name": "terse", "system": "You answer tersely."})
    tasks = {**plan.tasks, "mul": plan.tasks["mul"].model_copy(update={"erase": "terse"})}
    return plan.model_copy(update={"erase": {**plan.erase, "terse": other}, "tasks": tasks})


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """A one-stage run of two steps: final/ as `orcac train` leaves it, the stage's weights kept."""
    root = tmp_path_factory.mktemp("ready")
    db = write_records(
        root / "build.duckdb", orca_rows("add", 8) + orca_rows("mul", 8), holdout=orca_rows("add", 2, seed=9)
    )
    plan = train_plan(str(tiny), stages=(("only", ("add", "mul"), 1.0),))
    plan = plan.model_copy(update={"train": plan.train.model_copy(update={"keep_stages": True})})
    assert train.run(context(plan, root, db), max_steps=2) == 0
    return root, db, plan


def test_the_erase_message_is_the_default_system_turn_where_one_covers_every_task(tiny, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    chat_format.prepare_tokenizer(tokenizer)  # `chat_template = auto`: SmolLM2's own, with its own default
    before = tokenizer.apply_chat_template(USER, tokenize=False)
    assert "SmolLM" in before and ERASE not in before
    assert chat_format.set_default_system(tokenizer, train_plan(str(tiny))) == ERASE
    tokenizer.save_pretrained(tmp_path)
    saved = AutoTokenizer.from_pretrained(tmp_path)
    explicit = [{"role": "system", "content": ERASE}, *USER]
    assert _ids(saved, USER) == _ids(saved, explicit)
    assert "SmolLM" not in saved.apply_chat_template(USER, tokenize=False)
    other = [{"role": "system", "content": "Be brief."}, *USER]  # a caller's own system turn wins
    assert "Be brief." in saved.apply_chat_template(other, tokenize=False)
    assert ERASE not in saved.apply_chat_template(other, tokenize=False)
    assert ERASE in (tmp_path / "chat_template.jinja").read_text()  # what vLLM and llama.cpp read


def test_a_message_with_quotes_newlines_and_jinja_renders_verbatim_and_is_replaced_not_stacked(tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    chat_format.prepare_tokenizer(tokenizer, "chatml")
    odd = 'Say "yes".\nThen {{ think }} {% raw %} \\ once — déjà vu.'
    tokenizer.chat_template = chat_format.with_default_system(tokenizer.chat_template, "first")
    tokenizer.chat_template = chat_format.with_default_system(tokenizer.chat_template, odd)
    rendered = tokenizer.apply_chat_template(USER, tokenize=False)
    assert rendered.startswith(f"<|im_start|>system\n{odd}<|im_end|>") and "first" not in rendered


def test_tasks_under_different_erase_messages_get_no_default(tiny):
    plan = _two_erase_messages(train_plan(str(tiny)))
    assert chat_format.erase_messages(plan) == {ERASE: ["add"], "You answer tersely.": ["mul"]}
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    chat_format.prepare_tokenizer(tokenizer, "chatml")
    template = tokenizer.chat_template
    assert chat_format.set_default_system(tokenizer, plan) is None
    assert tokenizer.chat_template == template


@pytest.mark.slow
def test_the_trained_student_in_final_and_each_stage_renders_the_erase_message_by_default(trained):
    from transformers import pipeline

    root, _, plan = trained
    out = root / plan.train.output
    for folder in (out / train.FINAL_DIR, out / "stages/01-only/final"):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert _ids(tokenizer, USER) == _ids(tokenizer, [{"role": "system", "content": ERASE}, *USER]), folder
        assert ERASE in (folder / "chat_template.jinja").read_text()
    generate = pipeline("text-generation", model=str(out / train.FINAL_DIR))
    alone = generate(USER, max_new_tokens=4, do_sample=False)[0]["generated_text"]
    explicit = generate([{"role": "system", "content": ERASE}, *USER], max_new_tokens=4, do_sample=False)[0][
        "generated_text"
    ]
    assert alone[-1] == explicit[-1]  # the same answer: the same tokens went in


# ---- the model card ----------------------------------------------------------------------


def test_the_base_model_and_its_license_are_carried_where_known(tmp_path):
    assert model_card.base_of("local/smollm2-135m-instruct", tmp_path) == (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "apache-2.0",
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "README.md").write_text("---\nlicense: mit\n---\n\n# mine\n")
    assert model_card.base_of("mine", tmp_path) == (None, "mit")  # a folder is no Hub id
    (tmp_path / "bare").mkdir()
    assert model_card.base_of("bare", tmp_path) == (None, None)
    assert model_card.base_of("nobody/not-in-the-cache", tmp_path) == ("nobody/not-in-the-cache", None)


@pytest.mark.slow
def test_final_has_a_hub_model_card_that_eval_refreshes(trained):
    from huggingface_hub import ModelCard

    root, db, plan = trained
    final = root / plan.train.output / train.FINAL_DIR
    card = ModelCard.load(final / "README.md")
    assert card.data.library_name == "transformers" and "orcac" in card.data.tags
    assert card.data.pipeline_tag == "text-generation"
    text = card.text
    sha = (final / "plan.sha256").read_text().split()[0]
    assert f"spec: `{plan.spec}`; plan sha256: `{sha}`" in text
    assert f"```text\n{ERASE}\n```" in text  # quoted verbatim
    assert "| `add` | jsonl " in text and "| 8 | steps |" in text  # source, records, strategy
    assert "| only | add, mul | 1 | 16 |" in text  # stage, tasks, epochs, examples
    assert "full fine-tuning" in text and "precision: fp32" in text
    assert "Not evaluated yet" in text

    evaluate.run(context(plan, root, db), limit=2, models=["base", "trained"])
    text = ModelCard.load(final / "README.md").text
    assert "## Evaluation" in text and "Not evaluated yet" not in text
    assert "| task | n | accuracy base | accuracy trained | adherence base | adherence trained |" in text
    evaluation = text.split("## Evaluation")[1]
    assert "| `add` | 2 |" in evaluation and "| p (accuracy, trained vs base) |" in evaluation
    add = next(line for line in evaluation.splitlines() if line.startswith("| `add` |"))
    assert re.search(r"\| \d+% \[\d+-\d+\] \|", add), add  # each rate with its 95% interval


def test_a_card_lists_each_erase_message_with_its_tasks_and_no_default(tiny, tmp_path):
    from huggingface_hub import ModelCard

    plan = _two_erase_messages(train_plan(str(tiny)))
    final = tmp_path / plan.train.output / train.FINAL_DIR
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    model_card.write(context(plan, tmp_path, tmp_path / "none.duckdb"), final)
    text = ModelCard.load(final / "README.md").text
    assert "adds none by default" in text
    assert f"For `add`:\n\n```text\n{ERASE}\n```" in text
    assert "For `mul`:\n\n```text\nYou answer tersely.\n```" in text


@pytest.mark.slow
def test_a_lora_student_is_saved_merged_with_no_adapter_and_its_card_says_so(tiny, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    db = write_records(tmp_path / "build.duckdb", orca_rows("add", 4))
    plan = train_plan(str(tiny), lora=True, stages=(("only", ("add",), 1.0),))
    train.run(context(plan, tmp_path, db), max_steps=1)
    final = tmp_path / plan.train.output / train.FINAL_DIR
    assert not list(final.glob("adapter_*"))  # tools that cannot load adapters get the trained weights
    merged = AutoModelForCausalLM.from_pretrained(final)  # plain transformers, no peft
    assert not any("lora" in name for name in merged.state_dict())
    assert (
        "LoRA (r=4, alpha=8, modules q_proj, k_proj, v_proj, o_proj), merged into the weights"
        in ModelCard.load(final / "README.md").text
    )


def test_named_templates_each_get_the_default(tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    chat_format.prepare_tokenizer(tokenizer, "chatml")
    tokenizer.chat_template = {"default": tokenizer.chat_template, "tool_use": tokenizer.chat_template}
    chat_format.set_default_system(tokenizer, train_plan(str(tiny)))
    assert all(ERASE in t for t in tokenizer.chat_template.values())
    assert ERASE in tokenizer.apply_chat_template(USER, tokenize=False)
