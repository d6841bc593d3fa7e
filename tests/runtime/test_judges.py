"""Judges end to end: a spec's `judged(NAME)` check, compiled, built against the loopback
server, which answers as the teacher (model "teacher") and as the judge (model "judge")."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from orcac import cli
from orcac.runtime.answers.judges import read_score
from orcac.specs.plan import JudgePlan
from tests.support.db import rows
from tests.support.loopback import Loopback, key_of
from tests.support.plans import write_jsonl

ROOT = Path(__file__).resolve().parents[2]

RUBRIC = """
    Rate how well the answer explains itself.
    Question: {{ prompt }}
    Answer: {{ answer }}
    Finish with one line "Score: N", N from 1 to 10.
"""


def _rubric(prompt: str, answer: str) -> str:
    """The judge's message for one answer, as the rubric above renders it."""
    return (
        "Rate how well the answer explains itself.\n"
        f"Question: {prompt}\nAnswer: {answer}\n"
        'Finish with one line "Score: N", N from 1 to 10.'
    )


def _numbers(text: str) -> tuple[int, int]:
    x, y = map(int, re.search(r"What is (\d+) plus (\d+)\?", text).groups())
    return x, y


def teacher_answer(question: str, system: str = "") -> str:
    """Row i: a terse answer when i % 3 == 0, else an explained one; "Be terse." always terse."""
    x, y = _numbers(question)
    if x % 3 == 0 or "terse" in system:
        return f"Answer: {x + y}"
    return f"Because {x} + {y} = {x + y}.\nAnswer: {x + y}"


def judge_answer(message: str) -> str:
    """9 for an explained answer, 4 for a terse one; no score at all for row 7's."""
    x, _ = _numbers(message)
    if x == 7:
        return "I cannot say."
    if "Because" in message:
        return "It shows its working.\nScore: 9"
    return "It gives no reason.\n**Score:** 4/10"


def respond(body: dict) -> str:
    user = key_of(body)
    if body.get("model") == "judge":
        return judge_answer(user)
    system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
    return teacher_answer(user, system)


def write_spec(
    root: Path,
    server: Loopback,
    *,
    n: int = 12,
    strategy: str = "explain",
    judge_fields: str = "",
    task_fields: str = "",
    accept: str = '[regex("Answer:"), judged(helpful)]',
) -> Path:
    write_jsonl(root / "data.jsonl", [{"q": f"What is {i} plus {i + 1}?"} for i in range(n)])
    spec = root / "judged.orca"
    spec.write_text(f"""orca 1

teacher t {{
  model       = "openai/teacher"
  api_base    = "{server.url}"
  api_key     = env("LOOPBACK_KEY")
  max_retries = 2
  concurrency = 4
}}

teacher referee {{
  model       = "openai/judge"
  api_base    = "{server.url}"
  api_key     = env("LOOPBACK_KEY")
  max_retries = 2
  concurrency = 4
}}

strategy explain {{ system = "Explain, then answer." }}
strategy terse {{ system = "Be terse." }}
erase e {{ system = "You are helpful." }}

judge helpful {{
  teacher   = referee
  rubric    = \"\"\"{RUBRIC}\"\"\"
  threshold = 7
  {judge_fields}
}}

task sums {{
  from     = jsonl("data.jsonl")
  prompt   = "{{{{ q }}}}"
  teacher  = t
  strategy = {strategy}
  accept   = {accept}
  {task_fields}
}}
""")
    return spec


@pytest.fixture(autouse=True)
def _key(monkeypatch, fast_backoff):
    monkeypatch.setenv("LOOPBACK_KEY", "sk-judge-test")


def _judge_requests(server: Loopback) -> dict[str, int]:
    return {k: n for k, n in server.stats()["hits"].items() if k.startswith("Rate how well")}


def _orcac(*argv: str) -> int:
    return cli.main(list(argv))


