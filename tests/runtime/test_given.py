"""Answers the source already has (`answer = "{{ response }}"`): no call, the checks, erased records
that carry neither the row's own system message nor a second copy of anything."""

from __future__ import annotations

import json
import re

import pytest

from orcac import cli
from orcac.errors import OrcacError
from orcac.runtime.answers import given
from orcac.runtime.answers.erasure import raise_on_leaks
from orcac.specs.plan_file import read_plan
from tests.support.db import rows as db_rows
from tests.support.loopback import Loopback
from tests.support.stored import assert_nowhere

SYSTEMS = [
    "You are an AI assistant. User will you give you a task. Your goal is to complete the task as faithfully as you can.",
    "You are a helpful assistant, who always provide explanation. Think like you are answering to a five year old.",
    "You are an AI assistant that helps people find information. Provide a detailed answer so user don't need to search outside.",
]
ERASE = "You are a cautious assistant. You carefully follow instructions."


def _rows() -> list[dict]:
    rows = []
    for i in range(8):
        rows.append(
            {
                "system_prompt": SYSTEMS[i % 3],
                "question": f"What is {i} plus {i + 1}?",
                "response": f"{i} and {i + 1} make {2 * i + 1}.\nAnswer: {2 * i + 1}",
                "gold": str(2 * i + 1),
            }
        )
    rows[2]["response"] = "Answer: 6"  # wrong: rejected by exact(gold)
    rows[4]["response"] = f'As I was told: "{SYSTEMS[1].split(". ")[1]}" Answer: 9'  # repeats its instruction
    rows[5]["response"] = ""
    return rows


SPEC = """orca 1

erase cautious {{ system = "{erase}" }}
{teacher}
task openorca {{
  from        = jsonl("data.jsonl")
  instruction = "{{{{ system_prompt }}}}"
  prompt      = "{{{{ question }}}}"
  answer      = "{{{{ response }}}}"
  gold        = "{{{{ gold }}}}"
  accept      = exact(gold)
}}
{more}"""


def _spec(tmp_path, rows=None, teacher: str = "", more: str = ""):
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (rows or _rows())))
    path = tmp_path / "spec.orca"
    path.write_text(SPEC.format(erase=ERASE, teacher=teacher, more=more))
    return path


def _build(path, *extra) -> int:
    return cli.main(["build", str(path), "--no-progress", *extra])


