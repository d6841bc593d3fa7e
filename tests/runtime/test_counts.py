"""What `orcac build` counts, and that its numbers agree: the live line's `passed` is the
summary's, `kept` only once decided (judges, `keep`), rows and answers apart; a re-run says
how many answers were stored and how many it asks."""

from __future__ import annotations

import io

import pytest

from orcac import cli
from orcac.specs.plan import TeacherPlan
from orcac.stats import rate_text
from tests.runtime.test_sampling import sampled_plan
from tests.support.db import rows
from tests.support.loopback import Loopback
from tests.support.plans import seeded_answer, write_plan

pytestmark = pytest.mark.usefixtures("fast_backoff")


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("LOOPBACK_KEY", "sk-counts")


def _teacher(server: Loopback) -> TeacherPlan:
    return TeacherPlan(name="t", model="openai/loopback", api_base=server.url, api_key_env="LOOPBACK_KEY")


def summary_rows(out: str) -> list[dict[str, str]]:
    """The summary table's rows as {column: cell}, from rich's box drawing (a cell wrapped
    over several lines joined again)."""
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    names = [cell.strip() for cell in header.strip("┃").split("┃")]
    found: list[list[str]] = []
    for line in lines:
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            if cells[0] or not found:
                found.append(cells)
            else:  # the same row, its long cells wrapped
                found[-1] = [f"{a} {b}".strip() for a, b in zip(found[-1], cells)]
    return [dict(zip(names, cells)) for cells in found]


def last_line(err: str) -> str:
    return [line for line in err.splitlines() if line.startswith("build: ") and " calls" in line][-1]


def test_the_live_line_and_the_summary_agree_on_a_sampled_build(tmp_path, capsys):
    with Loopback(seeded_answer) as server:
        plan = sampled_plan(tmp_path, _teacher(server), samples=3, keep=2, n=12)
        path = write_plan(tmp_path, plan)
        assert cli.main(["build", str(path), "--dry-run"]) == 0
        header, line = capsys.readouterr().out.splitlines()[:2]
        assert header.split()[:4] == ["task", "answers", "cached", "calls"] and line.split()[:4] == [
            "arith",
            "36",
            "0",
            "36",
        ]
        assert cli.main(["build", str(path), "--no-progress"]) == 0
    captured = capsys.readouterr()
    (row,) = summary_rows(captured.out)
    records = rows(tmp_path / ".orca" / "spec.duckdb", "SELECT count(*) FROM records")[0][0]
    # rows and answers apart: 12 rows asked 3 times each
    assert (row["rows"], row["answers"], row["calls"]) == ("12", "36", "36")
    # the live line counted answers that passed the checks, not records: the same as the summary's
    line = last_line(captured.err)
    assert f"passed {row['passed']}, rejected {36 - int(row['passed'])}" in line, line
    assert "kept" not in line and "accepted" not in line
    # kept is what became records; the passed answers not kept say why, apart from the rejected
    assert int(row["kept"]) == records < int(row["passed"])
    not_kept = dict(reason.rsplit(" ", 1) for reason in row["not kept"].split(", "))
    assert set(not_kept) <= {"duplicate", "beyond keep"}
    assert int(row["kept"]) + sum(map(int, not_kept.values())) == int(row["passed"])
    assert int(row["passed"]) + int(row["rejected"].rsplit(" ", 1)[1]) == 36  # numeric N: the wrong answers
    assert row["yield"] == rate_text(records, 36, show_n=False)  # e.g. "50% [34-66]": the 95% interval too
    assert row["yield"].startswith(f"{100 * records / 36:.0f}% [")


def test_a_rerun_says_how_many_answers_are_stored_and_how_many_it_asks(tmp_path, capsys):
    with Loopback(seeded_answer) as server:
        plan = sampled_plan(tmp_path, _teacher(server), samples=3, keep=2, n=12)
        path = write_plan(tmp_path, plan)
        assert cli.main(["build", str(path), "--no-progress", "--limit", "12"]) == 0  # 12 of the 36 answers
        capsys.readouterr()
        assert cli.main(["build", str(path), "--no-progress"]) == 0
        assert server.stats()["requests"] == 36
        captured = capsys.readouterr()
        assert "build: resuming: 12 of 36 answers stored, asking 24" in captured.err
        assert last_line(captured.err).startswith("build: 24/24 calls, 12 answers stored | ")
        (row,) = summary_rows(captured.out)
        assert (row["cached"], row["calls"]) == ("12", "24")
        assert f"passed {row['passed']}," in last_line(captured.err)  # stored answers counted as well
        assert cli.main(["build", str(path), "--no-progress"]) == 0
        assert "build: all 36 answers stored, asking none" in capsys.readouterr().err


def test_a_judged_answer_that_passes_the_checks_is_passed_not_rejected_while_its_judge_is_asked(tmp_path, capsys):
    from tests.runtime.test_judges import respond, write_spec

    with Loopback(respond) as server:
        assert cli.main(["build", str(write_spec(tmp_path, server)), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "passed 12, rejected 0" in last_line(captured.err)  # every answer passed; the judge decides
    (row,) = summary_rows(captured.out)
    assert (row["passed"], row["kept"], row["rejected"]) == ("12", "7", "0")
    assert row["not kept"].startswith("judged(helpful): below 7 4")


def test_the_live_line_counts_calls_and_stored_answers_apart():
    from rich.console import Console

    from orcac.runtime.commands.build_records.progress import BuildProgress

    buffer = io.StringIO()
    display = BuildProgress(
        2, live=True, console=Console(file=buffer, force_terminal=True, width=200), stored=5, passed=4, rejected=1
    ).start()
    display.outcome(failed_reason=None, prompt_tokens=1, completion_tokens=1, cost=0.0)
    display.verdict(passed=False)
    display.stop()
    assert "1/2 calls, 5 answers stored" in buffer.getvalue() and "passed 4, rejected 2" in buffer.getvalue()


def test_a_judges_rejection_and_keep_are_not_kept_and_the_checks_rejection_is_rejected():
    from collections import Counter

    from orcac.runtime.commands.build_records.progress import Tally

    tally = Tally()
    for accepted, reason in [
        (True, "accepted"),
        (False, "numeric"),
        (False, "duplicate"),
        (False, "judged(h): score 3 below 7"),
        (False, "judged(h): awaiting judge"),
    ]:
        tally.count(accepted, reason)
    tally.count(False, "judged(h): awaiting judge", times=-1)  # the judge answered: settled again
    tally.count(True, "accepted")
    assert (tally.passed, tally.accepted) == (4, 2)
    assert tally.rejected == Counter(numeric=1)
    assert +tally.not_kept == Counter({"duplicate": 1, "judged(h): score 3 below 7": 1})
