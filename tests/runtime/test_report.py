"""`orcac report`: a real build (loopback teacher, real DuckDB), its page checked as data,
as text, and in a real headless Chromium: counts rendered, no console errors, no planted
script run."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import pytest

from orcac import cli
from orcac.runtime.commands.build_records import probe
from orcac.runtime.commands.report import command as report
from orcac.runtime.store.database import Store
from orcac.runtime.store.evaluations import INTERVAL_COLUMNS
from orcac.specs.plan import CandidateScore, Decision, TeacherPlan
from orcac.stats import mcnemar, wilson
from tests.support import browser, retries
from tests.support.loopback import Loopback
from tests.support.plans import arith_answer, arithmetic_rows, make_plan, write_plan

pytestmark = pytest.mark.xdist_group("loopback")

# Planted in a prompt and in an answer: if any of it became markup, the page would say so
# (the attribute, the title) where the test looks.
PAYLOAD = (
    "<script>document.documentElement.setAttribute('data-pwned', 'script')</script>"
    "</script><img src=x onerror=\"document.documentElement.setAttribute('data-pwned', 'img')\">"
)
N = 12


def _answer(body: dict) -> str:
    text = arith_answer(body)
    if "What is 3 plus 4?" in body["messages"][-1]["content"]:
        return PAYLOAD + "\n" + text  # still right: accepted, so it reaches the erased record too
    if "What is 9 plus 10?" in body["messages"][-1]["content"]:
        return "I would rather not say."  # rejected by contains(gold)
    return text


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(plan path, database) of a finished build with a probe decision, a training run and an eval."""
    root = tmp_path_factory.mktemp("report")
    rows = arithmetic_rows(N)
    rows[1]["q"] += " " + PAYLOAD  # markup in a prompt: shown to the teacher and the student
    script = {rows[5]["q"]: ["malformed"] * 20, rows[6]["q"]: ["length:chars=5"]}
    with pytest.MonkeyPatch.context() as mp, Loopback(_answer, script=script) as server:
        retries.fast_backoff(mp)
        mp.setenv("LOOPBACK_KEY", "sk-loopback")
        teacher = TeacherPlan(
            name="t",
            model="openai/loopback",
            api_base=server.url,
            max_retries=1,
            timeout_s=10.0,
            api_key_env="LOOPBACK_KEY",
        )
        plan = make_plan(root, rows, holdout=0.0, teacher=teacher)
        path = write_plan(root, plan)
        assert cli.main(["build", str(path), "--no-progress"]) == 0
    database = root / ".orca" / "spec.duckdb"
    with Store.open(database) as store:
        probe.write_decision(
            store,
            "arith",
            Decision(
                chosen="step",
                key="k" * 64,
                scores=(
                    CandidateScore(
                        strategy="step",
                        score=0.75,
                        passed=3,
                        total=4,
                        prompt_tokens=120,
                        completion_tokens=40,
                        cost=0.002,
                    ),
                    CandidateScore(
                        strategy="terse",
                        score=0.5,
                        passed=2,
                        total=4,
                        prompt_tokens=80,
                        completion_tokens=10,
                        cost=0.001,
                    ),
                ),
            ),
        )
    con = duckdb.connect(str(database))
    try:
        # Rows `orcac train` and `orcac eval` would write (their tables exist: the build made them all).
        con.execute(
            "INSERT INTO train_runs VALUES ('r1', 'x', 'tiny', 'out', 'cpu', 'fp32', true, false, "
            "TIMESTAMP '2026-01-01 10:00:00', NULL, 'ok', 0.9, '{}')"
        )
        for stage_index, stage in enumerate(("warmup", "main")):
            for step in range(1, 31):
                loss = 3.0 - stage_index - step / 30
                con.execute(
                    "INSERT INTO train_steps VALUES ('r1', ?, ?, ?, 0, ?, 1e-5, 1, 100, 1)",
                    [stage, stage_index, step, loss],
                )
        # 12 held-out rows; accuracy and adherence right of 12 per arm, each with its Wilson interval
        for model, right, formed in (("base", 3, 1), ("trained", 9, 11), ("prompted", 10, 12)):
            con.execute(
                "INSERT INTO eval_runs (run_id, model, model_path, task, strategy, examples, accepted, adherent, "
                "truncated, accuracy, adherence, seconds, plan_sha256, created_at, accuracy_n, accuracy_low, "
                "accuracy_high, adherence_n, adherence_low, adherence_high) "
                "VALUES ('e1', ?, '', 'arith', 'step', 12, ?, ?, 0, ?, ?, 1.0, 'x', now(), 12, ?, ?, 12, ?, ?)",
                [model, right, formed, right / 12, formed / 12, *wilson(right, 12), *wilson(formed, 12)],
            )
        for metric, gap, low, high in (("accuracy", 6 / 7, 0.5, 1.2), ("adherence", 10 / 11, 0.7, 1.0)):
            con.execute(
                "INSERT INTO eval_gaps VALUES ('e1', 'arith', ?, 0, 0, 0, ?, 'x', ?, ?)", [metric, gap, low, high]
            )
        # accuracy: 7 rows better, 1 worse (p 0.07, too few to tell); adherence: 10 better, 0 worse
        for metric, worse, better in (("accuracy", 1, 7), ("adherence", 0, 10)):
            con.execute(
                "INSERT INTO eval_paired VALUES ('e1', 'arith', ?, 12, ?, ?, ?, 'x')",
                [metric, worse, better, mcnemar(worse, better)],
            )
    finally:
        con.close()
    return path, database


