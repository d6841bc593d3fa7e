"""The erasure audit: strategy instructions never survive in a record's system or user field."""

from __future__ import annotations

import pyarrow as pa
import pytest

from orcac import cli
from orcac.errors import OrcacError
from orcac.runtime.answers.erasure import audit, distinctive_sentences, raise_on_leaks
from orcac.runtime.store.database import Store
from orcac.runtime.teachers import calls as teachers
from orcac.specs.plan import TeacherPlan
from tests.support.loopback import Loopback
from tests.support.plans import ERASE, STEP_BY_STEP, arith_answer, make_plan, write_plan


def _record(record_id: str, system: str, user: str, assistant: str = "Answer: 1") -> dict:
    return {
        "record_id": record_id,
        "task": "arith",
        "strategy": "step",
        "split": "train",
        "row_index": 0,
        "system": system,
        "user": user,
        "assistant": assistant,
        "teacher": "t",
        "gold": "1",
        "job_id": "j",
    }


def test_distinctive_sentences_skip_short_ones_and_the_erase_message():
    text = "Be brief. You carefully follow instructions. Think through the problem step by step before you answer."
    assert distinctive_sentences(text, [ERASE]) == ["think through the problem step by step before you answer."]


def test_audit_finds_a_planted_leak_and_ignores_echoes_in_the_answer(tmp_path):
    plan = make_plan(tmp_path, n=4)
    with Store.open(tmp_path / "db.duckdb") as store:
        store.write(
            {
                "records": pa.Table.from_pylist(
                    [
                        _record("clean", ERASE, "What is 1 plus 2?"),
                        _record(
                            "echo",
                            ERASE,
                            "What is 1 plus 2?",
                            "I think through the problem step by step before you answer.",
                        ),
                        _record(
                            "leak",
                            ERASE,
                            "THINK   through the problem\nstep by step before you answer.  What is 1 plus 2?",
                        ),
                        _record("sys", ERASE + " " + STEP_BY_STEP, "What is 1 plus 2?"),
                    ]
                )
            }
        )
        leaks = audit(plan, store)
    assert {(leak.field, leak.record_ids) for leak in leaks} >= {(("user"), ("leak",)), ("system", ("sys",))}
    assert not any("clean" in leak.record_ids or "echo" in leak.record_ids for leak in leaks)
    with pytest.raises(OrcacError, match=r"erasure audit failed: .*strategy step's sentence"):
        raise_on_leaks(leaks)


