"""The batch path's own cost per 10,000 jobs: client CPU and database writes, the server answering at once.

    .venv/bin/python -m benchmarks.bench_batch [--jobs 10000] [--repeat 2]

The loopback files and batches API (tests/support/batch_server.py) runs in a subprocess and
ends each batch on the fourth retrieve (validating, in_progress, finalizing, completed) with
every line answered; the poll interval is 10 ms, so the wall time is the client's own work.
A real `orcac build` (run_build, in this process) of a plan with `jobs` train rows and a
`mode = batch` teacher: examples, job rows, JSONL lines, upload, batch, polls, download, the
lines stored, every answer checked and recorded. Prints wall, the client's CPU time (all its
threads), the time inside Store.write/execute (the DuckDB writes), and the same per 10,000 jobs;
then the same build online against the chat loopback for comparison (litellm and pyarrow are
imported before anything is timed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ORCAC_ANSWER_CACHE", "off")  # each build pays its calls: what is measured
os.environ.setdefault("BENCH_KEY", "sk-bench-not-a-real-key")

from orcac.runtime.commands.build_records import command as build  # noqa: E402
from orcac.runtime.store import database as store  # noqa: E402
from orcac.runtime.teachers import batch as batch_api  # noqa: E402
from orcac.specs.plan import TeacherPlan  # noqa: E402
from tests.support.loopback import Loopback  # noqa: E402
from tests.support.plans import make_plan  # noqa: E402


class _Timed:
    """Seconds spent in Store.write and Store.execute, from any thread."""

    METHODS = ("write", "execute")

    def __init__(self):
        self.seconds = 0.0
        self.originals = {name: getattr(store.Store, name) for name in self.METHODS}
        for name, original in self.originals.items():
            setattr(store.Store, name, self._timing(original))

    def _timing(self, original):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed

    def restore(self):
        for name, original in self.originals.items():
            setattr(store.Store, name, original)


def run(n: int, url: str, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher = TeacherPlan(
            name="t", model="openai/bench", api_base=url, api_key_env="BENCH_KEY", mode=mode, concurrency=256
        )
        plan = make_plan(root, n=n, holdout=0.0, teacher=teacher)
        work = build.plan_work(plan, root)
        timed = _Timed()
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            with store.Store.open(root / "bench.duckdb") as db:
                result = build.run_build(plan, root, db, work, progress=False)
        finally:
            timed.restore()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert sum(t.accepted + sum(t.rejected.values()) for t in result.tallies.values()) == n
    return {"wall": wall, "cpu": cpu, "db": timed.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    batch_api.POLL_SECONDS = 0.01
    from orcac.runtime.teachers.litellm_setup import get_litellm

    get_litellm()  # imported once before anything is timed: both paths need it, neither should pay it
    import litellm.litellm_core_utils.core_helpers  # noqa: F401
    import pyarrow  # noqa: F401

    server = subprocess.Popen(  # `-c` from the repository root: tests.support imports as it does here
        [sys.executable, "-c", "from tests.support.batch_server import serve_until_stdin_closes as s; s()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    port = int(server.stdout.readline())
    results: dict[str, list[dict]] = {"batch": [], "online": []}
    try:
        with Loopback(process=True) as online:
            for _ in range(args.repeat):
                results["batch"].append(run(args.jobs, f"http://127.0.0.1:{port}/v1", "batch"))
                results["online"].append(run(args.jobs, online.url, "online"))
    finally:
        server.stdin.close()
        server.wait(30)
    scale = 10_000 / args.jobs
    print(f"{args.jobs} jobs, `orcac build` in-process, medians of {args.repeat}; per 10,000 jobs in brackets")
    print(f"{'path':<7} {'wall s':>14} {'client CPU s':>16} {'DuckDB writes s':>17}")
    for path, runs in results.items():
        m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{path:<7} {m['wall']:>6.2f} ({m['wall'] * scale:>5.2f}) {m['cpu']:>8.2f} ({m['cpu'] * scale:>5.2f}) "
            f"{m['db']:>9.2f} ({m['db'] * scale:>5.2f})"
        )


if __name__ == "__main__":
    main()