@pytest.fixture(scope="module")
def page(built) -> Path:
    path, database = built
    assert cli.main(["report", str(path)]) == 0
    out = database.with_name("spec.report.html")
    assert out.is_file()
    return out


def test_gather_counts_every_verdict_and_failure(built):
    path, database = built
    plan = cli.run_context(str(path)).plan
    with Store.open(database, read_only=True) as store:
        data = report.gather(plan, store)
    (task,) = data["tasks"]
    assert (task["accepted"], task["failed"], task["calls"]) == (N - 3, 1, N - 1)
    assert {r["reason"]: r["count"] for r in task["rejected"]} == {"truncated": 1, "contains": 1}
    assert {r["reason"]: r["rule"] for r in task["rejected"]}["contains"] == "contains(gold)"
    assert task["yield"] == pytest.approx((N - 3) / (N - 1))
    assert task["prompt_tokens"] > 0 and task["records"] == N - 3
    assert task["examples"] == {"train": N}
    (teacher,) = data["teachers"]
    assert teacher["failures"] == [("bad_response", 1)] and teacher["retries"] >= 1
    verdicts = sorted(item["verdict"] for item in data["records"]["answers"])
    assert verdicts == ["accepted"] * (N - 3) + ["failed"] + ["rejected"] * 2
    planted = next(i for i in data["records"]["answers"] if i["row_index"] == 3)
    assert planted["messages"][0]["role"] == "system" and planted["erased_system"] != planted["messages"][0]["content"]
    assert [c["strategy"] for c in data["decisions"][0]["candidates"]] == ["step", "terse"]
    assert [s["name"] for s in data["training"]["stages"]] == ["warmup", "main"]
    assert data["evaluation"]["arms"] == ["base", "prompted", "trained"]  # every arm run, in order
    assert task["yield_interval"] == pytest.approx(wilson(N - 3, N - 1))  # the yield's 95% interval


def test_eval_rates_carry_their_intervals_and_the_paired_test(built):
    path, database = built
    plan = cli.run_context(str(path)).plan
    with Store.open(database, read_only=True) as store:
        ev = report.gather(plan, store)["evaluation"]
    (row,) = ev["rows"]
    trained = row["arms"][ev["arms"].index("trained")]
    assert (trained["accuracy_low"], trained["accuracy_high"]) == pytest.approx(wilson(9, 12))
    assert row["gaps"]["accuracy"] == {"gap": pytest.approx(6 / 7), "low": 0.5, "high": 1.2}
    assert row["paired"]["adherence"] == {"pairs": 12, "worse": 0, "better": 10, "p": pytest.approx(2 / 2**10)}
    # 7 rows better and 1 worse is p = 0.07: the page says so in a line instead of a bare p
    assert ev["undecided"] == [
        "arith accuracy, trained against base: n=12: 50 points (7 rows better, 1 worse) could be chance (p=0.07)"
    ]


