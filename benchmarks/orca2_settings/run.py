"""Orca 2's training settings on this machine: build orca2.orca against the loopback teacher,
then `orcac train orca2.orca --max-steps 2`, all three stages; peak memory and tokens/s.

    .venv/bin/python -m benchmarks.orca2_settings.run [--limit 16] [--steps-per-answer 60] [--keep DIR]

The loopback teacher (tests/support/loopback.py) answers every question
with `--steps-per-answer` numbered lines and an "Answer:" line, about 15 tokens a line: long
explanations, as Orca 2's teachers wrote, so that packing fills 4,096-token rows and nearly
every position is labelled. With `--limit 16` each task keeps about 14 training records
(about 14,000 tokens): the first stage is one batch of four full rows, the later stages two
and three, so each optimizer step is one to three micro-batches of 4 x 4,096 tokens.

Prints the train command's exit status and last lines, its peak resident memory (the
largest of its processes: getrusage of the waited-for children), and the tokens/s of its
steps (the step lines' token counts over their times). On 2 cores a step of 4 x 4,096 tokens
takes minutes: the whole run is long; BENCHMARKS.md has the numbers.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STEPS_PER_ANSWER = 60


def long_explanation(body: dict) -> str:
    """Numbered steps and an answer line, whatever the question."""
    steps = int(os.environ.get("ORCA2_STEPS_PER_ANSWER", STEPS_PER_ANSWER))
    lines = [
        f"{i}. We look again at the numbers in the question and carry the running total one step further."
        for i in range(1, steps + 1)
    ]
    return "\n".join(lines + ["Answer: 15"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=16, help="records per task (the spec's defaults.limit)")
    parser.add_argument("--steps-per-answer", type=int, default=STEPS_PER_ANSWER)
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--keep", help="build and train in this directory (default: a temporary one)")
    parser.add_argument("--build-only", action="store_true", help="stop after the build (check the records)")
    args = parser.parse_args(argv)
    os.environ["ORCA2_STEPS_PER_ANSWER"] = str(args.steps_per_answer)

    from tests.support.loopback import Loopback

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="orca2-settings-"))
    (work / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "examples/cautious_reasoner/data/arithmetic.jsonl", work / "data")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TOKENIZERS_PARALLELISM": "false",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "OPENAI_API_KEY": "sk-loopback",
    }
    with Loopback(long_explanation) as server:  # a thread here; the build is another process
        spec = (HERE / "orca2.orca").read_text().replace("LOOPBACK", server.url)
        spec = re.sub(r"limit   = \d+", f"limit   = {args.limit}", spec)
        (work / "orca2.orca").write_text(spec)
        built = subprocess.run(
            [sys.executable, "-m", "orcac.cli", "build", "orca2.orca", "--no-progress"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        if built.returncode:
            print(built.stderr[-3000:], file=sys.stderr)
            return 1
    if args.build_only:
        print(built.stderr[-1500:])
        return 0
    started = time.perf_counter()
    trained = subprocess.run(
        [sys.executable, "-m", "orcac.cli", "train", "orca2.orca", "--max-steps", str(args.max_steps)],
        cwd=work,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    err = trained.stderr
    print(err)
    tokens, step_seconds = _step_totals(err)
    print(
        f"exit {trained.returncode}; {seconds:.0f} s in all; peak resident {peak / 2**30:.1f} GB; "
        f"{tokens} tokens in {step_seconds:.0f} s of steps = {tokens / max(step_seconds, 1e-9):.0f} tokens/s"
    )
    print(f"work directory: {work}")
    return trained.returncode


def _step_totals(log: str) -> tuple[int, float]:
    """Tokens and seconds of the step lines (`  stage step i/n: ..., T tokens, Ss`, S since the stage began)."""
    tokens, seconds, last = 0, 0.0, {}
    for stage, _step, t, s in re.findall(r"^  (\S+) step (\d+)/\d+: .*?, (\d+) tokens, (\d+)s$", log, re.M):
        tokens += int(t)
        seconds += int(s) - last.get(stage, 0)
        last[stage] = int(s)
    return tokens, seconds


if __name__ == "__main__":
    sys.exit(main())
