"""The probe phase: real litellm HTTP calls to the loopback server, a real DuckDB file.

The loopback teacher answers by its system prompt, so every winner is known in advance:
a strategy whose text contains "step" solves the sum, "direct" answers one too many, and
"terse"/"verbose" both solve it (a tie on score that the cheaper one must win).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from orcac.errors import OrcacError
from orcac.runtime.answers.examples import materialize
from orcac.runtime.answers.items import plan_work
from orcac.runtime.commands.build_records import probe
from orcac.runtime.commands.build_records.command import run_build
from orcac.runtime.store.database import Store
from orcac.specs.plan import CandidateScore, Decision, Plan, ProbePlan, StrategyPlan, TeacherPlan
from tests.support.loopback import Loopback, key_of
from tests.support.plans import make_plan

pytestmark = [pytest.mark.xdist_group("loopback"), pytest.mark.usefixtures("fast_backoff")]

TEXTS = {
    "direct": "Reply with the number alone, as fast as you can.",
    "step": "Work through the sum step by step, then give 'Answer: <number>'.",
    "verbose": "You are a patient teacher of arithmetic for young pupils. Always explain carefully, "
    "with kindness and without hurry, exactly how you add the two numbers together.",
    "terse": "Add them.",
}
SIZE = 4


def sums(body: dict) -> str:
    system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
    x, y = map(int, re.search(r"What is (\d+) plus (\d+)\?", key_of(body)).groups())
    if "step" in system or system in (TEXTS["verbose"], TEXTS["terse"]):
        return f"{x} + {y} = {x + y}.\nAnswer: {x + y}"
    return f"Answer: {x + y + 1}"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("LOOPBACK_KEY", "sk-loopback-test-key")


@pytest.fixture
def server():
    with Loopback(sums) as s:
        yield s


def probe_plan(
    root: Path,
    server: Loopback,
    candidates=("direct", "step"),
    key: str = "key-1",
    *,
    n: int = 20,
    size: int = SIZE,
    concurrency: int = 16,
) -> Plan:
    teacher = TeacherPlan(
        name="t",
        model="openai/loopback",
        api_base=server.url,
        api_key_env="LOOPBACK_KEY",
        timeout_s=5,
        max_retries=2,
        concurrency=concurrency,
    )
    plan = make_plan(root, n=n, holdout=0.2, teacher=teacher, decided=False, probe_size=size)
    strategies = {c: StrategyPlan(name=c, system=TEXTS[c], origin="test:1") for c in sorted(set(candidates))}
    task = plan.tasks["arith"]
    task = task.model_copy(update={"probe": ProbePlan(candidates=tuple(candidates), size=size, key=key)})
    return plan.model_copy(update={"strategies": strategies, "tasks": {"arith": task}})


def requests(server: Loopback) -> int:
    return server.stats()["requests"]


def decisions(store: Store) -> list[dict]:
    return store.query("SELECT * FROM decisions ORDER BY task, key, strategy").to_pylist()


def run(plan: Plan, root: Path, db: Path, **kw) -> probe.ProbeResult:
    with Store.open(db) as store:
        return probe.run_probes(plan, root, store, log=lambda _: None, **kw)


# ---- pure parts --------------------------------------------------------------------------


def cs(name: str, passed: int, total: int, tokens: int) -> CandidateScore:
    return CandidateScore(
        strategy=name,
        score=passed / total,
        passed=passed,
        total=total,
        prompt_tokens=tokens,
        completion_tokens=0,
        cost=0.0,
    )


def test_choose_prefers_score_then_tokens_then_name():
    assert probe.choose([cs("cheap", 1, 4, 10), cs("good", 3, 4, 500)]) == "good"
    assert probe.choose([cs("a_long", 3, 4, 500), cs("z_short", 3, 4, 10)]) == "z_short"
    assert probe.choose([cs("b", 3, 4, 10), cs("a", 3, 4, 10)]) == "a"
    # 1/3 and 2/6 are equal rates although their floats need not be: tokens decide.
    assert probe.choose([cs("a", 1, 3, 90), cs("b", 2, 6, 80)]) == "b"


def test_score_counts_only_its_candidate():
    answers = [
        probe.Answer("s", 0, True, 10, 2, 0.5),
        probe.Answer("s", 1, False, 10, 3, 0.25),
        probe.Answer("d", 0, True, 1, 1, 0.0),
    ]
    assert probe.score("s", answers) == CandidateScore(
        strategy="s", score=0.5, passed=1, total=2, prompt_tokens=20, completion_tokens=5, cost=0.75
    )


def test_a_decision_is_valid_only_for_its_key(tmp_path, server):
    plan = probe_plan(tmp_path, server)
    task = plan.tasks["arith"]
    assert not probe.is_decided(task)
    decided = probe.apply_decision(plan, "arith", Decision(chosen="step", key="key-1", scores=()))
    task = decided.tasks["arith"]
    assert (task.strategy, task.system) == ("step", TEXTS["step"])
    assert probe.is_decided(task) and not probe.is_decided(task, reprobe=True)
    stale = task.model_copy(update={"probe": task.probe.model_copy(update={"key": "key-2"})})
    assert not probe.is_decided(stale)


# ---- the probe against the loopback teacher ------------------------------------------------


def test_probe_picks_the_strategy_that_passes_and_records_it(tmp_path, server):
    plan = probe_plan(tmp_path, server)
    plan_file = tmp_path / "spec.plan.yaml"
    result = run(plan, tmp_path, tmp_path / "b.duckdb", plan_path=plan_file)

    assert requests(server) == SIZE * 2 and result.calls == SIZE * 2
    decision = result.decisions["arith"]
    assert decision.chosen == "step" and decision.key == "key-1"
    scores = {s.strategy: s for s in decision.scores}
    assert (scores["step"].passed, scores["step"].total) == (SIZE, SIZE)
    assert (scores["direct"].passed, scores["direct"].total) == (0, SIZE)
    assert scores["step"].prompt_tokens > 0 and scores["step"].completion_tokens > 0
    task = result.plan.tasks["arith"]
    assert (task.strategy, task.system) == ("step", TEXTS["step"])

    with Store.open(tmp_path / "b.duckdb", read_only=True) as store:
        rows = decisions(store)
    assert [(r["strategy"], r["chosen"], r["passed"], r["total"]) for r in rows] == [
        ("direct", False, 0, SIZE),
        ("step", True, SIZE, SIZE),
    ]
    written = yaml.safe_load(plan_file.read_text())["tasks"]["arith"]
    assert written["strategy"] == "step"
    assert written["probe"]["decision"]["chosen"] == "step"
    assert [s["strategy"] for s in written["probe"]["decision"]["scores"]] == ["direct", "step"]


def test_a_recorded_decision_is_reused_without_calls(tmp_path, server):
    first = run(probe_plan(tmp_path, server), tmp_path, tmp_path / "b.duckdb")
    before = requests(server)
    again = run(first.plan, tmp_path, tmp_path / "fresh.duckdb")
    assert requests(server) == before and again.calls == 0 and again.probed == []
    assert again.plan == first.plan
    with Store.open(tmp_path / "fresh.duckdb", read_only=True) as store:
        assert [r["chosen"] for r in decisions(store)] == [False, True]  # recorded in the new db too


def test_changed_candidates_invalidate_the_decision(tmp_path, server):
    first = run(probe_plan(tmp_path, server), tmp_path, tmp_path / "b.duckdb")
    assert first.decisions["arith"].chosen == "step"
    # What the compiler does on recompile: a new key, the old decision dropped as stale.
    changed = probe_plan(tmp_path, server, candidates=("direct", "step", "terse"), key="key-2")
    task = changed.tasks["arith"]
    changed = changed.model_copy(
        update={
            "tasks": {
                "arith": task.model_copy(
                    update={
                        "probe": task.probe.model_copy(
                            update={"decision": first.decisions["arith"].model_copy(update={"key": "key-1"})}
                        )
                    }
                )
            }
        }
    )
    before = requests(server)
    again = run(changed, tmp_path, tmp_path / "b.duckdb")
    # Only the new candidate's answers are asked for: the others are stored jobs.
    assert requests(server) - before == SIZE and again.cached == 2 * SIZE
    assert again.probed == ["arith"] and again.decisions["arith"].key == "key-2"
    assert again.decisions["arith"].chosen == "terse"  # as right as step, fewer tokens
    with Store.open(tmp_path / "b.duckdb", read_only=True) as store:
        assert {(r["key"], r["strategy"]) for r in decisions(store) if r["chosen"]} == {
            ("key-1", "step"),
            ("key-2", "terse"),
        }


def test_reprobe_decides_again(tmp_path, server):
    plan = probe_plan(tmp_path, server)
    wrong = Decision(chosen="direct", key="key-1", scores=())  # e.g. a hand-edited plan
    plan = probe.apply_decision(plan, "arith", wrong)
    assert run(plan, tmp_path, tmp_path / "b.duckdb").calls == 0
    result = run(plan, tmp_path, tmp_path / "b.duckdb", reprobe=True)
    assert result.calls == 2 * SIZE and result.decisions["arith"].chosen == "step"
    assert result.plan.tasks["arith"].strategy == "step"


def test_a_tie_goes_to_the_cheaper_candidate(tmp_path, server):
    result = run(probe_plan(tmp_path, server, candidates=("verbose", "terse")), tmp_path, tmp_path / "b.duckdb")
    scores = {s.strategy: s for s in result.decisions["arith"].scores}
    assert scores["verbose"].passed == scores["terse"].passed == SIZE
    assert scores["terse"].prompt_tokens < scores["verbose"].prompt_tokens
    assert result.decisions["arith"].chosen == "terse"


def test_a_tie_names_the_rule_that_broke_it(tmp_path, server):
    said: list[str] = []
    with Store.open(tmp_path / "b.duckdb") as store:
        result = probe.run_probes(
            probe_plan(tmp_path, server, candidates=("verbose", "terse")), tmp_path, store, log=said.append
        )
    decision = result.decisions["arith"]
    assert decision.tie_break == "fewer tokens"
    tokens = {s.strategy: s.prompt_tokens + s.completion_tokens for s in decision.scores}
    assert (
        f"probe: task arith: terse and verbose tie at 4/4; fewer tokens chose terse (tokens: terse {tokens['terse']}, "
        f"verbose {tokens['verbose']})" in said
    )
    # equal tokens too: name order
    tied = probe.decide(
        ProbePlan(candidates=("b", "a"), size=2, key="k"),
        [probe.Answer(name, row, True, 5, 5) for name in ("b", "a") for row in (0, 1)],
    )
    assert (tied.chosen, tied.tie_break) == ("a", "name order")
    assert probe.tie_message("t", tied) == "task t: a and b tie at 2/2; name order chose a (tokens: a 20, b 20)"
    # no tie: nothing said, nothing recorded (a plan's decision keeps its bytes)
    clear = probe.decide(
        ProbePlan(candidates=("b", "a"), size=1, key="k"), [probe.Answer("a", 0, True), probe.Answer("b", 0, False)]
    )
    assert clear.tie_break is None and probe.tie_message("t", clear) is None
    assert "tie_break" not in clear.model_dump()


def test_a_probe_too_small_to_tell_the_candidates_apart_says_so():
    answers = [probe.Answer("direct_answer", row, row < 3) for row in range(4)] + [
        probe.Answer("step_by_step", row, row < 2) for row in range(4)
    ]
    decision = probe.decide(ProbePlan(candidates=("direct_answer", "step_by_step"), size=4, key="k"), answers)
    assert probe.noise(decision) == [
        "direct_answer 3/4 vs step_by_step 2/4: within the noise of 4 probe answers each "
        "(their 95% Wilson intervals overlap); raise probe to ~57 to tell them apart"
    ]
    # 4/4 vs 0/4 is outside the noise of 4; 60/80 vs 40/80 too (past ~57); judge means are no binomial rate
    apart = [probe.Answer("a", row, True) for row in range(4)] + [probe.Answer("b", row, False) for row in range(4)]
    assert probe.noise(probe.decide(ProbePlan(candidates=("a", "b"), size=4, key="k"), apart)) == []
    many = [probe.Answer("a", row, row < 60) for row in range(80)] + [
        probe.Answer("b", row, row < 40) for row in range(80)
    ]
    assert probe.noise(probe.decide(ProbePlan(candidates=("a", "b"), size=80, key="k"), many)) == []
    assert probe.noise(decision, "judge") == []


def test_the_build_warns_when_the_probe_cannot_separate_the_winner(tmp_path):
    def half_right(body: dict) -> str:  # direct is right on even rows only, step on all
        x, y = map(int, re.search(r"What is (\d+) plus (\d+)\?", key_of(body)).groups())
        direct = any(m.get("content") == TEXTS["direct"] for m in body["messages"])
        return f"Answer: {x + y + (1 if direct and x % 2 else 0)}"

    said: list[str] = []
    with Loopback(half_right) as server, Store.open(tmp_path / "b.duckdb") as store:
        result = probe.run_probes(probe_plan(tmp_path, server), tmp_path, store, log=said.append)
    scores = {s.strategy: s.passed for s in result.decisions["arith"].scores}
    assert scores["step"] == SIZE and 0 < scores["direct"] < SIZE  # the probe rows hold odd and even ones
    assert any(
        line.startswith(
            f"warning: task arith: step {SIZE}/{SIZE} vs direct {scores['direct']}/{SIZE}: "
            f"within the noise of {SIZE} probe answers each"
        )
        for line in said
    ), said


def test_only_the_winners_probe_answers_become_records(tmp_path, server):
    plan = probe_plan(tmp_path, server)
    db = tmp_path / "b.duckdb"
    result = run(plan, tmp_path, db)
    after_probe = requests(server)
    with Store.open(db) as store:
        work = plan_work(result.plan, tmp_path)
        built = run_build(result.plan, tmp_path, store, work, progress=False)
        records = store.query("SELECT strategy, row_index, job_id FROM records").to_pylist()
        probe_rows = {r["row_index"] for r in store.query("SELECT row_index FROM examples WHERE probe").to_pylist()}
        loser_jobs = {r["job_id"] for r in store.query("SELECT job_id FROM jobs WHERE strategy = 'direct'").to_pylist()}
    train = result.plan.tasks["arith"].counts.train
    # The main run answered only the rows the probe did not: the probe rows' jobs were done.
    assert built.calls == train - SIZE and requests(server) - after_probe == train - SIZE
    assert len(records) == train and {r["strategy"] for r in records} == {"step"}
    assert probe_rows <= {r["row_index"] for r in records}
    assert len(loser_jobs) == SIZE and not loser_jobs & {r["job_id"] for r in records}


def test_a_failed_probe_call_decides_nothing_and_only_it_is_retried(tmp_path):
    rows = materialize(make_plan(tmp_path, n=20, holdout=0.2, decided=False, probe_size=SIZE), tmp_path, "arith")
    failing = next(e.prompt for e in rows if e.probe)
    # max_retries=2: three attempts for each of the row's two jobs use up the six 500s.
    with Loopback(sums, script={failing: ["500"] * 6}) as server:
        plan = probe_plan(tmp_path, server)
        db, plan_file = tmp_path / "b.duckdb", tmp_path / "spec.plan.yaml"
        with pytest.raises(OrcacError, match="2 probe call"):
            run(plan, tmp_path, db, plan_path=plan_file)
        assert not plan_file.exists()
        with Store.open(db, read_only=True) as store:
            assert store.query("SELECT count(*) AS n FROM responses").to_pylist() == [{"n": 2 * SIZE - 2}]
            assert decisions(store) == []
        before = requests(server)
        result = run(plan, tmp_path, db, plan_path=plan_file)
        assert requests(server) - before == 2 and result.cached == 2 * SIZE - 2
        assert result.decisions["arith"].chosen == "step"


def test_a_task_without_gold_cannot_be_probed(tmp_path, server):
    plan = probe_plan(tmp_path, server)
    task = plan.tasks["arith"].model_copy(update={"gold": None})
    plan = plan.model_copy(update={"tasks": {"arith": task}})
    with pytest.raises(OrcacError, match="gold"):
        run(plan, tmp_path, tmp_path / "b.duckdb")


# ---- `orcac build` on a spec: the compiler, the plan file and the CLI together ---------------

SPEC = """orca 1

