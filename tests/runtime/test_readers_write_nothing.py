"""Commands that only read write no plan (issue 18, item 5): after the spec is edited,
`build --dry-run`, `eval --dry-run`, `export` and `report` compile it in memory, leave
`x.plan.yaml` byte for byte and mtime for mtime as it was, and say in one line that it is
stale and what rewrites it. A real build against the loopback teacher first."""

from __future__ import annotations

import textwrap

import pytest

from orcac import cli
from tests.support.loopback import Loopback
from tests.support.plans import arith_answer, make_plan

pytestmark = pytest.mark.xdist_group("loopback")


def _write_spec(root, url: str, strategy: str) -> None:
    make_plan(root, n=10)  # writes data.jsonl: ten sums
    (root / "sums.orca").write_text(
        textwrap.dedent(
            f"""\
            orca 1
            teacher t {{ model = "openai/loopback" api_base = "{url}" api_key = env("LOOPBACK_KEY") max_retries = 0 }}
            strategy step {{ system = "{strategy}" }}
            erase cautious {{ system = "You are a cautious assistant." }}
            task arith {{
              from     = jsonl("data.jsonl")
              prompt   = "{{{{ q }}}}"
              gold     = "{{{{ a }}}}"
              teacher  = t
              strategy = step
              erase    = cautious
              accept   = contains(gold)
              holdout  = 20%
            }}
            """
        )
    )


def _file(path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """(spec, plan file, teacher) of a finished build whose spec was edited after it."""
    root = tmp_path_factory.mktemp("edited")
    with pytest.MonkeyPatch.context() as mp, Loopback(arith_answer) as server:
        mp.setenv("LOOPBACK_KEY", "k")
        _write_spec(root, server.url, "Think step by step.")
        assert cli.main(["build", str(root / "sums.orca"), "--no-progress"]) == 0  # writes the plan
        _write_spec(root, server.url, "Think step by step, then check your sum.")
        yield root / "sums.orca", root / "sums.plan.yaml", server


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "--dry-run"],
        ["eval", "--dry-run"],
        ["export", "-o", "OUT/records.jsonl"],
        ["report", "-o", "OUT/report.html"],
    ],
    ids=["build-dry-run", "eval-dry-run", "export", "report"],
)
def test_a_reading_command_on_an_edited_spec_leaves_the_plan_file_alone(edited, tmp_path, monkeypatch, capsys, argv):
    spec, plan_file, server = edited
    monkeypatch.setenv("LOOPBACK_KEY", "k")
    before, asked = _file(plan_file), server.stats()["requests"]
    capsys.readouterr()
    args = [a.replace("OUT", str(tmp_path)) for a in argv]
    assert cli.main([args[0], str(spec), *args[1:]]) == 0
    err = capsys.readouterr().err
    assert server.stats()["requests"] == asked  # read only: nothing asked either
    assert _file(plan_file) == before
    assert not list(plan_file.parent.glob("*.tmp"))
    notes = [line for line in err.splitlines() if line.startswith("note:") and "sums.plan.yaml" in line]
    assert notes == [
        f"note: {plan_file}: stale; this command reads {spec} as it is now and writes no plan; "
        f"rewrite it with: orcac plan {spec}"
    ], err
    # What they read was the edited spec, and the file is still the old one: `plan --check` agrees.
    assert cli.main(["plan", str(spec), "--check"]) == 1


def test_export_of_a_spec_never_built_writes_no_plan(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOOPBACK_KEY", "k")
    _write_spec(tmp_path, "http://127.0.0.1:9/v1", "Think step by step.")
    spec = tmp_path / "sums.orca"
    assert cli.main(["export", str(spec), "-o", str(tmp_path / "r.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "no build database" in err
    assert f"note: {tmp_path / 'sums.plan.yaml'}: missing;" in err
    assert not (tmp_path / "sums.plan.yaml").exists()


def test_an_up_to_date_plan_gets_no_note_and_build_still_writes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOOPBACK_KEY", "k")
    spec = tmp_path / "sums.orca"
    with Loopback(arith_answer) as server:
        _write_spec(tmp_path, server.url, "Think step by step.")
        assert cli.main(["plan", str(spec)]) == 0
        capsys.readouterr()
        assert cli.main(["build", str(spec), "--dry-run"]) == 0
        assert "note:" not in capsys.readouterr().err
        _write_spec(tmp_path, server.url, "Think step by step, then check your sum.")
        assert cli.main(["build", str(spec), "--no-progress"]) == 0  # a build writes the plan it runs
    assert cli.main(["plan", str(spec), "--check"]) == 0