def test_answers_below_the_threshold_are_rejected_with_their_score(tmp_path, capsys):
    with Loopback(respond) as server:
        spec = write_spec(tmp_path, server)
        assert _orcac("build", str(spec), "--no-progress") == 0
        db = tmp_path / ".orca" / "judged.duckdb"
        checks = dict(rows(db, "SELECT row_index, reason FROM checks"))
        assert checks == {
            i: "judged(helpful): score 4 below 7"
            if i % 3 == 0
            else "judged(helpful): no score: the judge's answer has no 'Score: N' line"
            if i == 7
            else "accepted"
            for i in range(12)
        }
        records = [r[0] for r in rows(db, "SELECT row_index FROM records ORDER BY row_index")]
        assert records == [i for i in range(12) if i % 3 and i != 7]
        judgements = {
            r[0]: r[1:]
            for r in rows(db, "SELECT row_index, judge, score, reasoning, accepted FROM judgements ORDER BY row_index")
        }
        assert judgements[1] == ("helpful", 9.0, "It shows its working.", True)
        assert judgements[3] == ("helpful", 4.0, "It gives no reason.", False)
        assert judgements[7] == ("helpful", None, "I cannot say.", False)  # a clear rejection, not a crash
        assert len(judgements) == 12
        # judge jobs are jobs: the judge's teacher, its rendered rubric, stored answers
        judge_jobs = rows(db, "SELECT strategy, messages FROM jobs WHERE teacher = 'referee'")
        assert len(judge_jobs) == 12 and {s for s, _ in judge_jobs} == {"judged(helpful)"}
        assert json.loads(judge_jobs[0][1])[0]["content"].startswith("Rate how well the answer explains itself.")
        assert _judge_requests(server) == {
            _rubric(f"What is {i} plus {i + 1}?", teacher_answer(f"What is {i} plus {i + 1}?")): 1 for i in range(12)
        }
        out = capsys.readouterr().out
        assert re.search(r"┃ judge calls ┃", out) and re.search(r"│ sums +│ explain +│ +12 │ +12 │ +12 │", out), out

        # a re-run makes no call, teacher or judge, and changes nothing
        requests = server.stats()["requests"]
        assert _orcac("build", str(spec), "--no-progress") == 0
        assert server.stats()["requests"] == requests
        assert dict(rows(db, "SELECT row_index, reason FROM checks")) == checks

        # and the dry run knows every judge answer is stored
        capsys.readouterr()
        assert _orcac("build", str(spec), "--dry-run") == 0
        out = capsys.readouterr().out
        assert re.search(r"^sums +helpful +12 +12 +0 +0 +\$0\.0000$", out, re.M), out


def test_a_judge_only_sees_answers_that_pass_the_other_checks(tmp_path):
    def no_answer_line(body: dict) -> str:
        text = respond(body)
        return text if body.get("model") == "judge" or key_of(body) != "What is 1 plus 2?" else "I think it is 3."

    with Loopback(no_answer_line) as server:
        spec = write_spec(tmp_path, server)
        assert _orcac("build", str(spec), "--no-progress") == 0
        db = tmp_path / ".orca" / "judged.duckdb"
        assert dict(rows(db, "SELECT row_index, reason FROM checks WHERE row_index IN (1, 2)")) == {
            1: "regex",
            2: "accepted",
        }
        assert len(_judge_requests(server)) == 11  # row 1 never reached its judge
        assert rows(db, "SELECT count(*) FROM judgements WHERE row_index = 1") == [(0,)]


def test_the_dry_run_counts_judge_calls_and_their_cost_apart(tmp_path, capsys):
    with Loopback(respond) as server:
        spec = write_spec(tmp_path, server)
        assert _orcac("build", str(spec), "--dry-run") == 0
        out = capsys.readouterr().out
        # 12 teacher calls, then 12 judge calls at most (none answered yet)
        assert re.search(r"^sums +12 +0 +12 ", out, re.M), out
        assert re.search(r"^sums +helpful +12 +0 +12 +[\d,]+ +unknown$", out, re.M), out
        assert "judge total" in out and server.stats()["requests"] == 0

        # once the answers are in, it counts exactly the ones that passed their other checks
        assert _orcac("build", str(spec), "--no-progress") == 0
        capsys.readouterr()
        con = duckdb.connect(str(tmp_path / ".orca" / "judged.duckdb"))
        con.execute(
            "DELETE FROM responses WHERE job_id IN (SELECT job_id FROM jobs WHERE teacher = 'referee' AND row_index < 4)"
        )
        con.close()
        assert _orcac("build", str(spec), "--dry-run") == 0
        out = capsys.readouterr().out
        assert re.search(r"^sums +12 +12 +0 ", out, re.M), out
        assert re.search(r"^sums +helpful +12 +8 +4 +", out, re.M), out


