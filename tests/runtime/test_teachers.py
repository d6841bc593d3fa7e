"""run_jobs through litellm's real HTTP path against the loopback server, with injected faults."""

from __future__ import annotations

import asyncio

import pytest

from orcac.errors import OrcacError
from orcac.runtime.teachers import calls as teachers
from orcac.runtime.teachers.calls import run_jobs
from orcac.runtime.teachers.jobs import Job, Outcome, job_id, make_job
from orcac.specs.plan import TeacherPlan
from tests.support.loopback import Loopback, by_system

KEY = "sk-test-5e3cr3t-k3y-0123456789"

pytestmark = [pytest.mark.xdist_group("loopback"), pytest.mark.usefixtures("fast_backoff")]


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("LOOPBACK_KEY", KEY)


def teacher(server: Loopback, **overrides) -> TeacherPlan:
    fields = dict(
        name="gpt",
        model="openai/loopback",
        api_base=server.url,
        api_key_env="LOOPBACK_KEY",
        timeout_s=5.0,
        max_retries=3,
        concurrency=8,
    )
    fields.update(overrides)
    return TeacherPlan(**fields)


def jobs_for(plan: TeacherPlan, keys, system: str = "be brief") -> list[Job]:
    return [make_job(plan, [{"role": "system", "content": system}, {"role": "user", "content": k}]) for k in keys]


def run(plan: TeacherPlan, jobs) -> list[Outcome]:
    outcomes: list[Outcome] = []
    asyncio.run(run_jobs({plan.name: plan}, jobs, outcomes.append))
    return outcomes


def by_key(jobs: list[Job], outcomes: list[Outcome]) -> dict[str, Outcome]:
    ids = [o.job_id for o in outcomes]
    assert len(ids) == len(set(ids)), "a job was reported twice"
    assert sorted(ids) == sorted(j.id for j in jobs), "a job was never reported"
    content = {j.id: j.messages[-1]["content"] for j in jobs}
    return {content[o.job_id]: o for o in outcomes}


@pytest.mark.slow
def test_every_job_ends_once_with_its_reason():
    script = {
        "plain": [],
        "after-429": ["429"],
        "after-500": ["500", "503"],
        "after-malformed": ["malformed"],
        "after-empty": ["empty"],
        "after-hang": ["hang:s=3"],
        "after-drop": ["drop"],
        "truncated": ["length:chars=4"],
        "always-500": ["500"] * 10,
        "always-malformed": ["malformed"] * 10,
        "always-empty": ["empty"] * 10,
        "always-429": ["429"] * 10,
        "always-hang": ["hang:s=3"] * 10,
        "bad-request": ["400"],
    }
    with Loopback(script=script) as server:
        plan = teacher(server, timeout_s=0.8, max_retries=2)
        run(plan, jobs_for(plan, ["warm-up"]))  # litellm's first call in a process is slow (lazy imports)
        jobs = jobs_for(plan, list(script) * 1) + jobs_for(plan, [f"extra-{i}" for i in range(40)])
        outcomes = by_key(jobs, run(plan, jobs))
        hits = server.stats()["hits"]

    for key in ("plain", "after-429", "after-500", "after-malformed", "after-empty", "after-hang", "after-drop"):
        assert outcomes[key].status == "ok", (key, outcomes[key])
        assert outcomes[key].text == key and outcomes[key].finish_reason == "stop"
        assert outcomes[key].attempts == len(script[key]) + 1
    truncated = outcomes["truncated"]
    assert (truncated.status, truncated.text, truncated.finish_reason) == ("ok", "trun", "length")
    for key, reason in [
        ("always-500", "server_error"),
        ("always-malformed", "bad_response"),
        ("always-empty", "bad_response"),
        ("always-429", "rate_limited"),
        ("always-hang", "timeout"),
    ]:
        outcome = outcomes[key]
        assert outcome.status == "failed" and outcome.error.split(":")[0] == reason, (key, outcome)
        assert outcome.attempts == 3 and hits[key] == 3, "retries are bounded by max_retries"
        assert outcome.text is None
    assert outcomes["bad-request"].status == "failed" and outcomes["bad-request"].error.startswith("bad_request")
    assert outcomes["bad-request"].attempts == 1, "a 400 is not retried"
    for i in range(40):
        ok = outcomes[f"extra-{i}"]
        assert ok.status == "ok" and ok.prompt_tokens > 0 and ok.completion_tokens > 0 and ok.model
    for outcome in outcomes.values():
        assert KEY not in repr(outcome), "an API key leaked into an outcome"


