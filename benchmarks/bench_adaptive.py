"""Adaptive vs fixed concurrency against a server with a capacity the client is not told.

    .venv/bin/python -m benchmarks.bench_adaptive [--jobs 3000] [--capacity 16] [--concurrency 64] [--latency 0.02] [--repeat 2]

One loopback server (tests/support/loopback.py) in a subprocess answers at most `capacity`
requests at once, each after `latency` seconds, and rejects every request beyond that with an
immediate 429 (no Retry-After), as an overloaded provider does. The same `jobs` are run through
orcac.runtime.teachers.calls.run_jobs with `concurrency` as the teacher's setting, once with
`adaptive = false` (always `concurrency` in flight) and once with `adaptive = true` (AIMD within
[1, concurrency]), alternately `repeat` times, each against a fresh server, with the default
backoff and retry settings. Prints per mode: wall time, goodput (answered jobs/s), requests
sent, wasted requests (429s: sent and rejected), failed jobs, and the most in flight at the
server; medians over the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("BENCH_KEY", "sk-bench-not-a-real-key")

from orcac.runtime.teachers.calls import run_jobs
from orcac.runtime.teachers.jobs import make_job
from orcac.specs.plan import TeacherPlan
from tests.support.loopback import Loopback


def one(mode: str, args) -> dict:
    with Loopback(latency=args.latency, capacity=args.capacity, process=True) as server:
        plan = TeacherPlan(
            name="t",
            model="openai/bench",
            api_base=server.url,
            api_key_env="BENCH_KEY",
            concurrency=args.concurrency,
            adaptive=mode == "adaptive",
            timeout_s=30.0,
        )
        jobs = [make_job(plan, [{"role": "user", "content": f"question {i}"}]) for i in range(args.jobs)]
        outcomes = []
        started = time.perf_counter()
        asyncio.run(run_jobs({"t": plan}, jobs, outcomes.append))
        wall = time.perf_counter() - started
        stats = server.stats()
    ok = sum(o.status == "ok" for o in outcomes)
    return {
        "wall": wall,
        "goodput": ok / wall,
        "sent": stats["requests"],
        "wasted": stats["rejected"],
        "failed": len(outcomes) - ok,
        "peak": stats["peak"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--capacity", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"fixed": [], "adaptive": []}
    for _ in range(args.repeat):
        for mode in results:
            results[mode].append(one(mode, args))
    ideal = args.capacity / args.latency
    print(
        f"{args.jobs} jobs, hidden capacity {args.capacity} in flight, {args.latency * 1000:.0f} ms per answer "
        f"(at most {ideal:,.0f} answers/s), concurrency = {args.concurrency}; medians of {args.repeat}"
    )
    print(f"{'mode':<9} {'wall s':>7} {'goodput/s':>10} {'sent':>7} {'wasted (429)':>13} {'failed':>7} {'peak':>5}")
    for mode, runs in results.items():
        m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{mode:<9} {m['wall']:>7.2f} {m['goodput']:>10,.0f} {m['sent']:>7,.0f} {m['wasted']:>13,.0f} "
            f"{m['failed']:>7,.0f} {m['peak']:>5.0f}"
        )


if __name__ == "__main__":
    main()