def test_a_judge_that_fails_is_retried_then_failed_and_the_next_build_asks_only_it(tmp_path, capsys):
    bad = _rubric("What is 2 plus 3?", teacher_answer("What is 2 plus 3?"))
    flaky = _rubric("What is 4 plus 5?", teacher_answer("What is 4 plus 5?"))
    with Loopback(respond, script={bad: ["500"] * 3, flaky: ["503", "ok"]}) as server:
        spec = write_spec(tmp_path, server)
        assert _orcac("build", str(spec), "--no-progress") == 0
        db = tmp_path / ".orca" / "judged.duckdb"
        reasons = dict(rows(db, "SELECT row_index, reason FROM checks"))
        assert reasons[2] == "judged(helpful): judge call failed" and reasons[4] == "accepted"
        assert rows(
            db, "SELECT status, split_part(error, ':', 1) FROM jobs WHERE teacher = 'referee' AND row_index = 2"
        ) == [("failed", "server_error")]
        err = capsys.readouterr().err
        assert "1 job(s) failed after retries" in err
        before = dict(server.stats()["hits"])
        assert _orcac("build", str(spec), "--no-progress") == 0
        grown = {k for k, n in server.stats()["hits"].items() if n != before.get(k)}
        assert grown == {bad}
        assert dict(rows(db, "SELECT row_index, reason FROM checks"))[2] == "accepted"


def test_with_several_samples_the_lowest_sample_the_judge_keeps_is_kept(tmp_path):
    def by_seed(body: dict) -> str:  # a seed of 1 mod 4 gives the explained answer, others the terse one
        if body.get("model") == "judge":
            return respond(body)
        x, y = _numbers(key_of(body))
        return f"Because {x} + {y} = {x + y}.\nAnswer: {x + y}" if body["seed"] % 4 == 1 else f"Answer: {x + y}"

    with Loopback(by_seed) as server:
        spec = write_spec(tmp_path, server, n=6, task_fields="samples = 3 keep = 1 temperature = 0.7")
        assert _orcac("build", str(spec), "--no-progress") == 0
        db = tmp_path / ".orca" / "judged.duckdb"
        from orcac.compiler import compile_spec
        from orcac.runtime.answers.items import sample_options

        task = compile_spec(spec).tasks["sums"]
        odd = {r for r in range(6) if any(sample_options(task, r, i)["seed"] % 4 == 1 for i in range(3))}
        assert 0 < len(odd) < 6  # some rows have an answer the judge keeps, some none
        kept = rows(db, "SELECT row_index, assistant FROM records ORDER BY row_index")
        assert {r for r, _ in kept} == odd
        reasons = rows(db, "SELECT c.row_index, c.reason, count(*) FROM checks c GROUP BY ALL ORDER BY ALL")
        # every record is an explained answer: the judge's choice, made before rejection sampling's
        assert kept and all(a.startswith("Because") for _, a in kept) and len({r for r, _ in kept}) == len(kept)
        assert {reason for _, reason, _ in reasons} <= {
            "accepted",
            "beyond keep",
            "duplicate",
            "judged(helpful): score 4 below 7",
            "judged(helpful): no score: the judge's answer has no 'Score: N' line",
        }
        before = rows(db, "SELECT record_id, assistant FROM records ORDER BY 1")
        requests = server.stats()["requests"]
        assert _orcac("build", str(spec), "--no-progress") == 0
        assert (
            server.stats()["requests"] == requests
            and rows(db, "SELECT record_id, assistant FROM records ORDER BY 1") == before
        )


