"""The in-process local/ teacher on a tiny random Llama: batching, and batched == unbatched."""

from __future__ import annotations

import asyncio

import pytest

from orcac.errors import OrcacError
from orcac.runtime.teachers import calls as teachers
from orcac.runtime.teachers import litellm_setup
from orcac.runtime.teachers import local_model as local_provider
from orcac.runtime.teachers.calls import run_jobs
from orcac.runtime.teachers.jobs import Outcome, make_job
from orcac.specs.plan import TeacherPlan
from tests.support.clock import Through

pytestmark = pytest.mark.xdist_group("local_teacher")

PROMPTS = [f"Question {i}: " + "how many apples are left? " * (1 + i % 4) for i in range(12)]


def plan_for(model_dir: str, **overrides) -> TeacherPlan:
    fields = dict(name="local", model=f"local/{model_dir}", max_tokens=10, batch_size=8, concurrency=16, threads=2)
    fields.update(overrides)
    return TeacherPlan(**fields)


def messages(prompt: str) -> list[dict]:
    return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": prompt}]


def run(plan: TeacherPlan, prompts) -> dict[str, Outcome]:
    jobs = [make_job(plan, messages(p)) for p in prompts]
    outcomes: list[Outcome] = []
    asyncio.run(run_jobs({plan.name: plan}, jobs, outcomes.append))
    assert sorted(o.job_id for o in outcomes) == sorted(j.id for j in jobs)
    prompt_of = {j.id: j.messages[-1]["content"] for j in jobs}
    return {prompt_of[o.job_id]: o for o in outcomes}


def test_in_flight_requests_are_batched_and_match_one_at_a_time(tiny):
    before = dict(local_provider.stats)
    batched = run(plan_for(tiny), PROMPTS)
    calls = local_provider.stats["generate_calls"] - before["generate_calls"]
    assert local_provider.stats["sequences"] - before["sequences"] == len(PROMPTS)
    assert calls < len(PROMPTS) / 2, f"{calls} generate calls for {len(PROMPTS)} concurrent requests"

    settings = local_provider.LocalSettings(model=str(tiny), batch_size=1)
    for prompt in PROMPTS:
        [(text, finish, prompt_tokens, completion_tokens)] = local_provider.generate_batch(
            settings, [(messages(prompt), 10)], (0.0, None)
        )
        outcome = batched[prompt]
        assert outcome.status == "ok" and outcome.cost == 0.0 and outcome.attempts == 1
        assert (outcome.text, outcome.finish_reason) == (text, finish), prompt
        assert (outcome.prompt_tokens, outcome.completion_tokens) == (prompt_tokens, completion_tokens)


def test_a_local_request_waiting_for_its_batch_is_not_timed_out(tiny, monkeypatch):
    # One at a time, 12 in flight: each request waits for the generates ahead of it, far longer
    # than the 1 ms timeout. The deadline each request is given is recorded: a network call gets
    # timeout_s plus a 1 s grace, a local one none at all (so however long it waits, it is answered).
    deadlines = []

    def timeout(delay):
        deadlines.append(delay)
        return asyncio.timeout(delay)

    monkeypatch.setattr(teachers, "asyncio", Through(asyncio, timeout=timeout))
    plan = plan_for(tiny, batch_size=1, max_tokens=16, timeout_s=0.001, max_retries=0)
    outcomes = run(plan, PROMPTS)
    assert all(o.status == "ok" and o.attempts == 1 for o in outcomes.values())
    assert deadlines == [None] * len(PROMPTS)


def test_left_padding_does_not_change_greedy_tokens(tiny):
    settings = local_provider.LocalSettings(model=str(tiny))
    short, long = messages("hi"), messages("a much longer question " * 6)
    together = local_provider.generate_batch(settings, [(short, 8), (long, 8)], (0.0, None))
    alone = [local_provider.generate_batch(settings, [(m, 8)], (0.0, None))[0] for m in (short, long)]
    assert together == alone
    assert together[0][2] < together[1][2]  # prompt token counts exclude the padding


def test_finish_reason_and_usage(tiny):
    from orcac.runtime.models.generation import decode

    lm, tokenizer = local_provider.load(local_provider.LocalSettings(model=str(tiny)))
    prompt = tokenizer(
        tokenizer.apply_chat_template(messages("x"), add_generation_prompt=True, tokenize=False),
        add_special_tokens=False,
    )["input_ids"]
    [free] = decode(lm, [prompt], max_new_tokens=6, eos=set(), pad=0)
    assert (free.finish_reason, free.completion_tokens, len(free.tokens)) == ("length", 6, 6)
    third = free.tokens[2]
    first = free.tokens.index(third)  # an end-of-sequence token at the first place that token stands
    [stopped] = decode(lm, [prompt], max_new_tokens=6, eos={third}, pad=0)
    assert stopped.finish_reason == "stop" and stopped.tokens == free.tokens[:first]
    assert stopped.completion_tokens == first + 1  # the tokens and the end-of-sequence token


def test_through_litellm_directly(tiny):
    plan = plan_for(tiny, name="direct")
    local_provider.register(plan)
    litellm = litellm_setup.get_litellm()

    async def go():
        return await asyncio.gather(
            *(
                litellm.acompletion(model=plan.model, messages=messages(p), max_tokens=5, temperature=0)
                for p in PROMPTS[:4]
            )
        )

    responses = asyncio.run(go())
    for response in responses:
        assert response.choices[0].finish_reason in ("stop", "length")
        assert response.usage.completion_tokens <= 5 + 1 and response.usage.prompt_tokens > 0
        assert response.model == plan.model


def test_sampling_with_temperature_runs(tiny):
    outcomes = run(plan_for(tiny, temperature=0.8, top_p=0.9, seed=3), PROMPTS[:3])
    assert all(o.status == "ok" and o.completion_tokens > 0 for o in outcomes.values())


def test_a_sampled_answer_depends_on_its_seed_not_on_its_batch(tiny):
    """Each row draws from its own generator: the same seed gives the same answer alone or in a
    batch with others, and another seed (almost surely) another answer."""
    settings = local_provider.LocalSettings(model=str(tiny), batch_size=8)
    sampling = (1.0, None)
    alone = local_provider.generate_batch(settings, [(messages(PROMPTS[0]), 12)], sampling, [11])[0]
    crowd = [(messages(p), 12) for p in PROMPTS[:5]]
    together = local_provider.generate_batch(settings, crowd, sampling, [11, 1, 2, 3, 4])[0]
    assert together == alone
    others = {
        local_provider.generate_batch(settings, [(messages(PROMPTS[0]), 12)], sampling, [s])[0][0] for s in range(5)
    }
    assert len(others) > 1


def test_unknown_local_model_stops_with_a_hint(tmp_path):
    plan = TeacherPlan(name="ghost", model="local/no-such-model-anywhere")
    with pytest.raises(OrcacError) as caught:
        run(plan, ["x"])
    assert caught.value.hint