def test_a_database_from_before_intervals_still_makes_a_page(built, tmp_path):
    """A version-3 file (no interval columns, no eval_paired) is read as it is: rates without intervals."""
    path, database = built
    copy = tmp_path / "v3.duckdb"
    shutil.copyfile(database, copy)
    con = duckdb.connect(str(copy))
    for column in INTERVAL_COLUMNS:
        con.execute(f"ALTER TABLE eval_runs DROP COLUMN {column}")
    con.execute("ALTER TABLE eval_gaps DROP COLUMN gap_low")
    con.execute("ALTER TABLE eval_gaps DROP COLUMN gap_high")
    con.execute("DROP TABLE eval_paired")
    con.execute("UPDATE schema_version SET version = 3")
    con.close()
    out = tmp_path / "v3.html"
    assert cli.main(["report", str(path), "--db", str(copy), "-o", str(out)]) == 0
    table = re.search(r'<table id="eval-table">(.*?)</table>', out.read_text(), re.S).group(1)
    assert "75.0%" in table and "[47-91]" not in table and "p, trained vs base" not in table


def test_a_version_7_file_reports_the_same_failure_reasons_before_and_after_its_migration(built, tmp_path):
    """Version 8 keeps a failed job's reason in a column (the build writes it); a version 7 file
    had it only at the start of the error text: read as it is, and once migrated (the column
    filled from that text), the report counts the same reasons."""
    path, database = built
    plan = cli.run_context(str(path)).plan

    def reasons(db) -> tuple:
        with Store.open(db, read_only=True) as store:
            data = report.gather(plan, store)
        failed = sorted(i["reason"] for i in data["records"]["answers"] if i["verdict"] == "failed")
        return data["teachers"][0]["failures"], failed

    with Store.open(database, read_only=True) as store:
        assert store.rows("SELECT reason, error FROM jobs WHERE status = 'failed'")[0][0] == "bad_response"
    now = reasons(database)
    assert now == ([("bad_response", 1)], ["bad_response"])
    copy = tmp_path / "v7.duckdb"
    shutil.copyfile(database, copy)
    con = duckdb.connect(str(copy))
    con.execute("ALTER TABLE jobs DROP COLUMN reason")
    con.execute("UPDATE schema_version SET version = 7")
    con.close()
    assert reasons(copy) == now  # read as it is
    with Store.open(copy) as store:  # migrated on its next write
        assert store.rows("SELECT reason FROM jobs WHERE status = 'failed'") == [("bad_response",)]
    assert reasons(copy) == now


def test_sample_keeps_every_count_and_fewer_records(built):
    path, database = built
    plan = cli.run_context(str(path)).plan
    with Store.open(database, read_only=True) as store:
        data = report.gather(plan, store, sample=2)
    assert len(data["records"]["answers"]) == 2 + 1 + 2  # accepted 2 of 9, failed 1, rejected 2
    groups = {g["verdict"]: (g["shown"], g["total"]) for g in data["records"]["groups"]}
    assert groups == {"accepted": (2, N - 3), "failed": (1, 1), "rejected": (2, 2)}
    assert data["tasks"][0]["accepted"] == N - 3


def test_outside_text_is_never_markup_in_the_file(page):
    html = page.read_text()
    assert "<img src=x" not in html and "<script>document" not in html
    # The records' JSON block has no `</` at all: nothing inside can close the script element.
    block = re.search(r'<script type="application/json" id="orcac-records">(.*?)</script>', html, re.S).group(1)
    assert "</" not in block and "<" not in block and "\\u003c/script\\u003e" in block
    assert "https://" not in html and "http://" not in html  # nothing to fetch: it opens offline


def test_the_same_database_gives_the_same_page(built, page, tmp_path):
    path, _ = built
    again = tmp_path / "again.html"
    assert cli.main(["report", str(path), "-o", str(again)]) == 0
    assert again.read_bytes() == page.read_bytes()


def test_a_build_without_probe_training_or_eval_says_so(built, tmp_path):
    path, database = built
    copy = tmp_path / "fresh.duckdb"
    shutil.copyfile(database, copy)
    con = duckdb.connect(str(copy))
    for table in ("decisions", "train_runs", "train_steps", "eval_runs", "eval_answers"):
        con.execute(f"DROP TABLE {table}")
    con.close()
    out = tmp_path / "fresh.html"
    assert cli.main(["report", str(path), "--db", str(copy), "-o", str(out)]) == 0
    text = out.read_text()
    assert "No probe ran" in text and "Not trained yet" in text and "Not evaluated yet" in text
    assert 'class="accepted ok">9<' in text


def test_a_missing_database_is_one_line_and_exit_1(built, tmp_path, capsys):
    path, _ = built
    assert cli.main(["report", str(path), "--db", str(tmp_path / "nope.duckdb")]) == 1
    err = capsys.readouterr().err
    assert "no build database" in err and "Traceback" not in err