def test_retry_after_seconds_and_http_date_are_honoured(clock, monkeypatch):
    clock.install(monkeypatch, teachers)  # the waits are asked of a fake clock: none is slept
    script = {"seconds": ["429:retry_after=1.2"], "date": ["429:retry_date=2"]}
    waits = {}
    with Loopback(script=script, clock=clock.monotonic) as server:
        plan = teacher(server, concurrency=1)
        for key in script:
            before = len(clock.sleeps)
            outcomes = run(plan, jobs_for(plan, [key]))
            assert outcomes[0].status == "ok" and outcomes[0].attempts == 2
            waits[key] = clock.sleeps[before:]
        log = server.stats()["log"]
    times = {}
    for at, key, _fault in log:
        times.setdefault(key, []).append(at)
    assert waits["seconds"] == [1.2]  # Retry-After: 1.2, instead of the backoff
    assert times["seconds"][1] - times["seconds"][0] == pytest.approx(
        1.2, abs=1e-3
    )  # as the server saw it (its log rounds)
    # An HTTP-date has whole seconds: "now + 2 s" rounds down to between 1 and 2 s ahead.
    [date] = waits["date"]
    assert 0.95 <= date <= 2.0
    assert times["date"][1] - times["date"][0] == pytest.approx(date, abs=1e-3)


def test_retry_after_pauses_the_whole_teacher(clock, monkeypatch):
    clock.install(monkeypatch, teachers)
    with Loopback(script={"first": ["429:retry_after=1"]}, clock=clock.monotonic) as server:
        plan = teacher(server, concurrency=1)
        outcomes = run(plan, jobs_for(plan, ["first", "second"]))
        log = server.stats()["log"]
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert clock.sleeps == [1.0]
    assert log[1][0] - log[0][0] == pytest.approx(1.0, abs=1e-3), "the next request waited for the Retry-After window"


def test_timeout_fires_per_request():
    with Loopback(faults="hang:s=30") as server:
        plan = teacher(server, timeout_s=0.3, max_retries=1)
        [outcome] = run(plan, jobs_for(plan, ["slow"]))
        hits = server.stats()["hits"]
    # A request that hangs for 30 s would be answered "ok" in the end: each attempt was cut off.
    assert outcome.status == "failed" and outcome.error.startswith("timeout") and outcome.attempts == 2
    assert hits == {"slow": 2}


def test_authentication_failure_stops_the_run_in_one_line_naming_the_teacher():
    script = {f"bad-{i}": ["401"] for i in range(5)}
    with Loopback(script=script) as server:
        plan = teacher(server, concurrency=1)
        good = jobs_for(plan, ["fine-1", "fine-2"])
        outcomes: list[Outcome] = []
        with pytest.raises(OrcacError) as caught:
            asyncio.run(run_jobs({"gpt": plan}, good + jobs_for(plan, list(script)), outcomes.append))
    error = caught.value
    assert error.message.startswith("teacher gpt (openai/loopback): authentication failed (401)")
    assert "\n" not in error.message and KEY not in error.message and KEY not in (error.hint or "")
    assert "LOOPBACK_KEY" in error.hint
    assert {o.job_id for o in outcomes} == {j.id for j in good}, "outcomes before the failure were delivered"


def test_missing_key_variable_stops_before_any_call(monkeypatch):
    monkeypatch.delenv("LOOPBACK_KEY")
    with Loopback() as server:
        plan = teacher(server)
        with pytest.raises(OrcacError, match=r"teacher gpt \(openai/loopback\).*LOOPBACK_KEY is not set"):
            run(plan, jobs_for(plan, ["x"]))
        assert server.stats()["requests"] == 0


def test_unknown_model_and_unknown_provider_stop_the_run():
    with Loopback(faults="404") as server:
        plan = teacher(server)
        with pytest.raises(OrcacError, match=r"^teacher gpt \(openai/loopback\): unknown model"):
            run(plan, jobs_for(plan, ["x"]))
        nowhere = teacher(server, model="nosuchprovider-xyz/model", api_base=None)
        with pytest.raises(OrcacError, match="unknown provider") as caught:
            run(nowhere, jobs_for(nowhere, ["x"]))
        assert "docs.litellm.ai" in caught.value.hint


