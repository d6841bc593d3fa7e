"""The fast HTTP path and the litellm path, side by side: same wire body, same outcomes, same errors.

Every scenario runs against a fresh loopback server per transport with the same script, and the
outcomes are compared field by field (latency and cost aside: latency is a measurement).
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from orcac.errors import OrcacError
from orcac.runtime.teachers import calls as teachers
from orcac.runtime.teachers import fast_path as transport
from orcac.runtime.teachers import litellm_setup
from orcac.runtime.teachers.calls import run_jobs
from orcac.runtime.teachers.jobs import Outcome, make_job
from orcac.specs.plan import TeacherPlan
from tests.support.loopback import Loopback

KEY = "sk-test-5e3cr3t-k3y-0123456789"
TRANSPORTS = ("auto", "litellm")

pytestmark = [pytest.mark.xdist_group("loopback"), pytest.mark.usefixtures("fast_backoff")]


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("LOOPBACK_KEY", KEY)


def teacher(url: str, kind: str, **overrides) -> TeacherPlan:
    fields = dict(
        name="gpt",
        model="openai/loopback",
        api_base=url,
        api_key_env="LOOPBACK_KEY",
        timeout_s=5.0,
        max_retries=2,
        concurrency=8,
        transport=kind,
    )
    fields.update(overrides)
    return TeacherPlan(**fields)


def run(plan: TeacherPlan, keys: list[str], system: str = "be brief") -> dict[str, Outcome]:
    jobs = [make_job(plan, [{"role": "system", "content": system}, {"role": "user", "content": k}]) for k in keys]
    outcomes: list[Outcome] = []
    asyncio.run(run_jobs({plan.name: plan}, jobs, outcomes.append))
    assert sorted(o.job_id for o in outcomes) == sorted(j.id for j in jobs), "each job reported exactly once"
    content = {j.id: j.messages[-1]["content"] for j in jobs}
    return {content[o.job_id]: o for o in outcomes}


def essence(outcome: Outcome) -> tuple:
    reason = outcome.error.split(":")[0] if outcome.error else None
    return (
        outcome.status,
        reason,
        outcome.text,
        outcome.finish_reason,
        outcome.prompt_tokens,
        outcome.completion_tokens,
        outcome.model,
        outcome.attempts,
    )


def both(keys: list[str], server_options: dict, **overrides) -> dict[str, dict[str, Outcome]]:
    results = {}
    for kind in TRANSPORTS:
        with Loopback(**server_options) as server:
            plan = teacher(server.url, kind, **overrides)
            if kind == "litellm":
                run(plan, ["warm-up"])  # litellm's first call in a process is slow (lazy imports)
            results[kind] = run(plan, keys)
    return results


def test_the_auto_choice():
    litellm = litellm_setup.get_litellm()

    def route(**fields):
        return transport.resolve(TeacherPlan(name="t", **fields), litellm)

    fast = route(model="openai/loopback", api_base="http://127.0.0.1:9/v1", api_key_env="K", seed=1)
    assert isinstance(fast, transport.Route) and fast.url == "http://127.0.0.1:9/v1/chat/completions"
    assert fast.body == {"model": "loopback", "temperature": 0.0, "max_tokens": 512, "seed": 1}
    # litellm's parameter mapping is applied once: gpt-5 takes max_completion_tokens.
    gpt5 = route(model="openai/gpt-5", api_key_env="K", max_tokens=7)
    assert isinstance(gpt5, transport.Route) and gpt5.body == {"model": "gpt-5", "max_completion_tokens": 7}
    assert gpt5.url == "https://api.openai.com/v1/chat/completions"
    vllm = route(model="hosted_vllm/m", api_base="http://127.0.0.1:9/v1", api_key_env="K")
    assert isinstance(vllm, transport.Route) and vllm.body["model"] == "m"
    for fields in (
        dict(model="local/smollm2-135m-instruct"),
        dict(model="anthropic/claude-3-haiku-20240307", api_key_env="K"),
        dict(model="bedrock/anthropic.claude-3-haiku-20240307-v1:0", api_key_env="K"),
        dict(model="groq/llama3-8b-8192", api_key_env="K"),  # litellm rewrites groq's responses
        dict(model="openai/o3-mini", api_key_env="K"),  # and o-series messages
        dict(model="openai/loopback", api_base="http://127.0.0.1:9/v1", api_key_env="K", transport="litellm"),
        dict(model="nosuchprovider-xyz/model", api_key_env="K"),
    ):
        assert isinstance(route(**fields), str), fields


def test_the_wire_body_is_the_one_litellm_sends():
    def params_of(body: dict) -> str:
        return json.dumps({k: v for k, v in body.items() if k != "messages"}, sort_keys=True)

    options = dict(responder=params_of)
    results = both(
        ["q"],
        options,
        seed=3,
        top_p=0.5,
        max_tokens=9,
        params={"stop": "x", "presence_penalty": 0.1, "repetition_penalty": 1.1},
    )
    fast, slow = results["auto"]["q"], results["litellm"]["q"]
    sent = json.loads(fast.text)
    assert (
        sent["stop"] == "x" and sent["model"] == "loopback" and sent["repetition_penalty"] == 1.1
    )  # a non-OpenAI one too
    assert fast.text == slow.text


@pytest.mark.slow
def test_every_fault_ends_the_same_way_on_both_paths():
    # The scenarios of test_teachers.py: recover after one fault, fail after every attempt, or end at once.
    once = {
        "429": ["429"],
        "500": ["500", "503"],
        "malformed": ["malformed"],
        "empty": ["empty"],
        "hang": ["hang:s=3"],
        "drop": ["drop"],
    }
    script = {
        "plain": [],
        "truncated": ["length:chars=4"],
        "bad-request": ["400"],
        **{f"after-{name}": faults for name, faults in once.items()},
        **{f"always-{name}": [faults[0]] * 10 for name, faults in once.items() if name != "drop"},
    }
    results = both(list(script), dict(script=script), timeout_s=0.8)
    fast, slow = results["auto"], results["litellm"]
    for key in script:
        assert essence(fast[key]) == essence(slow[key]), key
        assert KEY not in repr(fast[key])
    assert essence(fast["truncated"])[:4] == ("ok", None, "trun", "length")
    assert essence(fast["always-hang"])[:2] == ("failed", "timeout")
    assert essence(fast["bad-request"])[:2] == ("failed", "bad_request") and "***" in fast["bad-request"].error


def test_retry_after_is_honoured_on_both_paths(clock, monkeypatch):
    clock.install(monkeypatch, teachers)  # the waits are asked of a fake clock: none is slept
    for kind in TRANSPORTS:
        with Loopback(
            script={"seconds": ["429:retry_after=1.2"], "date": ["429:retry_date=2"]}, clock=clock.monotonic
        ) as server:
            plan = teacher(server.url, kind, concurrency=1)
            for key in ("seconds", "date"):
                before = len(clock.sleeps)
                [outcome] = run(plan, [key]).values()
                assert outcome.status == "ok" and outcome.attempts == 2, kind
                [wait] = clock.sleeps[before:]
                # Retry-After: 1.2; an HTTP-date, in whole seconds, is between 1 and 2 s ahead
                assert (wait == 1.2) if key == "seconds" else (0.95 <= wait <= 2.0), (kind, key, wait)
            log = server.stats()["log"]
        assert log[1][0] - log[0][0] == pytest.approx(1.2, abs=1e-3), kind


@pytest.mark.parametrize(
    "fault, prefix",
    [
        ("401", "authentication failed (401)"),
        ("403", "permission denied (403)"),
        ("404", "unknown model or endpoint (404)"),
    ],
)
def test_fatal_errors_read_the_same(fault, prefix):
    messages = {}
    for kind in TRANSPORTS:
        with Loopback(faults=fault) as server:
            plan = teacher(server.url, kind)
            with pytest.raises(OrcacError) as caught:
                run(plan, ["x"])
        error = caught.value
        assert error.message.startswith(f"teacher gpt (openai/loopback): {prefix}"), (kind, error.message)
        assert "\n" not in error.message and KEY not in error.message
        messages[kind] = (error.message.split(":")[1], error.hint)
    assert messages["auto"] == messages["litellm"]


def test_unreachable_and_missing_key_read_the_same(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for kind in TRANSPORTS:
        plan = teacher(f"http://127.0.0.1:{port}/v1", kind, max_retries=1)
        with pytest.raises(OrcacError, match=r"^teacher gpt \(openai/loopback\): unreachable after 2 attempts"):
            run(plan, ["x"])
    monkeypatch.delenv("LOOPBACK_KEY")
    for kind in TRANSPORTS:
        with Loopback() as server:
            plan = teacher(server.url, kind)
            with pytest.raises(OrcacError, match=r"LOOPBACK_KEY is not set"):
                run(plan, ["x"])
            assert server.stats()["requests"] == 0


def test_context_window_400_is_a_bad_request_not_a_retry():
    # The fast path has no litellm exception class to go by: the provider's wording decides.
    error = transport.HTTPStatusError(400, "This model's maximum context length is 8192 tokens", {})
    kind = teachers._classify(error, TeacherPlan(name="t", model="openai/m"))
    assert isinstance(kind, teachers._JobFailed) and kind.detail == "context window exceeded"
    retry = teachers._classify(
        transport.HTTPStatusError(429, "slow down", {"Retry-After": "3"}), TeacherPlan(name="t", model="openai/m")
    )
    assert isinstance(retry, teachers._Retryable) and retry.retry_after == 3.0


def test_a_key_the_provider_finds_itself_is_sent_and_scrubbed(monkeypatch):
    # No api_key_env: litellm would read OPENAI_API_KEY for an openai/ model; so does the fast path.
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    results = both(["x"], dict(faults="400"), api_key_env=None)
    fast, slow = results["auto"]["x"], results["litellm"]["x"]
    assert essence(fast) == essence(slow) and essence(fast)[:2] == ("failed", "bad_request")
    assert KEY not in fast.error and "***" in fast.error


def test_proxies_from_the_environment_are_resolved_once_per_route(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    litellm = litellm_setup.get_litellm()
    far = transport.resolve(TeacherPlan(name="t", model="openai/gpt-4o-mini", api_key_env="K"), litellm)
    near = transport.resolve(
        TeacherPlan(name="t", model="openai/m", api_base="http://127.0.0.1:9/v1", api_key_env="K"), litellm
    )
    assert far.proxy == "http://proxy.example:3128" and near.proxy is None


def test_no_key_anywhere_stops_the_run_in_one_line(monkeypatch):
    # Neither api_key_env nor OPENAI_API_KEY: the fast path has no key to send and leaves the
    # teacher to litellm, whose OpenAI SDK refuses before sending; one line, not a failure per job.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with Loopback() as server:
        plan = teacher(server.url, "auto", api_key_env=None)
        assert isinstance(transport.resolve(plan, litellm_setup.get_litellm()), str)
        with pytest.raises(OrcacError, match=r"^teacher gpt \(openai/loopback\): no API key") as caught:
            run(plan, ["x"])
        assert 'api_key = env("NAME")' in caught.value.hint and server.stats()["requests"] == 0
        assert "api_key_env" not in caught.value.hint  # the language's key, not the plan's field