teacher t {
  model       = "openai/loopback"
  api_base    = "URL"
  api_key     = env("LOOPBACK_KEY")
  max_retries = 2
  timeout     = 5s
}

strategy direct { system = "DIRECT" }
strategy step { system = "STEP" }
strategy terse { system = "TERSE" }
erase cautious { system = "You are a cautious assistant." }

task arith {
  from     = jsonl("data.jsonl")
  prompt   = "{{ q }}"
  gold     = "{{ a }}"
  teacher  = t
  erase    = cautious
  strategy = best_of(CANDIDATES, by = accept, probe = 4)
  accept   = contains(gold)
  holdout  = 20%
}
"""


def write_spec(root: Path, server: Loopback, candidates: str) -> Path:
    make_plan(root, n=20)  # writes data.jsonl
    text = SPEC.replace("URL", server.url).replace("CANDIDATES", candidates)
    for name in ("direct", "step", "terse"):
        text = text.replace(f'"{name.upper()}"', f'"{TEXTS[name]}"')
    path = root / "spec.orca"
    path.write_text(text)
    return path


def orcac(*argv: str) -> int:
    from orcac import cli

    return cli.main(list(argv))


def test_orcac_build_probes_once_records_the_decision_and_keeps_the_plan_fresh(tmp_path, server, capsys):
    spec = write_spec(tmp_path, server, "direct, step")
    plan_file, db = tmp_path / "spec.plan.yaml", tmp_path / ".orca" / "spec.duckdb"

    assert orcac("build", str(spec), "--dry-run") == 0
    out = capsys.readouterr().out
    assert requests(server) == 0
    line = next(x for x in out.splitlines() if x.startswith("arith") and "x 2" in x)
    assert line.split()[1:6] == ["4", "x", "2", "0", "8"]  # rows x candidates, cached, calls

    assert orcac("build", str(spec), "--no-progress") == 0
    out = capsys.readouterr().out
    train = 16
    assert requests(server) == 2 * SIZE + train - SIZE  # probe, then the rows it did not answer
    assert "strategy decisions" in out and re.search(r"step\s.*100\.0%\s.*4/4.*yes", out)
    assert re.search(r"direct\s.*0\.0%\s.*0/4", out)
    written = yaml.safe_load(plan_file.read_text())["tasks"]["arith"]
    assert written["strategy"] == "step" and written["probe"]["decision"]["chosen"] == "step"
    assert orcac("plan", str(spec), "--check") == 0  # the rewritten plan is what the compiler writes
    with Store.open(db, read_only=True) as store:
        assert {r["strategy"] for r in store.query("SELECT strategy FROM records").to_pylist()} == {"step"}
        assert [(r["strategy"], r["chosen"]) for r in decisions(store)] == [("direct", False), ("step", True)]

    # Unchanged spec: the recorded decision is reused, nothing is called.
    before = requests(server)
    assert orcac("build", str(spec), "--no-progress") == 0
    assert requests(server) == before and "arith (recorded)" in capsys.readouterr().out
    assert orcac("build", str(spec), "--dry-run") == 0
    assert "x 2" not in capsys.readouterr().out  # nothing left to probe

    # --reprobe decides again, from the stored answers: still no call.
    assert orcac("build", str(spec), "--no-progress", "--reprobe") == 0
    assert requests(server) == before and "arith (recorded)" not in capsys.readouterr().out

    # A changed candidate list: a new key, a new probe (only the new candidate's calls).
    write_spec(tmp_path, server, "direct, step, terse")
    assert orcac("build", str(spec), "--no-progress") == 0
    assert requests(server) - before == SIZE + train - SIZE  # terse's probe, then its main run
    written = yaml.safe_load(plan_file.read_text())["tasks"]["arith"]
    assert written["strategy"] == "terse"
    assert [s["strategy"] for s in written["probe"]["decision"]["scores"]] == ["direct", "step", "terse"]
    assert orcac("plan", str(spec), "--check") == 0
    with Store.open(db, read_only=True) as store:
        assert {r["strategy"] for r in store.query("SELECT strategy FROM records").to_pylist()} == {"terse"}


def test_orcac_build_says_a_tie_and_records_its_rule_in_the_plan(tmp_path, server, capsys):
    spec = write_spec(tmp_path, server, "step, terse")
    plan_file = tmp_path / "spec.plan.yaml"
    assert orcac("build", str(spec), "--no-progress") == 0
    captured = capsys.readouterr()
    assert re.search(r"^probe: task arith: terse and step tie at 4/4; fewer tokens chose terse", captured.err, re.M)
    assert re.search(r"terse\s.*4/4.*yes \(tie: fewer tokens\)", captured.out)
    decision = yaml.safe_load(plan_file.read_text())["tasks"]["arith"]["probe"]["decision"]
    assert (decision["chosen"], decision["tie_break"]) == ("terse", "fewer tokens")
    assert orcac("plan", str(spec), "--check") == 0  # the compiler carries it as written
    # no tie: the decision is written as before, with no tie_break
    write_spec(tmp_path, server, "direct, step")
    assert orcac("build", str(spec), "--no-progress") == 0
    assert "tie" not in capsys.readouterr().err
    assert "tie_break" not in plan_file.read_text()


def test_best_of_without_gold_is_a_compile_error(tmp_path, server, capsys):
    spec = write_spec(tmp_path, server, "direct, step")
    spec.write_text(spec.read_text().replace('  gold     = "{{ a }}"\n', "").replace("contains(gold)", "nonempty"))
    assert orcac("plan", str(spec)) == 1
    assert "a metric needs a gold answer" in capsys.readouterr().err


@pytest.mark.slow
def test_a_probe_killed_with_sigkill_resumes_without_asking_again(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    size = 24
    # 2 in flight at 0.2 s each: 10 requests/s, so the 48 probe calls take about 5 s.
    with Loopback(sums, latency=0.2) as server:
        plan = probe_plan(tmp_path, server, n=40, size=size, concurrency=2)
        path = tmp_path / "spec.plan.yaml"
        path.write_text(yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False))
        db = tmp_path / "killed.duckdb"
        env = dict(os.environ, LOOPBACK_KEY="sk-loopback-test-key", LITELLM_LOCAL_MODEL_COST_MAP="True")
        proc = subprocess.Popen(
            [sys.executable, "-m", "orcac.cli", "build", str(path), "--db", str(db), "--no-progress"],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        # 2.5 s into the calls: past the first flush (1 s), well before the 2 x 24 calls are done.
        while requests(server) < 25 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        asked = requests(server)
        assert 25 <= asked < 2 * size
        with Store.open(db, read_only=True) as store:
            stored = store.query("SELECT count(*) AS n FROM responses").to_pylist()[0]["n"]
        assert stored > 0

        result = run(plan, tmp_path, db)
        # Only what was not stored is asked again (at most the calls in flight at the kill).
        assert result.cached == stored and result.calls == 2 * size - stored
        assert requests(server) - asked == 2 * size - stored
        assert result.decisions["arith"].chosen == "step"
        assert [(s.passed, s.total) for s in result.decisions["arith"].scores] == [(0, size), (size, size)]


class _Counted:
    """How often a build compiles the spec, serializes the plan, writes the plan file and opens
    its database: counted by wrapping the real functions (they still do their work)."""

    def __init__(self, monkeypatch):
        import orcac.compiler
        import orcac.runtime.store.database
        import orcac.specs.plan_file

        self.counts = {"compiles": 0, "serializations": 0, "plan writes": 0, "opens": 0}
        self._wrap(monkeypatch, orcac.compiler, "compile_spec", "compiles")
        self._wrap(monkeypatch, orcac.specs.plan_file, "dump_plan", "serializations")
        self._wrap(monkeypatch, orcac.runtime.store.database, "open_database", "opens")
        replace = Path.replace

        def counted_replace(self_path, target):  # write_plan's atomic rename, the file's one write
            if str(target).endswith(".plan.yaml"):
                self.counts["plan writes"] += 1
            return replace(self_path, target)

        monkeypatch.setattr(Path, "replace", counted_replace)

    def _wrap(self, monkeypatch, module, name: str, counter: str) -> None:
        real = getattr(module, name)

        def counted(*args, **kwargs):
            self.counts[counter] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)


def test_a_build_whose_probe_decides_compiles_once_more_writes_the_plan_once_and_opens_the_database_once(
    tmp_path, server, monkeypatch, capsys
):
    spec = write_spec(tmp_path, server, "direct, step")
    assert orcac("plan", str(spec)) == 0  # written and reviewed before the build, as one does
    counted = _Counted(monkeypatch)
    assert orcac("build", str(spec), "--no-progress") == 0
    assert "strategy decisions" in capsys.readouterr().out
    # The CLI compiles the spec (its plan file is up to date: not rewritten); the probe's
    # decision is compiled in once more, handed to the compiler in memory, and the plan file
    # written once, after. The third serialization is the build's plan hash for `runs`.
    # (Before: the decided plan written, read back by the recompile, written again: 4
    # serializations, 2 writes; the probe and the main run opened the database once each.)
    assert counted.counts == {"compiles": 2, "serializations": 3, "plan writes": 1, "opens": 1}
    assert orcac("plan", str(spec), "--check") == 0
