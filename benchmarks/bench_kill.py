"""What a kill -9 costs: teacher calls paid again per kill of `orcac build`, at 8 and 64 in flight.

    .venv/bin/python -m benchmarks.bench_kill [--jobs 2000] [--kills 8] [--inflight 8 --inflight 64]
                                              [--flush-every N --flush-seconds S]

For each concurrency, a build of `--jobs` jobs against the loopback server (50 ms a request,
in its own process) is killed with SIGKILL `--kills` times at random points (after a random
number of new requests), then run to the end. Every job is answered once in a clean build, so
the calls counted at the server beyond `--jobs` are the calls paid again: divided by the kills,
what one kill costs. In flight at any moment: the teacher's concurrency; a kill cannot cost
less than what was in flight, since those answers had not arrived. `--flush-every` and
`--flush-seconds` replace the build's bounds (orcac.runtime.commands.build_records.tables.flush_every, FLUSH_SECONDS),
to measure other settings against the same load.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ORCAC_ANSWER_CACHE", "off")  # each build pays its calls: what is measured

LAUNCH = """
import sys
from orcac.runtime.commands.build_records import command as build
every, seconds = int(sys.argv[1]), float(sys.argv[2])
if every:
    build.FLUSH_EVERY = every
    build.flush_every = lambda plan: every
if seconds:
    build.FLUSH_SECONDS = seconds
from orcac.cli import main
sys.exit(main(sys.argv[3:]))
"""


def one(jobs: int, inflight: int, kills: int, every: int, seconds: float, seed: int) -> tuple[int, int, float]:
    """(kills made, calls paid beyond `jobs`, seconds) for one concurrency."""
    from orcac.specs.plan import TeacherPlan
    from tests.support.loopback import Loopback
    from tests.support.plans import arith_answer, make_plan, write_plan

    rng = random.Random(seed)
    env = dict(os.environ, LOOPBACK_KEY="sk-bench-kill")
    work = Path(tempfile.mkdtemp(prefix="orcac-bench-kill-"))
    with Loopback(arith_answer, latency=0.05, process=True) as server:
        teacher = TeacherPlan(
            name="t", model="openai/loopback", api_base=server.url, api_key_env="LOOPBACK_KEY", concurrency=inflight
        )
        plan = make_plan(work, n=jobs, holdout=0.0, teacher=teacher)
        path = write_plan(work, plan)
        command = [sys.executable, "-c", LAUNCH, str(every), str(seconds), "build", str(path), "--no-progress"]
        started = time.perf_counter()
        made = 0
        seen = 0
        for _ in range(kills):
            proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            target = seen + rng.randint(2 * inflight, max(2 * inflight + 1, jobs // (kills + 1)))
            while server.stats()["requests"] < target and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                made += 1
            proc.wait()
            seen = server.stats()["requests"]
        last = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        assert last.returncode == 0, last.stderr
        total = server.stats()["requests"]
    return made, total - jobs, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--inflight", type=int, action="append")
    parser.add_argument("--flush-every", type=int, default=0, help="answers per write (default: the build's)")
    parser.add_argument("--flush-seconds", type=float, default=0.0, help="seconds per write (default: the build's)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    settings = (
        "the build's"
        if not (args.flush_every or args.flush_seconds)
        else (f"every {args.flush_every or 'default'} answers / {args.flush_seconds or 'default'} s")
    )
    print(f"flush bounds: {settings}")
    for inflight in args.inflight or [8, 64]:
        made, extra, seconds = one(args.jobs, inflight, args.kills, args.flush_every, args.flush_seconds, args.seed)
        per_kill = extra / made if made else float("nan")
        print(
            f"in flight {inflight:>3}: {args.jobs} jobs, {made} kills, {args.jobs + extra} calls paid, "
            f"{extra} again: {per_kill:.1f} per kill ({per_kill / inflight:.2f} x in flight), {seconds:.0f} s"
        )


if __name__ == "__main__":
    main()
