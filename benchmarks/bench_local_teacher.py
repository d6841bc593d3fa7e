"""The local teacher's tokens/s: 16 requests in flight batched, against one sequence at a time.

    .venv/bin/python -m benchmarks.bench_local_teacher [--model local/smollm2-135m-instruct] [--requests 16]

Both runs go through orcac.runtime.teachers.calls.run_jobs and litellm's `local/` provider with the
same prompts and greedy decoding; only batch_size and concurrency differ (16/16 against 1/1).
tokens/s counts completion tokens the teacher returned (padding after an early stop is not
counted). Goal: batched >= 5x one at a time. About two minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from orcac.runtime.teachers import calls as teachers
from orcac.runtime.teachers import jobs as teacher_jobs
from orcac.runtime.teachers import local_model as local_provider
from orcac.specs.plan import TeacherPlan

QUESTIONS = [
    "What is 17 + 25?",
    "Name a primary colour.",
    "Is a tomato a fruit?",
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What is 9 times 7?",
    "Spell 'cat' backwards.",
    "What season comes after winter?",
    "Is ice cold or hot?",
    "What do bees make?",
    "How many days are in a week?",
    "What is 100 minus 37?",
    "Which is bigger, 3 or 8?",
    "What colour is the sky on a clear day?",
    "What is water made of?",
    "Name an animal that flies.",
]


def run(model: str, n: int, max_tokens: int, batch: int, threads: int | None) -> tuple[float, int, int]:
    plan = TeacherPlan(
        name="local", model=model, max_tokens=max_tokens, batch_size=batch, concurrency=batch, threads=threads
    )
    jobs = [
        teacher_jobs.make_job(
            plan,
            [
                {"role": "system", "content": "You are a helpful assistant. Explain your reasoning."},
                {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)] + f" (case {i})"},
            ],
        )
        for i in range(n)
    ]
    outcomes: list = []
    calls = local_provider.stats["generate_calls"]
    started = time.perf_counter()
    asyncio.run(teachers.run_jobs({"local": plan}, jobs, outcomes.append))
    elapsed = time.perf_counter() - started
    assert len(outcomes) == n and all(o.status == "ok" for o in outcomes), [o.error for o in outcomes][:3]
    tokens = sum(o.completion_tokens for o in outcomes)
    return tokens / elapsed, tokens, local_provider.stats["generate_calls"] - calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    # Load once and warm up outside the timings.
    run(args.model, 2, 4, 2, args.threads)
    batched, batched_tokens, batched_calls = run(args.model, args.requests, args.max_tokens, 16, args.threads)
    print(
        f"batched (16 in flight): {batched:7.1f} tokens/s  ({batched_tokens} tokens, {batched_calls} generate calls)",
        flush=True,
    )
    single, single_tokens, single_calls = run(args.model, args.requests, args.max_tokens, 1, args.threads)
    print(
        f"one at a time:          {single:7.1f} tokens/s  ({single_tokens} tokens, {single_calls} generate calls)",
        flush=True,
    )
    print(f"\n{args.model}, {args.requests} requests, max_tokens {args.max_tokens}, {args.threads} threads")
    print(f"batched / one at a time: {batched / single:.2f}x  (goal >= 5x)")


if __name__ == "__main__":
    main()
