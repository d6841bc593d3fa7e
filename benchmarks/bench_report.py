"""`orcac report` on a large build: the time to write the page and the time a browser takes to open it.

    .venv/bin/python -m benchmarks.bench_report [--records 100000] [--tasks 4]

A build database with `--records` accepted answers (plus one rejected for every nine, and a few
failed jobs) across `--tasks` tasks is written straight through the build's Store (the real
schema, realistic text lengths: a 300-character strategy instruction, a 200-character prompt,
a 400-character answer). Then, side by side:

  report   `orcac report` as a fresh process (start-up included), wall time
  open     headless Chromium loading the page from disk until its script has rendered the
           records (--dump-dom returns after the load event), wall time, against the same
           browser opening an empty page: the ratio is what the report itself costs to open

Goal: a 100,000-record report opens in a few seconds. The page carries every count but only a
sample of the answers (100 per task and verdict), so its size does not grow with the build.
"""

from __future__ import annotations

import argparse
import json
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

from tests.support import browser  # noqa: E402
from tests.support.plans import ERASE, make_plan, write_plan  # noqa: E402

STRATEGY = "You are a careful tutor. Think through the problem step by step, number each step. " * 4


def synthesize(root: Path, records: int, tasks: int) -> Path:
    """A plan and a build database holding `records` accepted answers, written as a build would."""
    import pyarrow as pa

    from orcac.runtime.store.database import Store

    per_task = records // tasks
    rows = [
        {"q": f"Question {i}: " + "what follows from the premises above? " * 5, "a": str(i)} for i in range(per_task)
    ]
    names = tuple(f"task{t}" for t in range(tasks))
    plan = make_plan(root, rows, tasks=names, holdout=0.0, strategy_text=STRATEGY)
    path = write_plan(root, plan)
    database = root / ".orca" / "spec.duckdb"
    total = per_task * tasks + per_task * tasks // 9
    columns: dict[str, dict[str, list]] = {name: {} for name in ("examples", "jobs", "responses", "checks", "records")}

    def add(table: str, **values) -> None:
        for key, value in values.items():
            columns[table].setdefault(key, []).append(value)

    n = 0
    for task in names:
        for i in range(per_task + per_task // 9):
            row_index = i
            job_id = f"{task}-{i:08d}"
            accepted = i < per_task
            prompt = rows[i % per_task]["q"]
            answer = f"Step 1. Read it.\nStep 2. Think. {'More reasoning. ' * 20}\nAnswer: {i}"
            if i < per_task:
                add(
                    "examples",
                    task=task,
                    row_index=row_index,
                    split="train",
                    probe=False,
                    prompt=prompt,
                    gold=str(i),
                    source_sha256="0" * 64,
                )
            failed = i % 997 == 0
            add(
                "jobs",
                job_id=job_id,
                task=task,
                strategy="step",
                row_index=row_index,
                teacher="t",
                model="openai/loopback",
                messages=json.dumps([{"role": "system", "content": STRATEGY}, {"role": "user", "content": prompt}]),
                status="failed" if failed else "ok",
                attempts=3 if failed else 1,
                error="timeout: no answer in 30 s" if failed else None,
            )
            if failed:
                continue
            add(
                "responses",
                job_id=job_id,
                text=answer,
                finish_reason="stop",
                prompt_tokens=130,
                completion_tokens=110,
                cost=0.0001,
                latency_s=0.8,
                model="loopback",
                attempts=1,
            )
            add(
                "checks",
                item_id=job_id,
                job_id=job_id,
                task=task,
                strategy="step",
                row_index=row_index,
                accepted=accepted,
                reason="accepted" if accepted else "contains",
            )
            if accepted:
                add(
                    "records",
                    record_id=job_id,
                    task=task,
                    strategy="step",
                    split="train",
                    row_index=row_index,
                    system=ERASE,
                    user=prompt,
                    assistant=answer,
                    teacher="t",
                    gold=str(i),
                    job_id=job_id,
                )
                n += 1
    with Store.open(database) as store:
        store.write({name: pa.table(values) for name, values in columns.items()})
    print(f"database: {n:,} records, {total:,} jobs, {database.stat().st_size / 1e6:.0f} MB")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        plan = synthesize(root, args.records, args.tasks)
        writes = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "orcac.cli", "report", str(plan)],
                check=True,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            writes.append(time.perf_counter() - started)
        page = root / ".orca" / "spec.report.html"
        print(
            f"report  : {statistics.median(writes):.2f} s to write (median of {args.runs}), "
            f"{page.stat().st_size / 1e6:.2f} MB page"
        )
        if browser.executable() is None:
            print("open    : skipped: no chromium on PATH (apt-get install chromium)")
            return
        blank = root / "blank.html"
        blank.write_text("<!doctype html><title>blank</title><p>blank</p>")
        opens, empties, rendered = [], [], []
        for _ in range(args.runs):
            empties.append(browser.load(blank, root).seconds)
            loaded = browser.load(page, root)
            assert not loaded.console, loaded.console
            opens.append(loaded.seconds)
            rendered.append(int(loaded.dom.split('data-ready="', 1)[1].split('"', 1)[0]))
        o, e = statistics.median(opens), statistics.median(empties)
        print(
            f"open    : {o:.2f} s in headless Chromium to the rendered page (script done at "
            f"{statistics.median(rendered)} ms after navigation); an empty page {e:.2f} s"
        )
        print(f"ratio: {o / e:.2f}x an empty page (goal: a few seconds for 100,000 records)")


if __name__ == "__main__":
    main()