def _dry_run_line(capsys, path, task="openorca") -> list[str]:
    assert cli.main(["build", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "from source" in out.splitlines()[0]
    return next(line for line in out.splitlines() if line.startswith(task)).split()


def test_answers_from_the_source_become_erased_records_with_no_call(tmp_path, capsys):
    path = _spec(tmp_path)
    db = tmp_path / ".orca" / "spec.duckdb"
    assert _dry_run_line(capsys, path)[1:5] == ["8", "0", "0", "8"]  # examples, cached, calls, from source

    assert _build(path) == 0
    summary = capsys.readouterr().out
    assert "(from source)" in summary and "instruction 1" in summary and "exact 1" in summary and "empty 1" in summary
    assert db_rows(db, "SELECT count(*) FROM jobs") == [(0,)]
    assert db_rows(db, "SELECT count(*) FROM responses") == [(0,)]
    assert db_rows(db, "SELECT calls, status FROM runs") == [(0, "finished")]
    checks = db_rows(db, "SELECT row_index, accepted, reason, job_id, strategy FROM checks ORDER BY row_index")
    assert [(r, ok, why) for r, ok, why, _, _ in checks] == [
        (i, i not in (2, 4, 5), {2: "exact", 4: given.INSTRUCTION, 5: "empty"}.get(i, "accepted")) for i in range(8)
    ]
    assert all(job is None and strategy is None for *_, job, strategy in checks)
    rows = _rows()
    records = db_rows(
        db,
        'SELECT row_index, system, "user", assistant, strategy, teacher, job_id, gold FROM records ORDER BY row_index',
    )
    assert [r[0] for r in records] == [0, 1, 3, 6, 7]
    for row_index, system, user, assistant, strategy, teacher, job_id, gold in records:
        assert (system, user, assistant, gold) == (
            ERASE,
            rows[row_index]["question"],
            rows[row_index]["response"],
            rows[row_index]["gold"],
        )
        assert strategy is teacher is job_id is None
    assert_nowhere(db, SYSTEMS, ERASE)

    # A re-run checks again and writes nothing: the same rows, under the same ids.
    before = (
        db_rows(db, "SELECT * FROM records ORDER BY record_id"),
        db_rows(db, "SELECT * FROM checks ORDER BY item_id"),
    )
    assert _build(path) == 0
    assert re.search(
        r"openorca\s*│\s*\(from source\)\s*│\s*8\s*│\s*8\s*│\s*0\s*│\s*8\s*│", capsys.readouterr().out
    )  # 8 rows, 8 answers, 8 cached
    assert (
        db_rows(db, "SELECT * FROM records ORDER BY record_id"),
        db_rows(db, "SELECT * FROM checks ORDER BY item_id"),
    ) == before
    assert _dry_run_line(capsys, path)[1:5] == ["8", "8", "0", "8"]


def test_a_limited_build_resumes_and_a_changed_or_removed_row_changes_its_record_only(tmp_path, capsys):
    rows = _rows()
    path = _spec(tmp_path, rows)
    db = tmp_path / ".orca" / "spec.duckdb"
    assert _build(path, "--limit", "3") == 0
    assert db_rows(db, "SELECT count(*) FROM checks") == [(3,)]
    assert _build(path) == 0
    assert db_rows(db, "SELECT count(*), count(DISTINCT row_index) FROM records") == [(5, 5)]
    ids = dict(db_rows(db, "SELECT row_index, record_id FROM records"))

    rows[0]["response"] = "Zero and one make one.\nAnswer: 1"  # another answer: another record
    rows[7]["question"] = "What is seven plus eight?"  # another prompt: another record
    rows[3]["gold"] = "8"  # a changed gold: the same answer, now rejected
    path = _spec(tmp_path, rows)
    assert _build(path) == 0
    after = dict(db_rows(db, "SELECT row_index, record_id FROM records"))
    assert sorted(after) == [0, 1, 6, 7]
    assert after[1] == ids[1] and after[6] == ids[6]
    assert after[0] != ids[0] and after[7] != ids[7]
    assert db_rows(db, "SELECT assistant FROM records WHERE row_index = 0") == [(rows[0]["response"],)]
    assert db_rows(db, "SELECT count(*), count(DISTINCT row_index) FROM checks") == [(8, 8)]  # stale checks gone too
    assert db_rows(db, "SELECT reason FROM checks WHERE row_index = 3") == [("exact",)]


def test_a_row_whose_answer_cannot_render_is_reported_and_the_others_are_built(tmp_path, capsys):
    rows = _rows()
    del rows[1]["response"]
    path = _spec(tmp_path, rows)
    assert _build(path) == 0
    assert "task openorca: row 2 skipped: UndefinedError: 'response' is undefined" in capsys.readouterr().err
    db = tmp_path / ".orca" / "spec.duckdb"
    assert [r for (r,) in db_rows(db, "SELECT row_index FROM checks ORDER BY row_index")] == [0, 2, 3, 4, 5, 6, 7]


def test_the_audit_finds_a_rows_instruction_in_a_stored_record(tmp_path):
    import pyarrow as pa

    from orcac.runtime.answers.examples import materialize
    from orcac.runtime.store.database import Store

    path = _spec(tmp_path)
    plan_file = tmp_path / "spec.plan.yaml"
    assert cli.main(["plan", str(path)]) == 0
    plan = read_plan(plan_file)
    items = given.given_items(plan.tasks["openorca"], materialize(plan, tmp_path, "openorca"))
    leaked = next(g for g in items if g.instruction == SYSTEMS[1])
    clean, other = [g for g in items if g.instruction != SYSTEMS[1]][:2]
    planted = [
        (clean, clean.answer),
        (leaked, f"{leaked.answer}\n{SYSTEMS[1]}"),  # its own instruction, in the assistant field
        (other, f"{other.answer}\n{SYSTEMS[1]}"),  # another row's instruction: not this row's leak
    ]
    with Store.open(tmp_path / "db.duckdb") as store:
        store.write(
            {
                "records": pa.Table.from_pylist(
                    [
                        {
                            "record_id": g.record_id,
                            "task": g.task,
                            "strategy": None,
                            "split": "train",
                            "row_index": g.row_index,
                            "system": ERASE,
                            "user": g.prompt,
                            "assistant": text,
                            "teacher": None,
                            "gold": g.gold,
                            "job_id": None,
                        }
                        for g, text in planted
                    ]
                )
            }
        )
        leaks = given.audit(plan, store, items)
    assert leaks and {(leak.field, leak.record_ids) for leak in leaks} == {("assistant", (leaked.record_id,))}
    with pytest.raises(OrcacError, match=r"erasure audit failed: .*the instruction of a row of task openorca") as error:
        raise_on_leaks(leaks)
    assert "rows' own system messages" in error.value.hint


TEACHER = """
teacher t {{
  model       = "openai/loopback"
  api_base    = "{url}"
  api_key     = env("LOOPBACK_KEY")
  max_retries = 1
}}
strategy s {{ system = "Add the numbers and reply with one line: Answer: <number>." }}
student st {{ model = "local/smollm2-135m-instruct" }}
"""

TAUGHT = """
task taught {
  from     = jsonl("taught.jsonl")
  prompt   = "{{ q }}"
  gold     = "{{ a }}"
  teacher  = t
  strategy = s
  accept   = exact(gold)
}

train {
  student = st
  stage mixed { tasks = [openorca, taught] }
}
"""


def _answer(body: dict) -> str:
    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    x, y = map(int, re.search(r"(\d+) and (\d+)", user).groups())
    return f"Answer: {x + y}"


def test_a_mixed_stage_trains_on_both_and_only_the_teacher_is_called(tmp_path, capsys, monkeypatch, fast_backoff):
    from orcac.runtime.commands.train.mixture import stage_records as _stage_records

    monkeypatch.setenv("LOOPBACK_KEY", "sk-given")
    (tmp_path / "taught.jsonl").write_text(
        "".join(json.dumps({"q": f"Add {i} and {i + 2}.", "a": str(2 * i + 2)}) + "\n" for i in range(6))
    )
    with Loopback(_answer) as server:
        path = _spec(tmp_path, teacher=TEACHER.format(url=server.url), more=TAUGHT)
        line = _dry_run_line(capsys, path)
        assert line[1:5] == ["8", "0", "0", "8"]
        assert _dry_run_line(capsys, path, "taught")[1:5] == ["6", "0", "6", "0"]
        assert _build(path) == 0
        stats = server.stats()
    assert stats["requests"] == 6
    assert not set(stats["hits"]) & {r["question"] for r in _rows()}
    db = tmp_path / ".orca" / "spec.duckdb"
    assert db_rows(db, "SELECT DISTINCT task FROM jobs") == [("taught",)]

    plan = read_plan(tmp_path / "spec.plan.yaml")
    assert (plan.estimate.calls, plan.estimate.from_source) == (6, 8)
    assert (plan.tasks["openorca"].teacher, plan.tasks["openorca"].strategy) == (None, None)
    stage = plan.train.stages[0]
    records = _stage_records(db, plan, stage)
    assert {r["task"] for r in records} == {"openorca", "taught"}
    assert sum(r["task"] == "openorca" for r in records) == 5 and sum(r["task"] == "taught" for r in records) == 6

    out = tmp_path / "records.jsonl"
    assert cli.main(["export", str(path), "-o", str(out)]) == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [r for r in exported if r["task"] == "openorca"]
    assert len(mine) == 5 and all(r["strategy"] is None and r["teacher"] is None for r in mine)
    assert all(r["messages"][0] == {"role": "system", "content": ERASE} for r in mine)

    assert cli.main(["report", str(path), "-o", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "answers from the source" in page
    assert json.dumps(_rows()[0]["response"])[1:-1] in page  # an answer from the source is among the cards
    assert not any(s in page for s in SYSTEMS)


def test_the_prompted_arm_leaves_out_answers_from_sources(tmp_path):
    from orcac.runtime.commands.evaluate.command import arm_tasks, gaps_closed

    path = _spec(
        tmp_path,
        teacher='teacher t { model = "local/m" }\nstrategy s { system = "x" }',
        more='task taught {\n  from = jsonl("data.jsonl")\n  prompt = "{{ question }}"\n  strategy = s\n}\n',
    )
    assert cli.main(["plan", str(path)]) == 0
    plan = read_plan(tmp_path / "spec.plan.yaml")
    held = {"openorca": ["row"], "taught": ["row"]}
    assert arm_tasks("prompted", plan, held) == {"taught": ["row"]}
    assert arm_tasks("base", plan, held) == held

    def row(task, model, accuracy):
        return {
            "task": task,
            "model": model,
            "examples": 10,
            "accepted": int(10 * accuracy),
            "checked": 10,
            "adherent": 0,
            "accuracy": accuracy,
            "adherence": None,
        }

    summary = [
        row("openorca", "base", 0.0),
        row("openorca", "trained", 1.0),
        *(row("taught", m, a) for m, a in (("base", 0.2), ("prompted", 0.6), ("trained", 0.4))),
    ]
    overall = {g["metric"]: g for g in gaps_closed(summary) if g["task"] == "all"}
    assert overall["accuracy"]["gap_closed"] == pytest.approx(0.5)  # taught alone: the tasks every arm answered
    assert not any(g["task"] == "openorca" for g in gaps_closed(summary))