def test_a_build_whose_prompt_repeats_the_instruction_fails_loudly(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(teachers, "BACKOFF_BASE_S", 0.01)
    monkeypatch.setenv("LOOPBACK_KEY", "sk-erasure")
    with Loopback(arith_answer) as server:
        teacher = TeacherPlan(name="t", model="openai/loopback", api_base=server.url, api_key_env="LOOPBACK_KEY")
        plan = make_plan(
            tmp_path,
            n=6,
            holdout=0.0,
            teacher=teacher,
            prompt="Think through the problem step by step before you answer. {{ q }}",
        )
        path = write_plan(tmp_path, plan)
        assert cli.main(["build", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "erasure audit failed" in err and '"think through the problem step by step before you answer."' in err
    assert "in the user of 6 record(s)" in err


def test_a_demonstration_planted_in_a_record_fails_the_audit(tmp_path):
    from orcac.specs.plan import DemonstrationPlan

    plan = make_plan(tmp_path, n=4)
    demo = DemonstrationPlan(
        user="Rosa has 12 pencils and buys 8 more pencils today.",
        assistant="1. Rosa starts with 12 pencils.\nAnswer: 20",
    )
    step = plan.strategies["step"].model_copy(update={"demonstrations": (demo,)})
    plan = plan.model_copy(update={"strategies": {"step": step}})
    with Store.open(tmp_path / "db.duckdb") as store:
        store.write(
            {
                "records": pa.Table.from_pylist(
                    [
                        _record("clean", ERASE, "What is 1 plus 2?"),
                        _record("shot", ERASE, "Rosa has 12 pencils and buys 8 more pencils today. What is 1 plus 2?"),
                        _record("worked", ERASE, "1. Rosa starts with 12 pencils. What is 1 plus 2?"),
                    ]
                )
            }
        )
        leaks = audit(plan, store)
    assert {(leak.strategy, leak.field, leak.record_ids) for leak in leaks} == {
        ("step (demonstration 1)", "user", ("shot",)),
        ("step (demonstration 1)", "user", ("worked",)),
    }


def test_a_demonstration_that_repeats_the_prompt_template_is_no_leak(tmp_path):
    from orcac.specs.plan import DemonstrationPlan

    plan = make_plan(tmp_path, n=4, prompt="Is the sentiment of this review positive or negative? {{ q }}")
    demo = DemonstrationPlan(
        user="Is the sentiment of this review positive or negative? Broken after a day.", assistant="Answer: negative"
    )
    step = plan.strategies["step"].model_copy(update={"demonstrations": (demo,)})
    plan = plan.model_copy(update={"strategies": {"step": step}})
    with Store.open(tmp_path / "db.duckdb") as store:
        store.write(
            {
                "records": pa.Table.from_pylist(
                    [
                        _record("r", ERASE, "Is the sentiment of this review positive or negative? What is 1 plus 2?"),
                    ]
                )
            }
        )
        assert audit(plan, store) == []


def test_the_teacher_sees_instruction_then_demonstrations_then_the_prompt(tmp_path):
    from orcac.runtime.answers.erasure import erased, teacher_messages
    from orcac.specs.plan import DemonstrationPlan

    plan = make_plan(tmp_path, n=4)
    demos = (DemonstrationPlan(user="u1", assistant="a1"), DemonstrationPlan(user="u2", assistant="a2"))
    plan = plan.model_copy(
        update={"strategies": {"step": plan.strategies["step"].model_copy(update={"demonstrations": demos})}}
    )
    shown = teacher_messages(plan, "step", "What is 1 plus 2?")
    assert [(m["role"], m["content"]) for m in shown] == [
        ("system", STEP_BY_STEP),
        ("user", "u1"),
        ("assistant", "a1"),
        ("user", "u2"),
        ("assistant", "a2"),
        ("user", "What is 1 plus 2?"),
    ]
    strategy, system, user, answer, *_ = erased(plan, "arith", "step", "What is 1 plus 2?", "Answer: 3", "3")
    assert (system, user, answer) == (ERASE, "What is 1 plus 2?", "Answer: 3")  # no instruction, no demonstration


def test_one_normalisation_on_both_sides_of_the_audit():
    """Python's `normalise` (the sentences) and the SQL one (the records) agree on every code point."""
    import duckdb

    from orcac.runtime.answers import erasure
    from orcac.runtime.store.builds import sql_normalised

    chars = [chr(c) for c in range(1, 0x30000) if not 0xD800 <= c < 0xE000]
    texts = [f"a{c}B{c}{c}c" for c in chars]
    sql = sql_normalised("x")
    con = duckdb.connect()
    got = con.execute(f"SELECT list_transform($2::VARCHAR[], lambda x: {sql})", [erasure.WHITESPACE, texts]).fetchone()[
        0
    ]
    assert [t for t, g in zip(texts, got) if erasure.normalise(t) != g.strip(" ")] == []


def test_an_instruction_with_sharp_s_is_found(tmp_path):
    plan = make_plan(tmp_path, n=4, strategy_text="Rechne die Maße und Gewichte Schritt für Schritt genau nach.")
    with Store.open(tmp_path / "db.duckdb") as store:
        store.write(
            {
                "records": pa.Table.from_pylist(
                    [
                        _record(
                            "copied", ERASE, "Rechne die Maße und Gewichte Schritt für Schritt genau nach. 1 plus 2?"
                        ),
                        _record(
                            "shouted", ERASE, "RECHNE DIE MAẞE UND GEWICHTE SCHRITT FÜR SCHRITT GENAU NACH. 1 plus 2?"
                        ),
                        _record("clean", ERASE, "Wie groß ist 1 plus 2?"),
                    ]
                )
            }
        )
        leaks = audit(plan, store)
    assert [(leak.sentence, leak.record_ids) for leak in leaks] == [
        ("rechne die maße und gewichte schritt für schritt genau nach.", ("copied", "shouted"))
    ]
