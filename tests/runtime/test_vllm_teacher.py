"""An open-weights teacher behind OpenAI-compatible servers (vLLM, SGLang): the documented setups.

The loopback answers as those servers do: OpenAI's `usage` and `finish_reason` ("length" for a
cut answer), and vLLM's 400 for a prompt past the context in its older top-level error body.
"""

from __future__ import annotations

import asyncio

import pytest

from orcac.runtime.teachers.calls import run_jobs
from orcac.runtime.teachers.jobs import make_job
from orcac.specs.plan import TeacherPlan
from tests.support.loopback import Loopback

pytestmark = [pytest.mark.xdist_group("loopback"), pytest.mark.usefixtures("fast_backoff")]


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "any-value")


def _run(plan, keys):
    jobs = {k: make_job(plan, [{"role": "user", "content": k}]) for k in keys}
    outcomes = []
    asyncio.run(run_jobs({plan.name: plan}, list(jobs.values()), outcomes.append))
    by_id = {o.job_id: o for o in outcomes}
    return {k: by_id[j.id] for k, j in jobs.items()}


@pytest.mark.parametrize("model", ["hosted_vllm/Qwen/Qwen2.5-7B-Instruct", "openai/Qwen/Qwen2.5-7B-Instruct"])
@pytest.mark.parametrize("transport", ["auto", "litellm"])
def test_vllm_answers_usage_finish_reasons_and_context_errors(model, transport):
    script = {"too long": ["vllm_context"], "cut": ["length:chars=4"]}
    with Loopback(script=script) as a, Loopback(script=script) as b:
        plan = TeacherPlan(
            name="qwen",
            model=model,
            api_base=(a.url, b.url),
            api_key_env="VLLM_API_KEY",
            max_retries=2,
            transport=transport,
        )
        got = _run(plan, ["fine", "cut", "too long"])
    assert got["fine"].status == "ok" and got["fine"].prompt_tokens > 0 and got["fine"].finish_reason == "stop"
    assert got["cut"].status == "ok" and got["cut"].finish_reason == "length"
    assert got["too long"].status == "failed" and got["too long"].attempts == 1  # not retried
    assert got["too long"].error == "bad_request: context window exceeded"


def test_a_vllm_error_body_reads_as_its_message_on_the_fast_path():
    with Loopback(script={"bad": ["vllm_400"]}) as server:
        plan = TeacherPlan(
            name="qwen",
            model="hosted_vllm/Qwen/Qwen2.5-7B-Instruct",
            api_base=server.url,
            api_key_env="VLLM_API_KEY",
            max_retries=0,
        )
        got = _run(plan, ["bad"])
    assert got["bad"].error == "bad_request: HTTP 400: temperature must be non-negative"
