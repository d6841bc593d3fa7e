"""The local teacher's stream: requests that arrive while it decodes take the places of finished rows."""

from __future__ import annotations

import asyncio

import pytest

from orcac.runtime.teachers import local_model as local_provider
from orcac.runtime.teachers.calls import run_jobs
from orcac.runtime.teachers.jobs import Outcome, make_job
from orcac.specs.plan import TeacherPlan

pytestmark = pytest.mark.xdist_group("local_teacher")

PROMPTS = [f"Question {i}: " + "how many pears are left? " * (1 + i % 3) for i in range(8)]


def messages(prompt: str) -> list[dict]:
    return [{"role": "system", "content": "Answer briefly, and show your steps."}, {"role": "user", "content": prompt}]


def test_requests_arriving_mid_stream_join_it_and_get_their_own_answers(tiny):
    # concurrency 3 > batch_size 2: each finished answer lets a new request in while the
    # stream runs; budgets differ so rows finish at different steps.
    plan = TeacherPlan(name="local", model=f"local/{tiny}", max_tokens=9, batch_size=2, concurrency=3, threads=2)
    budgets = [3 + i % 5 for i in range(len(PROMPTS))]
    jobs = [make_job(plan, messages(p), {"max_tokens": n}) for p, n in zip(PROMPTS, budgets)]
    before = dict(local_provider.stats)
    outcomes: list[Outcome] = []
    asyncio.run(run_jobs({plan.name: plan}, jobs, outcomes.append))
    streams = local_provider.stats["generate_calls"] - before["generate_calls"]
    assert local_provider.stats["sequences"] - before["sequences"] == len(PROMPTS)
    assert streams < len(PROMPTS) / 2, f"{streams} streams for {len(PROMPTS)} requests: the batch was not refilled"
    settings = local_provider.LocalSettings(model=str(tiny), batch_size=1)
    by_id = {o.job_id: o for o in outcomes}
    for job, budget in zip(jobs, budgets):
        [(text, finish, _, completion_tokens)] = local_provider.generate_batch(
            settings, [(list(job.messages), budget)], (0.0, None)
        )
        outcome = by_id[job.id]
        assert (outcome.status, outcome.text, outcome.finish_reason) == ("ok", text, finish)
        assert outcome.completion_tokens == completion_tokens


def test_a_rows_samples_put_its_prompt_through_the_model_once(tiny):
    """A task with `samples = 3` asks the local teacher the same prompt three times, each with its
    own seed: the prompt's tail goes through the model once (the repeats start from the keys and
    values it left in the batch), and each sample is the answer its seed gives alone."""
    plan = TeacherPlan(name="local", model=f"local/{tiny}", max_tokens=5, batch_size=4, concurrency=6, threads=2)
    questions = [f"Question {i}: " + "a farmer counts the pears left in the basket after lunch. " * 4 for i in range(2)]
    jobs = [
        make_job(plan, messages(q), {"temperature": 1.0, "seed": 100 + 10 * i + sample})
        for i, q in enumerate(questions)
        for sample in range(3)
    ]
    settings = local_provider.LocalSettings(model=str(tiny), batch_size=1)
    lm, tokenizer = local_provider.load(settings)
    seen: list[int] = []
    hook = lm.model.embed_tokens.register_forward_hook(lambda module, args, out: seen.append(args[0].numel()))
    outcomes: list[Outcome] = []
    try:
        asyncio.run(run_jobs({plan.name: plan}, jobs, outcomes.append))
    finally:
        hook.remove()
    prompts = [
        tokenizer(tokenizer.apply_chat_template(messages(q), add_generation_prompt=True, tokenize=False))["input_ids"]
        for q in questions
    ]
    every_sample_prefilled = 3 * sum(map(len, prompts))  # what the stream did before it shared tails
    assert sum(seen) < every_sample_prefilled / 2, seen
    by_id = {o.job_id: o for o in outcomes}
    for job in jobs:
        [(text, _, _, _)] = local_provider.generate_batch(
            settings, [(list(job.messages), 5)], (1.0, None), [dict(job.options)["seed"]]
        )
        assert (by_id[job.id].status, by_id[job.id].text) == ("ok", text)
    assert len({by_id[job.id].text for job in jobs}) > 2  # sampled apart, not one answer copied
