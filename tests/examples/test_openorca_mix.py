"""examples/openorca_mix: OpenOrca-shaped rows with their own answers, mixed with a teacher's.

Its data is what the issue asks for (sixteen Orca 1 style system messages, checkable golds, some
wrong responses); its build makes no call for those rows and writes records that carry only the
erase message: none of the sixteen messages is anywhere in the DuckDB file.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections import Counter
from pathlib import Path

from orcac import cli
from orcac.compiler import compile_spec
from orcac.specs.plan import TeacherPlan
from orcac.specs.plan_file import read_plan, write_plan
from tests.support.db import rows as db_rows
from tests.support.loopback import Loopback
from tests.support.stored import assert_nowhere

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openorca_mix"


def _module():
    spec = importlib.util.spec_from_file_location("make_data_openorca_mix", EXAMPLE / "make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _openorca() -> list[dict]:
    return [json.loads(line) for line in (EXAMPLE / "data" / "openorca.jsonl").read_text(encoding="utf-8").splitlines()]


MESSAGES = [m for m, _ in _module().SYSTEM_MESSAGES]


def _gold(question: str) -> str:
    """The answer worked out from the question alone."""
    mod = _module()
    if m := re.fullmatch(r"What is (\d+) \+ (\d+)\?", question):
        return str(int(m[1]) + int(m[2]))
    if m := re.search(r"has (\d+) \w+ and (gets|gives away) (\d+)", question):
        return str(int(m[1]) + int(m[3]) if m[2] == "gets" else int(m[1]) - int(m[3]))
    if m := re.fullmatch(r"What is the capital of (.+)\?", question):
        return dict(mod.CAPITALS)[m[1]]
    if m := re.fullmatch(r"Is (\d+) a prime number\? Answer yes or no\.", question):
        n = int(m[1])
        return "yes" if all(n % d for d in range(2, n)) else "no"
    if question.startswith("Review:"):
        return "positive" if any(p in question for p in mod.POSITIVE) else "negative"
    if m := re.match(r"Which of these animals is a (\w+)\?", question):
        options = re.findall(r"^([A-D])\) (.+)$", question, re.M)
        return next(letter for letter, animal in options if animal in mod.ANIMALS[m[1]])
    if m := re.fullmatch(r"How many (\w+) are in (\d+) (\w+)\?", question):
        factor = {"minutes": 60, "centimetres": 100, "grams": 1000, "seconds": 60}[m[1]]
        return str(int(m[2]) * factor)
    if m := re.fullmatch(r"Which is larger, ([\d.]+) or ([\d.]+)\?", question):
        return max(m[1], m[2], key=float)
    raise AssertionError(f"no family for {question!r}")


def test_the_rows_have_openorcas_shape_sixteen_messages_and_right_golds():
    rows = _openorca()
    assert 300 <= len(rows) <= 400
    assert all(list(r) == ["id", "system_prompt", "question", "response", "gold"] for r in rows)
    assert len({r["id"] for r in rows}) == len({r["question"] for r in rows}) == len(rows)
    assert Counter(r["system_prompt"] for r in rows) == {m: 20 for m in MESSAGES} and len(MESSAGES) == 16
    assert all(r["gold"] == _gold(r["question"]) for r in rows)
    final = [r["response"].rsplit("\n", 1)[-1] for r in rows if r["response"]]
    assert all(line.startswith("Answer: ") for line in final)
    wrong = [r for r in rows if r["response"] and not r["response"].endswith(f"Answer: {r['gold']}")]
    assert len(wrong) == 38  # 12%, wrong on purpose: a SlimOrca-style filter has something to reject
    assert sum("My instructions say" in r["response"] for r in rows) == 4
    assert sum(r["response"] == "" for r in rows) == 2


def test_the_plan_counts_answers_from_the_source_apart_from_teacher_calls():
    plan = read_plan(EXAMPLE / "mix.plan.yaml")
    task = plan.tasks["openorca"]
    assert (task.teacher, task.strategy, task.system) == (None, None, None)
    assert (task.answer, task.instruction) == ("{{ response }}", "{{ system_prompt }}")
    assert plan.estimate.tasks["openorca"].calls == 0
    assert plan.estimate.tasks["openorca"].from_source == task.counts.train == 288
    assert plan.estimate.calls == plan.estimate.tasks["reviews"].calls == plan.tasks["reviews"].counts.train
    assert plan.estimate.from_source == 288
    assert plan.train.stages[0].tasks == ("openorca", "reviews")
    text = (EXAMPLE / "mix.plan.yaml").read_text()
    assert not any(m in text for m in MESSAGES)


def _copy(tmp_path: Path) -> Path:
    for name in ("mix.orca", "data"):
        source = EXAMPLE / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    return tmp_path / "mix.orca"


def _label(body: dict) -> str:
    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    positive = any(p in user for p in _module().POSITIVE)
    return f"Answer: {'positive' if positive else 'negative'}"


def test_the_example_builds_its_answers_with_no_call_and_stores_no_system_message(tmp_path, capsys, monkeypatch):
    spec = _copy(tmp_path)
    plan = compile_spec(spec, tmp_path / "mix.plan.yaml")
    assert plan == read_plan(EXAMPLE / "mix.plan.yaml").model_copy(update={"spec": plan.spec})

    # The answers alone, with no teacher in the plan at all: nothing could be called.
    alone = plan.model_copy(
        update={"teachers": {}, "strategies": {}, "train": None, "tasks": {"openorca": plan.tasks["openorca"]}}
    )
    write_plan(alone, tmp_path / "alone.plan.yaml")
    db = tmp_path / "alone.duckdb"
    assert cli.main(["build", str(tmp_path / "alone.plan.yaml"), "--dry-run", "--db", str(db)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("openorca")).split()
    assert line[1:5] == ["288", "0", "0", "288"]  # examples, cached, calls, from source
    assert cli.main(["build", str(tmp_path / "alone.plan.yaml"), "--no-progress", "--db", str(db)]) == 0
    assert db_rows(db, "SELECT count(*) FROM jobs") == [(0,)] and db_rows(db, "SELECT calls FROM runs") == [(0,)]
    train = [
        r
        for r in _openorca()
        if r["question"] in {q for (q,) in db_rows(db, "SELECT prompt FROM examples WHERE split = 'train'")}
    ]
    expected = Counter(
        "empty"
        if not r["response"]
        else "instruction"
        if "My instructions say" in r["response"]
        else "accepted"
        if r["response"].endswith(f"Answer: {r['gold']}")
        else "exact"
        for r in train
    )
    assert dict(db_rows(db, "SELECT reason, count(*) FROM checks GROUP BY reason")) == expected
    assert db_rows(db, "SELECT count(*) FROM records") == [(expected["accepted"],)]
    assert db_rows(db, "SELECT DISTINCT system FROM records") == [(plan.erase["cautious"].system,)]
    assert_nowhere(db, MESSAGES, plan.erase["cautious"].system)

    # The whole example, its teacher a loopback server: only the teacher's task makes calls.
    monkeypatch.setenv("LOOPBACK_KEY", "sk-openorca-mix")
    with Loopback(_label) as server:
        teacher = TeacherPlan(name="smol", model="openai/loopback", api_base=server.url, api_key_env="LOOPBACK_KEY")
        write_plan(plan.model_copy(update={"teachers": {"smol": teacher}}), tmp_path / "mixed.plan.yaml")
        db = tmp_path / "mixed.duckdb"
        assert cli.main(["build", str(tmp_path / "mixed.plan.yaml"), "--no-progress", "--db", str(db)]) == 0
        requests = server.stats()["requests"]
    assert requests == plan.tasks["reviews"].counts.train
    assert db_rows(db, "SELECT DISTINCT task FROM jobs") == [("reviews",)]
    assert dict(db_rows(db, "SELECT task, count(*) FROM records GROUP BY task")) == {
        "openorca": expected["accepted"],
        "reviews": plan.tasks["reviews"].counts.train,
    }
    assert_nowhere(db, MESSAGES, plan.erase["cautious"].system)
