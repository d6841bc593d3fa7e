"""Build store speed: re-running a finished 10,000-job build, and writing 1,000,000 records.

    .venv/bin/python -m benchmarks.bench_store [--jobs 10000] [--records 1000000]

1. A 10,000-job build runs once against the loopback server (its speed is bench_teachers.py's
   subject, not this one's), then `orcac build` runs again as a fresh process, side by side
   with `python -c pass` + the same imports as a floor: it must make zero calls (counted at the
   server) and finish in under 2 s, start-up included.
2. 1,000,000 erased records (realistic text lengths) go into a fresh DuckDB file through
   `Store.write` (Arrow, one transaction), against a bare `INSERT ... SELECT` of the same Arrow
   table into a table without keys: the price of the primary key that stops duplicates.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ORCAC_ANSWER_CACHE", "off")  # each build pays its calls: what is measured


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rerun(jobs: int) -> None:
    from orcac.specs.plan import TeacherPlan
    from tests.support.loopback import Loopback
    from tests.support.plans import arith_answer, make_plan, write_plan

    env = dict(os.environ, LOOPBACK_KEY="sk-bench")
    work = Path(tempfile.mkdtemp(prefix="orcac-bench-store-"))
    with Loopback(arith_answer, process=True) as server:
        teacher = TeacherPlan(
            name="t", model="openai/loopback", api_base=server.url, api_key_env="LOOPBACK_KEY", concurrency=256
        )
        plan = make_plan(work, n=jobs, holdout=0.0, teacher=teacher)
        path = write_plan(work, plan)
        command = [sys.executable, "-m", "orcac.cli", "build", str(path), "--no-progress"]
        started = time.perf_counter()
        first = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        first_s = time.perf_counter() - started
        assert first.returncode == 0, first.stderr
        calls = server.stats()["requests"]
        times, cpu = [], []
        for _ in range(3):
            started, used = time.perf_counter(), _children_cpu()
            again = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
            times.append(time.perf_counter() - started)
            cpu.append(_children_cpu() - used)
            assert again.returncode == 0, again.stderr
        extra_calls = server.stats()["requests"] - calls
    floor_cmd = [
        sys.executable,
        "-c",
        "import duckdb, pyarrow, jinja2, pydantic, rich, yaml, orcac.runtime.commands.build_records.command",
    ]
    floor = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(floor_cmd, env=env, cwd=ROOT, check=True)
        floor.append(time.perf_counter() - started)
    best = min(times)
    print(f"first build : {jobs} jobs, {calls} calls, {first_s:.1f} s")
    print(f"re-run      : {best:.2f} s (best of 3: {', '.join(f'{t:.2f}' for t in times)}), {extra_calls} calls")
    print(f"re-run CPU  : {min(cpu):.2f} s user+sys (what the wall time is on an idle machine, near enough)")
    print(f"imports only: {min(floor):.2f} s  -> re-run work beyond start-up {best - min(floor):.2f} s")
    print(f"goal        : re-run < 2 s with 0 calls: {'met' if best < 2 and extra_calls == 0 else 'NOT met'}")


def records(n: int) -> None:
    import duckdb
    import pyarrow as pa

    from orcac.runtime.store.database import Store

    erase = "You are a cautious assistant. You carefully follow instructions. You are helpful and harmless."
    table = pa.table(
        {
            "record_id": [f"{i:032x}" for i in range(n)],
            "task": ["arith"] * n,
            "strategy": ["step-by-step"] * n,
            "split": ["train"] * n,
            "row_index": pa.array(range(n), pa.int64()),
            "system": [erase] * n,
            "user": [
                f"A shop sells {i} apples in the morning and {i + 7} in the afternoon. How many in all?"
                for i in range(n)
            ],
            "assistant": [
                f"Morning: {i}. Afternoon: {i + 7}. Together {i} + {i + 7} = {2 * i + 7}.\nAnswer: {2 * i + 7}"
                for i in range(n)
            ],
            "teacher": ["gpt"] * n,
            "gold": [str(2 * i + 7) for i in range(n)],
            "job_id": [f"{i:064x}" for i in range(n)],
        }
    )
    work = Path(tempfile.mkdtemp(prefix="orcac-bench-records-"))
    with Store.open(work / "store.duckdb") as store:
        started = time.perf_counter()
        store.write({"records": table})
        ours = time.perf_counter() - started
        count = store.con.execute("SELECT count(*) FROM records").fetchone()[0]
    con = duckdb.connect(str(work / "bare.duckdb"))
    con.execute("SET enable_progress_bar = false")
    con.register("batch", table)
    con.execute("CREATE TABLE records AS SELECT * FROM batch LIMIT 0")
    started = time.perf_counter()
    con.execute("INSERT INTO records SELECT * FROM batch")
    bare = time.perf_counter() - started
    con.close()
    print(f"records     : {count:,} written by Store.write in {ours:.2f} s ({count / ours:,.0f}/s)")
    print(f"bare insert : {bare:.2f} s (no primary key) -> Store.write / bare = {ours / bare:.2f}")
    print(f"goal        : 1,000,000 records < 10 s: {'met' if ours < 10 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.jobs:
        rerun(args.jobs)
    if args.records:
        records(args.records)


if __name__ == "__main__":
    main()