def _articles(dom: str) -> list[str]:
    return re.findall(r'<article class="rec (\w+)"', dom)


@pytest.mark.slow
def test_the_page_in_chromium(page, tmp_path):
    browser.require()
    loaded = browser.load(page, tmp_path)
    assert loaded.console == [], loaded.console  # no errors, no warnings, no logs
    dom = loaded.dom
    html_tag = re.search(r"<html[^>]*>", dom).group(0)
    assert re.search(r'data-ready="\d+"', html_tag), "the page's script did not finish"
    assert "pwned" not in html_tag and "<img" not in dom  # neither planted script ran
    # The planted markup is on the page, as text.
    assert "&lt;img src=x onerror=" in dom and "&lt;/script&gt;" in dom
    # The counts, as rendered.
    row = re.search(r'<tr data-task="arith">(.*?)</tr>', dom, re.S).group(1)
    assert re.search(r'class="accepted ok">9<', row) and re.search(r'class="calls">11<', row)
    assert "truncated</span>: 1" in row and "contains</span>: 1" in row and "81.8%" in row
    assert sorted(_articles(dom)) == ["accepted"] * 9 + ["failed"] + ["rejected"] * 2
    assert "12 of 12 sampled answers match" in dom
    assert 'id="loss-chart"' in dom and dom.count("<polyline") == 2
    assert 'class="arm">prompted<' in dom
    assert "[52-95]" in row  # the yield, 9 of 11, with its 95% interval
    # each arm's rates with their intervals, the gap closed's, the paired p, and the line for n too small
    table = re.search(r'<table id="eval-table">(.*?)</table>', dom, re.S).group(1)
    assert '75.0% <span class="ci">[47-91]</span>' in table and "[9-53]" in table and "[76-100]" in table
    assert '0.86 <span class="ci">[0.50, 1.20]</span>' in table
    assert "0.070" in table and "0.002" in table
    assert "n=12: 50 points (7 rows better, 1 worse) could be chance (p=0.07)" in dom
    assert dom.count('class="whisker"') == 6  # an error bar on every bar of the chart
    shot = browser.screenshot(page, tmp_path, tmp_path / "report.png")
    print(f"screenshot: {shot}")  # pytest -s shows where to look


@pytest.mark.slow
def test_filters_from_the_address_in_chromium(page, tmp_path):
    browser.require()
    rejected = browser.load(page, tmp_path, fragment="task=arith&verdict=rejected")
    assert rejected.console == []
    assert _articles(rejected.dom) == ["rejected", "rejected"]
    assert "rejected by contains(gold)" in rejected.dom
    found = browser.load(page, tmp_path, fragment="q=onerror")
    assert sorted(_articles(found.dom)) == ["accepted", "accepted"]  # the planted prompt and answer
    assert "2 of 12 sampled answers match" in found.dom


def test_the_latest_benchmark_run_of_each_arm_is_shown_below_the_eval(built, tmp_path):
    path, database = built
    copy = tmp_path / "bench.duckdb"
    shutil.copyfile(database, copy)
    con = duckdb.connect(str(copy))
    row = "INSERT INTO eval_benchmarks VALUES (?, ?, '', ?, ?, 'exact_match', 'strict-match', ?, ?, 8, 5, 'Be careful.', '0.4.13', 'x', ?)"
    con.execute(
        row, ["old", "trained", "gsm8k", True, 0.1, 0.01, "2026-01-01 10:00:00"]
    )  # replaced by the run after it
    con.execute(row, ["b1", "base", "gsm8k", True, 0.25, 0.05, "2026-01-02 10:00:00"])
    con.execute(row, ["b1", "trained", "gsm8k", True, 0.375, 0.06, "2026-01-02 10:00:00"])
    con.execute(
        row, ["b1", "trained", "bbh_navigate", False, 0.5, None, "2026-01-02 10:00:00"]
    )  # a subtask: database only
    con.close()
    out = tmp_path / "bench.html"
    assert cli.main(["report", str(path), "--db", str(copy), "-o", str(out)]) == 0
    table = out.read_text().split('id="benchmarks-table"')[1].split("</table>")[0]
    assert re.findall(r"<td>([^<]*)</td>", table) == ["exact_match", "strict-match", "8", "0.25 ± 0.05", "0.375 ± 0.06"]
    assert "bbh_navigate" not in table