def test_a_changed_threshold_takes_effect_without_calls(tmp_path):
    with Loopback(respond) as server:
        spec = write_spec(tmp_path, server)
        assert _orcac("build", str(spec), "--no-progress") == 0
        requests = server.stats()["requests"]
        spec.write_text(spec.read_text().replace("threshold = 7", "threshold = 3"))
        assert _orcac("build", str(spec), "--no-progress") == 0
        assert server.stats()["requests"] == requests  # the same judge jobs: their answers are stored
        db = tmp_path / ".orca" / "judged.duckdb"
        assert rows(db, "SELECT count(*) FROM records") == [(11,)]  # all but row 7, which has no score
        assert rows(db, "SELECT count(*) FROM judgements WHERE accepted") == [(11,)]


def test_a_judge_read_as_json(tmp_path):
    def json_judge(body: dict) -> str:
        if body.get("model") != "judge":
            return respond(body)
        score = 8 if "Because" in key_of(body) else 2
        return 'My verdict:\n```json\n{"score": ' + str(score) + ', "reasoning": "checked the sum"}\n```'

    with Loopback(json_judge) as server:
        spec = write_spec(tmp_path, server, n=6, judge_fields="read = json")
        assert _orcac("build", str(spec), "--no-progress") == 0
        db = tmp_path / ".orca" / "judged.duckdb"
        assert rows(db, "SELECT row_index, score, reasoning FROM judgements WHERE row_index < 2 ORDER BY 1") == [
            (0, 2.0, "checked the sum"),
            (1, 8.0, "checked the sum"),
        ]


def test_best_of_by_judge_picks_the_higher_mean_score(tmp_path, capsys):
    with Loopback(respond) as server:
        spec = write_spec(tmp_path, server, n=12, strategy="best_of(terse, explain, by = judge, probe = 4)")
        assert _orcac("build", str(spec), "--no-progress") == 0
        plan = (tmp_path / "judged.plan.yaml").read_text()
        decision = plan.split("decision:", 1)[1]
        assert "chosen: explain" in decision
        scores = dict(re.findall(r"strategy: (\w+)\n\s+score: ([\d.]+)", decision))
        assert float(scores["explain"]) > float(scores["terse"])
        assert "mean" in capsys.readouterr().out
        assert _orcac("plan", str(spec), "--check") == 0  # the plan file stays what the compiler writes
        # the winner's probe answers and judgements are the main run's: nothing asked twice
        assert max(_judge_requests(server).values()) == 1


def test_best_of_by_judge_ties_go_to_the_cheaper_candidate(tmp_path):
    def same_score(body: dict) -> str:
        return "Fine.\nScore: 8" if body.get("model") == "judge" else respond(body)

    with Loopback(same_score) as server:
        spec = write_spec(tmp_path, server, n=12, strategy="best_of(explain, terse, by = judge, probe = 4)")
        assert _orcac("build", str(spec), "--no-progress") == 0
        decision = (tmp_path / "judged.plan.yaml").read_text().split("decision:", 1)[1]
        assert "chosen: terse" in decision  # fewer tokens, declared second