def _closed_port() -> int:
    """A loopback port nobody listens on: bound for a moment, then let go."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_host_stops_after_retries():
    port = _closed_port()
    plan = TeacherPlan(
        name="far",
        model="openai/x",
        api_base=f"http://127.0.0.1:{port}/v1",
        api_key_env="LOOPBACK_KEY",
        max_retries=1,
    )
    with pytest.raises(OrcacError, match=r"^teacher far \(openai/x\): unreachable after 2 attempts"):
        run(plan, jobs_for(plan, ["x"]))


def test_keys_are_scrubbed_from_failures():
    with Loopback(faults="400") as server:
        plan = teacher(server)
        [outcome] = run(plan, jobs_for(plan, ["x"]))
        assert server.stats()["auth"] == {"present": 1}
    assert outcome.status == "failed" and "bad_request" in outcome.error
    assert KEY not in outcome.error and "***" in outcome.error


def test_async_iterable_of_jobs_and_per_system_answers():
    with Loopback(responder=by_system) as server:
        plan = teacher(server)

        async def produce():
            for system in ("alpha", "beta"):
                for job in jobs_for(plan, ["q1", "q2"], system=system):
                    yield job

        outcomes: list[Outcome] = []
        asyncio.run(run_jobs({"gpt": plan}, produce(), outcomes.append))
    assert sorted(o.text for o in outcomes) == ["alpha|q1", "alpha|q2", "beta|q1", "beta|q2"]


def test_concurrency_is_bounded():
    with Loopback(latency=0.2) as server:
        plan = teacher(server, concurrency=3)
        outcomes = run(plan, jobs_for(plan, [f"q{i}" for i in range(9)]))
        peak = server.stats()["peak"]
    assert all(o.status == "ok" for o in outcomes)
    assert peak == 3, "9 jobs of 0.2 s each: 3 in flight at once, never more"


def test_unknown_teacher_and_callback_bugs_surface():
    with Loopback() as server:
        plan = teacher(server)
        stray = Job(id="x", teacher="nobody", messages=({"role": "user", "content": "x"},))
        with pytest.raises(OrcacError, match="teacher 'nobody'"):
            run(plan, [stray])

        def broken(outcome):
            raise ZeroDivisionError("bug in the caller")

        with pytest.raises(ZeroDivisionError):
            asyncio.run(run_jobs({"gpt": plan}, jobs_for(plan, ["x"]), broken))


def test_ctrl_c_in_the_callback_stops_the_run_as_itself_and_abandons_the_rest():
    """A KeyboardInterrupt raised where an outcome is delivered ends the run as a
    KeyboardInterrupt (not inside the event loop, not wrapped), with the jobs still in flight
    cancelled undelivered and no task left behind."""
    delivered: list[Outcome] = []

    def interrupted(outcome: Outcome) -> None:
        delivered.append(outcome)
        raise KeyboardInterrupt

    async def main() -> set:
        with pytest.raises(KeyboardInterrupt):
            await run_jobs({"gpt": plan}, jobs_for(plan, [f"q{i}" for i in range(40)]), interrupted)
        return asyncio.all_tasks() - {asyncio.current_task()}

    with Loopback(latency=0.05) as server:
        plan = teacher(server, concurrency=4)
        assert asyncio.run(main()) == set()
    assert 1 <= len(delivered) < 40


def test_job_id_covers_the_answer_not_the_plumbing():
    plan = TeacherPlan(name="t", model="openai/m")
    messages = ({"role": "user", "content": "hi"},)
    same = [
        plan.model_copy(update=u)
        for u in (
            {"name": "other"},
            {"api_key_env": "K"},
            {"concurrency": 1},
            {"rpm": 5},
            {"tpm": 9},
            {"timeout_s": 1.0},
            {"max_retries": 0},
        )
    ]
    different = [
        plan.model_copy(update=u)
        for u in (
            {"model": "openai/n"},
            {"api_base": "http://x"},
            {"temperature": 0.7},
            {"top_p": 0.9},
            {"max_tokens": 7},
            {"seed": 1},
            {"params": {"stop": "x"}},
        )
    ]
    base = job_id(plan, messages)
    assert len(base) == 64
    assert all(job_id(p, messages) == base for p in same)
    assert len({job_id(p, messages) for p in different} | {base}) == len(different) + 1
    assert job_id(plan, [{"role": "user", "content": "hi!"}]) != base


def test_token_bucket_limits_rate(clock, monkeypatch):
    clock.install(monkeypatch, teachers)

    async def go():
        bucket = teachers._Bucket(600)  # 10 per second, 600 up front
        await bucket.take(600)
        started = clock.now
        for _ in range(5):
            await bucket.take(1)
        slow = clock.now - started
        started = clock.now
        await teachers._Bucket(60).take(10_000)  # larger than the bucket: a full one lets it through
        assert clock.now == started
        return slow

    assert asyncio.run(go()) == pytest.approx(0.5)  # 5 more at 10 per second


def test_rpm_limit_spaces_requests(clock, monkeypatch):
    clock.install(monkeypatch, teachers)
    with Loopback(clock=clock.monotonic) as server:
        plan = teacher(server, rpm=120, concurrency=1)  # 2/s after a burst of 120
        asyncio.run(_saturate_then_run(plan))
        log = server.stats()["log"]
    gaps = [b[0] - a[0] for a, b in zip(log, log[1:])]
    assert gaps == pytest.approx([0.5, 0.5], abs=1e-3)


async def _saturate_then_run(plan: TeacherPlan) -> None:
    # Take the burst out of the bucket so the timed requests feel the steady rate.
    outcomes: list[Outcome] = []
    original = teachers._Bucket.__init__

    def drained(self, per_minute):
        original(self, per_minute)
        self.level = 0.0

    teachers._Bucket.__init__ = drained
    try:
        await run_jobs({plan.name: plan}, jobs_for(plan, ["a", "b", "c"]), outcomes.append)
    finally:
        teachers._Bucket.__init__ = original
    assert len(outcomes) == 3


def test_one_job_whose_connection_always_drops_fails_alone():
    with Loopback(script={"doomed": ["drop"] * 20}) as server:
        plan = teacher(server, max_retries=2, concurrency=2)
        jobs = jobs_for(plan, ["doomed"] + [f"fine-{i}" for i in range(12)])
        outcomes = by_key(jobs, run(plan, jobs))  # no exception: the build goes on
    doomed = outcomes.pop("doomed")
    assert doomed.status == "failed" and doomed.error.startswith("connection_error") and doomed.attempts == 3
    assert all(o.status == "ok" for o in outcomes.values())


def test_a_teacher_that_fails_everything_stops_after_a_few_jobs_not_all():
    port = _closed_port()
    plan = TeacherPlan(
        name="far",
        model="openai/x",
        api_base=f"http://127.0.0.1:{port}/v1",
        api_key_env="LOOPBACK_KEY",
        max_retries=0,
        concurrency=1,
    )
    outcomes: list[Outcome] = []
    with pytest.raises(
        OrcacError,
        match=rf"^teacher far \(openai/x\): unreachable after 1 attempts \({teachers.UNREACHABLE_AFTER} jobs in a row\)",
    ):
        asyncio.run(run_jobs({"far": plan}, jobs_for(plan, [f"q{i}" for i in range(100)]), outcomes.append))
    assert len(outcomes) == teachers.UNREACHABLE_AFTER  # each one ended with its reason, then the run stopped


def test_an_answer_longer_than_max_tokens_allows_is_not_stored():
    with Loopback(script={"flood": ["huge:chars=100000"] * 5}) as server:
        plan = teacher(server, max_tokens=64)
        outcomes = by_key(jobs := jobs_for(plan, ["flood", "fine"]), run(plan, jobs))
        assert server.stats()["hits"]["flood"] == 1, "a hostile answer is not asked for again"
    flood = outcomes["flood"]
    assert flood.status == "failed" and flood.text is None
    assert flood.error.startswith("bad_response: the answer is 100,000 characters, more than max_tokens = 64")
    assert outcomes["fine"].status == "ok"
    assert teachers.max_answer_chars(plan) == 64 * teachers.MAX_CHARS_PER_TOKEN


def test_a_blank_answer_is_retried_as_the_module_docstring_says():
    assert "blank text" in teachers.__doc__
    script = {"blank-once": ["blank"], "always-blank": ["blank"] * 10, "cut-blank": ["length:chars=0"]}
    with Loopback(script=script) as server:
        plan = teacher(server, max_retries=2)
        outcomes = by_key(jobs := jobs_for(plan, list(script)), run(plan, jobs))
    assert (outcomes["blank-once"].status, outcomes["blank-once"].attempts) == ("ok", 2)
    assert outcomes["blank-once"].text == "blank-once"
    always = outcomes["always-blank"]
    assert always.status == "failed" and always.error == "bad_response: the answer is empty" and always.attempts == 3
    cut = outcomes["cut-blank"]  # cut off by max_tokens: an answer, rejected later as truncated
    assert (cut.status, cut.text, cut.finish_reason, cut.attempts) == ("ok", "", "length", 1)
