"""Teacher-call throughput: orcac's run_jobs against a raw aiohttp client and a plain litellm loop.

    .venv/bin/python -m benchmarks.bench_teachers [--jobs 10000] [--inflight 256] [--latency 0.05] [--profile]

One loopback OpenAI-compatible server (tests/support/loopback.py) runs in a subprocess with a
fixed latency per answer; in this one process, one after another against the same server:

  raw      aiohttp: one session, `inflight` concurrent POSTs, JSON parsed; the machine's ceiling
  plain    asyncio.gather over litellm.acompletion with a semaphore of `inflight`
  litellm  orcac.runtime.teachers.calls.run_jobs with `transport: litellm` (every call through
           litellm.acompletion), outcomes appended to a list
  fast     run_jobs with `transport: auto`: the OpenAI-compatible fast path (transport.py)
  fast+db  the same, every response also written to DuckDB by the build's Store/Flusher
           (timed until the last row is committed)

Prints requests/s for each, its ratio to raw and to plain, and the client process's CPU time
per request (all its threads; the server's is not counted): on a shared machine the CPU cost
moves less than the wall-clock rate. `--repeat N` runs the set N times round robin and reports
medians. `--profile` prints cProfile's top functions for the fast path instead.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("BENCH_KEY", "sk-bench-not-a-real-key")

from orcac.runtime.teachers import calls as teachers
from orcac.runtime.teachers import jobs as teacher_jobs
from orcac.runtime.teachers import litellm_setup
from orcac.specs.plan import TeacherPlan
from tests.support.loopback import Loopback


def messages(i: int) -> list[dict]:
    return [
        {"role": "system", "content": "You are a careful assistant. Think step by step."},
        {"role": "user", "content": f"What is {i} + {i + 1}? Answer with the number."},
    ]


async def bench_raw(url: str, n: int, inflight: int) -> tuple[float, float]:
    import aiohttp

    semaphore = asyncio.Semaphore(inflight)
    connector = aiohttp.TCPConnector(limit=inflight)
    headers = {"Authorization": f"Bearer {os.environ['BENCH_KEY']}"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int):
            async with semaphore:
                body = {"model": "bench", "messages": messages(i), "max_tokens": 16, "temperature": 0}
                async with session.post(f"{url}/chat/completions", json=body, headers=headers) as response:
                    data = await response.json()
                    return data["choices"][0]["message"]["content"]

        started, cpu = time.perf_counter(), time.process_time()
        answers = await asyncio.gather(*(one(i) for i in range(n)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert len(answers) == n
    return n / elapsed, cpu / n * 1e6


async def bench_plain(url: str, n: int, inflight: int) -> tuple[float, float]:
    litellm = litellm_setup.get_litellm()
    semaphore = asyncio.Semaphore(inflight)

    async def one(i: int):
        async with semaphore:
            response = await litellm.acompletion(
                model="openai/bench",
                api_base=url,
                api_key=os.environ["BENCH_KEY"],
                messages=messages(i),
                max_tokens=16,
                temperature=0,
            )
            return response.choices[0].message.content

    started, cpu = time.perf_counter(), time.process_time()
    answers = await asyncio.gather(*(one(i) for i in range(n)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert len(answers) == n
    return n / elapsed, cpu / n * 1e6


async def bench_orcac(url: str, n: int, inflight: int, sink=None, transport: str = "auto") -> tuple[float, float]:
    plan = TeacherPlan(
        name="bench",
        model="openai/bench",
        api_base=url,
        api_key_env="BENCH_KEY",
        max_tokens=16,
        concurrency=inflight,
        transport=transport,
    )
    jobs = [teacher_jobs.make_job(plan, messages(i)) for i in range(n)]
    outcomes: list = []
    on_outcome = outcomes.append if sink is None else sink(outcomes)
    started, cpu = time.perf_counter(), time.process_time()
    await teachers.run_jobs({"bench": plan}, jobs, on_outcome)
    if sink is not None:
        assert on_outcome.close() == n, "every response is in DuckDB"
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert len(outcomes) == n and all(o.status == "ok" for o in outcomes), [o.error for o in outcomes[:3]]
    return n / elapsed, cpu / n * 1e6


def duckdb_sink(inflight: int):
    """An on_outcome that also stores every response in DuckDB the way `orcac build` does:
    the build's Store and Flusher (a writer thread, one Arrow insert per `flush_every` outcomes
    or FLUSH_SECONDS: the build's bounds for this many in flight)."""
    try:
        import pyarrow as pa

        from orcac.runtime.store.database import Flusher, Store
    except ImportError:
        return None

    class Sink:
        def __init__(self, outcomes):
            self.outcomes = outcomes
            self.store = Store.open(Path(tempfile.mkdtemp(prefix="orcac-bench-")) / "bench.duckdb")
            from orcac.runtime.commands.build_records.tables import FLUSH_AT_LEAST, FLUSH_SECONDS

            every = max(FLUSH_AT_LEAST, inflight)  # build.flush_every for one teacher
            self.flusher = Flusher(self.store, self.convert, every=every, seconds=FLUSH_SECONDS)

        @staticmethod
        def convert(batch):
            columns = (
                "job_id",
                "text",
                "finish_reason",
                "prompt_tokens",
                "completion_tokens",
                "cost",
                "latency_s",
                "model",
                "attempts",
            )
            return {"responses": pa.table({c: [getattr(o, c) for o in batch] for c in columns})}

        def __call__(self, outcome):
            self.outcomes.append(outcome)
            self.flusher.add(outcome)

        def close(self) -> int:
            self.flusher.close()
            [(count,)] = self.store.rows("SELECT count(*) FROM responses")
            self.store.close()
            return count

    return Sink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--inflight", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--only", choices=["raw", "plain", "litellm", "fast", "fast+db"], action="append")
    parser.add_argument("--repeat", type=int, default=1, help="run the set this many times, report medians")
    parser.add_argument("--profile", action="store_true", help="cProfile the fast path (client side only)")
    args = parser.parse_args()
    chosen = args.only or ["raw", "plain", "litellm", "fast", "fast+db"]
    litellm_setup.get_litellm()
    n, inflight = args.jobs, args.inflight

    results: dict[str, list[tuple[float, float]]] = {}
    with Loopback(latency=args.latency, process=True) as server:
        url = server.url
        # Warm up every path once (imports, connection pools) so each is timed in steady state.
        asyncio.run(bench_raw(url, 64, 32))
        asyncio.run(bench_orcac(url, 64, 32, transport="litellm"))
        asyncio.run(bench_orcac(url, 64, 32))
        asyncio.run(bench_orcac(url, 64, 32, duckdb_sink(32)))  # pyarrow's first table costs ~0.2 s once
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            rate, _ = asyncio.run(bench_orcac(url, n, inflight))
            profiler.disable()
            print(f"fast path under cProfile: {rate:.0f} req/s")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            return
        runs = {
            "raw": ("raw aiohttp", lambda: bench_raw(url, n, inflight)),
            "plain": ("plain litellm", lambda: bench_plain(url, n, inflight)),
            "litellm": ("orcac, litellm", lambda: bench_orcac(url, n, inflight, transport="litellm")),
            "fast": ("orcac, fast", lambda: bench_orcac(url, n, inflight)),
            "fast+db": ("orcac, fast + duckdb", lambda: bench_orcac(url, n, inflight, duckdb_sink(inflight))),
        }
        for _ in range(args.repeat):
            for name in chosen:
                label, bench = runs[name]
                gc.collect()
                rate, cpu = asyncio.run(bench())
                results.setdefault(label, []).append((rate, cpu))
                print(f"{label:>22}: {rate:8.0f} req/s {cpu:6.0f} us CPU/req", flush=True)

    median = {
        label: (statistics.median(r for r, _ in runs_), statistics.median(c for _, c in runs_))
        for label, runs_ in results.items()
    }
    print(
        f"\n{n} jobs, {inflight} in flight, {args.latency * 1000:.0f} ms server latency, {os.cpu_count()} cores"
        + (f", median of {args.repeat} runs" if args.repeat > 1 else "")
    )
    raw, plain = median.get("raw aiohttp", (0, 0))[0], median.get("plain litellm", (0, 0))[0]
    print(f"{'':>22}  {'req/s':>8}  {'/ raw':>6}  {'/ plain':>7}  {'us CPU/req':>10}")
    for label, (rate, cpu) in median.items():
        over_raw = f"{rate / raw:6.2f}" if raw else "     -"
        over_plain = f"{rate / plain:7.2f}" if plain else "      -"
        print(f"{label:>22}  {rate:8.0f}  {over_raw}  {over_plain}  {cpu:10.0f}")
    print("goal: orcac, fast + duckdb / raw >= 0.5")


if __name__ == "__main__":
    main()