@pytest.mark.slow
def test_a_build_killed_while_judging_resumes_without_asking_a_judge_twice(tmp_path):
    with Loopback(respond, latency=0.05) as server:
        spec = write_spec(tmp_path, server, n=120)
        db = tmp_path / "killed.duckdb"
        env = dict(os.environ, LOOPBACK_KEY="sk-judge-test", LITELLM_LOCAL_MODEL_COST_MAP="True")
        argv = [sys.executable, "-m", "orcac.cli", "build", str(spec), "--db", str(db), "--no-progress"]
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(_judge_requests(server)) < 50 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the build finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        stored = {
            json.loads(m)[0]["content"]
            for (m,) in rows(
                db, "SELECT j.messages FROM jobs j JOIN responses r USING (job_id) WHERE j.teacher = 'referee'"
            )
        }
        assert 0 < len(stored) < 120
        before = _judge_requests(server)

        resumed = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr.decode()
        after = _judge_requests(server)
        assert all(after[key] == before[key] == 1 for key in stored)  # stored judge answers are reused
        assert len(after) == 120 and all(n <= 2 for n in after.values())  # at most the ones in flight again

        clean = subprocess.run(
            [*argv[:-3], "--db", str(tmp_path / "clean.duckdb"), "--no-progress"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=300,
        )
        assert clean.returncode == 0, clean.stderr.decode()
    query = "SELECT record_id, row_index, assistant FROM records ORDER BY record_id"
    assert rows(db, query) == rows(tmp_path / "clean.duckdb", query)
    judged = "SELECT item_id, score, reasoning, accepted, reason FROM judgements ORDER BY item_id"
    assert rows(db, judged) == rows(tmp_path / "clean.duckdb", judged)


# ---- reading scores ---------------------------------------------------------------------------

JUDGE = JudgePlan(name="h", teacher="t", rubric="{{ answer }}", threshold=7, origin="x:1")


@pytest.mark.parametrize(
    "text, score",
    [
        ("Good.\nScore: 8", 8.0),
        ("**Score:** 7/10", 7.0),
        ("Final score = 9.5", 9.5),
        ("Score: 3\nOn reflection, better.\nScore: 6", 6.0),  # the last line counts
        ("score: 10.", 10.0),
    ],
)
def test_a_score_line_is_read(text, score):
    assert read_score(JUDGE, text).value == score


@pytest.mark.parametrize(
    "text, problem",
    [
        ("I like it.", "no score: the judge's answer has no 'Score: N' line"),
        ("Score: eight", "no score: the judge's answer has no 'Score: N' line"),
        ("Score: 0", "score 0 is outside 1..10"),
        ("", "no score: the judge's answer has no 'Score: N' line"),
    ],
)
def test_an_unreadable_score_says_why(text, problem):
    assert read_score(JUDGE, text).problem == problem


def test_a_json_score_is_read_from_the_last_object_with_one():
    judge = JUDGE.model_copy(update={"read": "json"})
    assert read_score(judge, '{"note": 1} then {"score": "6", "explanation": "ok"}') == read_score(
        judge, '{"score": 6, "reasoning": "ok"}'
    )
    assert (
        read_score(judge, '{"score": true}').problem
        == "no score: the judge's answer has no JSON object with a numeric 'score'"
    )
    assert read_score(judge, "Score: 8").value is None
    assert "cut off" in read_score(judge, '{"score": ', "length").problem


# Planted in one judge's reasoning: text from outside, which the report must show as text.
PAYLOAD = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned', 'judge')\">"


@pytest.mark.slow
def test_the_report_shows_each_judges_scores_and_reasoning(tmp_path):
    from orcac.runtime.commands.report import command as report
    from orcac.runtime.store.database import Store
    from tests.support import browser

    def planted(body: dict) -> str:
        text = respond(body)
        return f"{PAYLOAD}\nScore: 9" if body.get("model") == "judge" and "What is 5 plus" in key_of(body) else text

    with Loopback(planted) as server:
        spec = write_spec(tmp_path, server)
        assert _orcac("build", str(spec), "--no-progress") == 0
    db = tmp_path / ".orca" / "judged.duckdb"
    with Store.open(db, read_only=True) as store:
        data = report.gather(cli.run_context(str(spec)).plan, store)
    (task,) = data["tasks"]
    assert {r["reason"]: r["count"] for r in task["rejected"]} == {  # by threshold, not one line per score
        "judged(helpful): below 7": 4,
        "judged(helpful): no score: the judge's answer has no 'Score: N' line": 1,
    }
    (judge,) = data["judges"]
    # rows 0, 3, 6, 9 terse (4), row 7 no score, the other seven explained (9)
    assert (judge["task"], judge["judge"], judge["teacher"], judge["threshold"]) == ("sums", "helpful", "referee", 7)
    assert (judge["judged"], judge["kept"], judge["below"], judge["unreadable"]) == (12, 7, 4, 1)
    assert judge["mean"] == pytest.approx((7 * 9 + 4 * 4) / 11)
    assert [b["count"] for b in judge["spread"]["bars"]] == [0, 0, 0, 4, 0, 0, 0, 0, 7, 0]
    assert [b["kept"] for b in judge["spread"]["bars"]] == [False] * 6 + [True] * 4
    assert (judge["calls"], judge["failed"]) == (12, 0)
    cards = {a["row_index"]: a["judgements"] for a in data["records"]["answers"]}
    assert cards[3] == [
        {
            "judge": "helpful",
            "score": 4.0,
            "reasoning": "It gives no reason.",
            "accepted": False,
            "reason": "score 4 below 7",
        }
    ]
    assert cards[7][0]["score"] is None and cards[5][0]["reasoning"] == PAYLOAD

    assert _orcac("report", str(spec)) == 0
    page = db.with_name("judged.report.html")
    assert "<img src=x" not in page.read_text()
    browser.require()
    loaded = browser.load(page, tmp_path)
    assert loaded.console == [], loaded.console
    row = re.search(r'<tr data-task="sums" data-judge="helpful">(.*?)</tr>', loaded.dom, re.S).group(1)
    assert re.search(r'class="judged">12<', row) and re.search(r'class="kept ok">7<', row)
    assert re.search(r'class="below bad">4<', row) and re.search(r'class="unreadable bad">1<', row)
    assert re.search(r'class="mean">7\.18<', row) and "<title>score 9: 7</title>" in row
    assert "judged by helpful: score 4 below 7" in loaded.dom and "judged by helpful: score 9, kept" in loaded.dom
    assert "judged by helpful: no score: the judge's answer has no 'Score: N' line" in loaded.dom
    shot = browser.screenshot(page, tmp_path, tmp_path / "report.png")
    print(f"screenshot: {shot}")  # pytest -s shows where to look
    assert "pwned" not in re.search(r"<html[^>]*>", loaded.dom).group(0) and "&lt;img src=x" in loaded.dom


@pytest.mark.slow
def test_orcac_eval_asks_the_judges_about_each_arms_answers(tmp_path, capsys):
    """The whole command: a build, then `orcac eval` with the real demo model as the base arm
    and the loopback teacher as the prompted one, the loopback judge scoring both."""
    with Loopback(respond) as server:
        spec = write_spec(
            tmp_path, server, task_fields="holdout = 25%", accept="[judged(helpful)]"
        )  # the judge sees every answer
        with spec.open("a") as f:
            f.write(
                'student s { model = "local/smollm2-135m-instruct" }\n'
                "train { student = s\n  stage only { tasks = [sums] epochs = 1 } }\n"
                "eval { max_new_tokens = 24 batch_size = 4 }\n"
            )
        assert _orcac("build", str(spec), "--no-progress") == 0
        before = server.stats()["requests"]
        capsys.readouterr()
        assert _orcac("eval", str(spec), "--models", "base,prompted") == 0
        db = tmp_path / ".orca" / "judged.duckdb"
        held = rows(db, "SELECT row_index FROM examples WHERE split = 'holdout' ORDER BY row_index")
        n = len(held)
        asked = server.stats()["requests"] - before
        assert asked == n + n + n  # prompted's answers, then a judgement of every answer of both arms
        scores = dict(rows(db, "SELECT model, accuracy FROM eval_runs"))
        # The judge keeps explained answers: the teacher's, rows not divisible by 3, and row 7's has no score.
        explained = [i for (i,) in held if i % 3 and i != 7]
        assert scores["prompted"] == pytest.approx(len(explained) / n)
        base = rows(db, "SELECT answer, accepted FROM eval_answers WHERE model = 'base'")
        assert all(accepted == ("Because" in answer) for answer, accepted in base)  # the judge read each one
        out = capsys.readouterr().out
        assert re.search(r"sums: mean score of judge helpful: base \d\.\d\d, prompted \d\.\d\d", out), out
        again = server.stats()["requests"]
        assert _orcac("eval", str(spec), "--models", "base,prompted") == 0
        assert server.stats()["requests"] == again  # nothing asked twice: prompted's answers, the judgements
