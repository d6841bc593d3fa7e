"""Rows that are not rows never reach a teacher; a teacher without a key gets a hint in the
language's own words (issue 9, items 7, 8 and 16). Real builds against the loopback server."""

from __future__ import annotations

import json
import textwrap

from orcac import cli
from orcac.runtime.teachers import calls as teachers
from tests.support.loopback import Loopback, key_of
from tests.support.plans import make_plan, write_plan


def _spec(tmp_path, url: str, source: str, prompt: str) -> str:
    (tmp_path / "s.orca").write_text(
        textwrap.dedent(
            f"""\
            orca 1
            teacher t {{ model = "openai/loopback" api_base = "{url}" api_key = env("LOOPBACK_KEY") max_retries = 0 }}
            strategy s {{ system = "Be brief." }}
            erase e {{ system = "You are helpful." }}
            task a {{ from = {source} prompt = "{prompt}" strategy = s }}
            """
        )
    )
    return str(tmp_path / "s.orca")


def test_ragged_csv_rows_malformed_jsonl_and_failing_templates_are_never_sent(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOOPBACK_KEY", "k")
    (tmp_path / "d.csv").write_text("x,y\n1,2\n6\n3,4,5\n7,0\n")
    (tmp_path / "d.jsonl").write_text('{"x": 1, "y": 2}\n{"x": oops}\n{"x": 9, "y": 0}\n')
    asked: list[str] = []

    def answer(body: dict) -> str:
        asked.append(key_of(body))
        return "fine"

    with Loopback(answer) as server:
        spec = _spec(tmp_path, server.url, 'csv("d.csv")', "What is {{ x }} + {{ y }}?")
        assert cli.main(["build", spec, "--no-progress"]) == 0
        err = capsys.readouterr().err
        assert sorted(asked) == ["What is 1 + 2?", "What is 7 + 0?"]
        assert "warning: task a: row 2 skipped: d.csv:3: 1 field, the header has 2" in err
        assert "warning: task a: row 3 skipped: d.csv:4: 3 fields, the header has 2" in err

        asked.clear()
        spec = _spec(tmp_path, server.url, 'jsonl("d.jsonl")', "{{ x // y }}")
        assert cli.main(["build", spec, "--no-progress"]) == 0
        err = capsys.readouterr().err
        assert asked == ["0"]
        assert "warning: task a: row 2 skipped: d.jsonl:2: not valid JSON (Expecting value)" in err
        assert "warning: task a: row 3 skipped: ZeroDivisionError: integer division or modulo by zero" in err
        assert "None" not in "".join(asked)


def test_a_teacher_without_a_key_is_told_the_languages_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(teachers, "BACKOFF_BASE_S", 0.01)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with Loopback(faults="401") as server:
        plan = make_plan(tmp_path, n=3, holdout=0.0)
        plan = plan.model_copy(
            update={"teachers": {"t": plan.teachers["t"].model_copy(update={"api_base": server.url, "max_retries": 0})}}
        )
        code = cli.main(["build", str(write_plan(tmp_path, plan)), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert 'give teacher t its key: api_key = env("NAME")' in err
    assert "api_key_env" not in err
    json.dumps(err)  # one printable report
