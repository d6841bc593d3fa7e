"""`make bench`: every benchmark in this directory, in a quick mode, and one table of their ratios.

    .venv/bin/python -m benchmarks.run_all            # quick: about 3 minutes on 2 cores
    .venv/bin/python -m benchmarks.run_all --full     # each script's defaults (BENCHMARKS.md)
    .venv/bin/python -m benchmarks.run_all --only bench_train

From the repository root, as every benchmark runs: as a module (`-m benchmarks.NAME`), so
`tests.support` (the loopback servers, the tiny model, hand-made plans) imports without any
change to sys.path.

Each script runs as its own process with smaller inputs (the arguments below); the ratios it
prints are read from its output by the patterns beside them, so a script that stops printing
one fails here instead of leaving a blank. Quick mode loads the 135M demo model only in
bench_generation, bench_sampling and bench_loading: the local-teacher benchmark runs on the
tests' tiny random Llama (tests/support/tiny_model.py), whose batching speed-up is the same
mechanism at a smaller size. Quick numbers are a smoke test of each benchmark and a rough
ratio; BENCHMARKS.md holds the full runs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Ratio:
    label: str
    pattern: str  # group 1: the number
    goal: str


@dataclass(frozen=True)
class Bench:
    script: str
    quick: tuple[str, ...]
    ratios: tuple[Ratio, ...]
    timeout_s: int = 240


def tiny_teacher() -> str:
    from tests.support.tiny_model import tiny_model_dir

    return f"local/{tiny_model_dir()}"


BENCHES = (
    Bench(
        "bench_check.py",
        ("--runs", "3", "--size-mb", "0.2"),
        (
            Ratio("orcac check / import lark, pydantic, jinja2", r"^ratio: ([\d.]+)x", "<= 2"),
            Ratio("parse + check, MB/s of CPU", r"^parse \+ check.*CPU \d+ ms = ([\d.]+) MB/s", ">= 1"),
        ),
    ),
    Bench(
        "bench_store.py",
        ("--jobs", "1000", "--records", "100000"),
        (
            Ratio("build re-run, seconds (0 calls)", r"^re-run\s+: ([\d.]+) s", "< 2"),
            Ratio("Store.write / bare insert", r"Store\.write / bare = ([\d.]+)", ""),
        ),
    ),
    Bench(
        "bench_teachers.py",
        ("--jobs", "800", "--inflight", "64", "--latency", "0.02"),
        (
            Ratio("orcac fast path / raw aiohttp", r"^\s*orcac, fast\s+\d+\s+([\d.]+)", ""),
            Ratio("orcac fast + duckdb / raw aiohttp", r"^\s*orcac, fast \+ duckdb\s+\d+\s+([\d.]+)", ">= 0.5"),
            Ratio("orcac fast + duckdb / plain litellm", r"^\s*orcac, fast \+ duckdb\s+\d+\s+[\d.]+\s+([\d.]+)", ""),
        ),
    ),
    Bench(
        "bench_local_teacher.py",
        ("--model", "{tiny}", "--requests", "8", "--max-tokens", "16"),
        (
            Ratio(
                "local teacher batched / one at a time (tiny model)",
                r"batched / one at a time: ([\d.]+)x",
                ">= 5 (135M)",
            ),
        ),
    ),
    Bench(
        "bench_train.py",
        ("--examples", "32", "--max-length", "256", "--hidden", "64", "--layers", "2", "--rounds", "1"),
        (
            Ratio("packed / naive padded, real tokens/s", r"^speed-up: ([\d.]+)x", ">= 1.5"),
            Ratio(
                "rows + answer head / one row + full head",
                r"^one pack a row, answer-only head / one row, head everywhere: ([\d.]+)x",
                "> 1",
            ),
        ),
    ),
    Bench(
        "bench_distill.py",
        ("--model", "{tiny}", "--per-task", "8", "--steps", "2", "--objectives", "sft,distill"),
        (
            Ratio(
                "distill / sft, wall time per epoch (tiny model)", r"^distill / sft, wall time per epoch: ([\d.]+)x", ""
            ),
        ),
    ),
    Bench(
        "bench_generation.py",
        ("--requests", "8", "--batch", "8", "--max-tokens", "24", "--precisions", "fp32"),
        (Ratio("orcac decode / transformers generate (135M, fp32)", r"orcac fp32 ([\d.]+)x", "> 1"),),
    ),
    Bench(
        "bench_sampling.py",
        ("--rows", "64"),
        (
            Ratio(
                "sampled token, multinomial / orcac (64 rows, top_p 0.95)",
                r"^\s*64 \|\s+0\.95 \|.*\|\s+([\d.]+)x$",
                "> 1",
            ),
        ),
    ),
    Bench(
        "bench_memory.py",
        ("--quick",),
        (
            Ratio(
                "training memory estimate / measured peak (4-layer SmolLM2 shape)",
                r"furthest from 1: ([\d.]+)",
                "0.85 to 1.15",
            ),
        ),
        timeout_s=360,
    ),
    Bench(
        "bench_loading.py",
        ("--rounds", "1"),
        (Ratio("load from GGUF / from the model cache (135M)", r"^GGUF / cache: ([\d.]+)x", "> 10"),),
    ),
    Bench(
        "bench_adaptive.py",
        ("--jobs", "600", "--repeat", "1"),
        (
            Ratio("adaptive goodput, requests/s", r"^adaptive\s+[\d.]+\s+([\d,]+)", "> fixed"),
            Ratio("fixed goodput, requests/s", r"^fixed\s+[\d.]+\s+([\d,]+)", ""),
        ),
    ),
    Bench(
        "bench_batch.py",
        ("--jobs", "2000", "--repeat", "1"),
        (
            Ratio(
                "batch path, client CPU s per 10,000 jobs",
                r"^batch\s+[\d.]+ \(\s*[\d.]+\)\s+[\d.]+ \(\s*([\d.]+)\)",
                "",
            ),
        ),
    ),
    Bench(
        "bench_kill.py",
        ("--jobs", "400", "--kills", "2", "--inflight", "8"),
        (
            Ratio(
                "answers paid again per kill -9, 8 in flight",
                r"in flight\s+8: .* again: ([\d.]+) per kill",
                "about what was in flight",
            ),
        ),
    ),
    Bench(
        "bench_report.py",
        ("--records", "5000", "--runs", "1"),
        (
            Ratio("orcac report, seconds to write", r"^report\s+: ([\d.]+) s", ""),
            Ratio("report page / empty page, open in Chromium", r"^ratio: ([\d.]+)x", "a few s at 100k"),
        ),
    ),
)


def run(bench: Bench, full: bool) -> tuple[str, float, list[tuple[Ratio, str]]]:
    """(status, seconds, [(ratio, value)]): status is ok, failed or timeout."""
    args = [] if full else [a.replace("{tiny}", tiny_teacher()) if a == "{tiny}" else a for a in bench.quick]
    command = [sys.executable, "-m", f"benchmarks.{bench.script.removesuffix('.py')}", *args]
    print(f"running {bench.script} {' '.join(args)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=None if full else bench.timeout_s
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - started, [(r, "") for r in bench.ratios]
    seconds = time.monotonic() - started
    values = []
    for ratio in bench.ratios:
        found = re.search(ratio.pattern, done.stdout, re.M)
        values.append((ratio, found.group(1) if found else ""))
    status = "ok" if done.returncode == 0 and all(v for _, v in values) else "failed"
    if status != "ok":
        print(done.stdout[-2000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
    return status, seconds, values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="each script's own defaults (slow: the 135M model too)")
    parser.add_argument("--only", action="append", metavar="SCRIPT", help="run only this one (e.g. bench_train)")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    chosen = [
        b
        for b in BENCHES
        if not args.only or b.script.removesuffix(".py") in {o.removesuffix(".py") for o in args.only}
    ]
    if not chosen:
        print(f"no benchmark named {args.only}: choose from {[b.script for b in BENCHES]}", file=sys.stderr)
        return 1
    started = time.monotonic()
    results = [(bench, *run(bench, args.full)) for bench in chosen]
    width = max(len(r.label) for b in chosen for r in b.ratios)
    print(f"\n{'benchmark':<24} {'measure':<{width}} {'value':>8}  {'goal':<16} {'status':<8} {'time':>6}")
    for bench, status, seconds, values in results:
        for i, (ratio, value) in enumerate(values):
            name = bench.script.removesuffix(".py") if i == 0 else ""
            tail = f"{status:<8} {seconds:5.0f}s" if i == 0 else ""
            print(f"{name:<24} {ratio.label:<{width}} {value or '-':>8}  {ratio.goal:<16} {tail}")
    mode = "full" if args.full else "quick"
    print(
        f"{mode} mode, {time.monotonic() - started:.0f} s, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}; quick numbers are rough, BENCHMARKS.md has the full runs"
    )
    return 0 if all(status == "ok" for _, status, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
