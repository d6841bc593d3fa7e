"""Where a stream's time goes: its steps by kind, then (with --ops) its operations by self time.

    .venv/bin/python -m benchmarks.profile_stream [--prompts 300] [--width 64] [--max-tokens 128]
                                                  [--precision fp32] [--threads 2] [--ops 20]

The demo's prompts (benchmarks/bench_generation.py), greedy, through one engine.Stream of
`--width` rows. Each step is timed and sorted by kind:

  first      the stream's first step: every slot's tail at once (the prefill of the first batch)
  admission  busy rows decode and waiting requests' tails ride in the same forward
  full       every slot decodes, nothing admitted (the steady step bench_engine times)
  draining   fewer rows than slots and nobody waiting (the stream's last answers)

`--ops N` runs the stream a second time under torch's profiler and prints the N operations
with the most self time, their share of the stream, and the time outside any operation
(Python and dispatch). The profiler's own overhead lengthens that run: the step table comes
from the first run.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def run_stream(engine, model, ids: list, width: int, max_tokens: int, eos: set, pad: int) -> tuple[list, int, float]:
    """[(kind, rows decoding, tail tokens admitted, seconds)] for each step, new tokens, wall seconds."""
    from orcac.runtime.models.generation import shared_prefix

    prefix = ids[0][: shared_prefix(ids)]
    width = min(width, len(ids))  # as engine.stream sizes it
    stream = engine.Stream(model, prefix, width=width, eos=eos, pad=pad)
    for i in engine.repeats_together(ids):  # as engine.stream adds them
        stream.add(i, ids[i], max_tokens)
    steps, new_tokens, started = [], 0, time.perf_counter()
    while not stream.idle:
        busy = sum(owner is not None for owner in stream.owner)
        waiting, tails_before = len(stream.waiting), stream.tail_tokens
        began = time.perf_counter()
        done = stream.step()
        seconds = time.perf_counter() - began
        admitted = waiting - len(stream.waiting)
        tail_tokens = stream.tail_tokens - tails_before
        if not steps:
            kind = "first"
        elif admitted:
            kind = "admission"
        elif busy == width:
            kind = "full"
        else:
            kind = "draining"
        steps.append((kind, busy, tail_tokens, seconds))
        new_tokens += sum(len(tokens) for _, tokens, _ in done)
    return steps, new_tokens, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--ops", type=int, default=0, help="profile a second run: the N costliest operations")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from benchmarks.bench_engine import load_average
    from benchmarks.bench_generation import prompts
    from orcac.runtime.models import engine, loading
    from orcac.runtime.models.generation import stop_ids

    model, tokenizer = loading.load_causal_lm(args.model)
    model.eval().to(torch.bfloat16 if args.precision == "bf16" else torch.float32)
    ids = prompts(tokenizer, args.prompts)
    ids = [ids[i % len(ids)] for i in range(args.prompts)]  # the demo has 300 questions
    eos, pad = stop_ids(model, tokenizer), tokenizer.pad_token_id

    def run():
        return run_stream(engine, model, ids, args.width, args.max_tokens, eos, pad)

    run_stream(engine, model, ids[:4], 4, 8, eos, pad)  # warm up (and the packed weights made)
    steps, new_tokens, wall = run()
    tails = sum(tokens for _, _, tokens, _ in steps)
    print(
        f"{args.model}, {args.precision}, torch threads {torch.get_num_threads()}: {len(ids)} prompts through "
        f"{args.width}, up to {args.max_tokens} new tokens; {new_tokens} new tokens and {tails} tail tokens in "
        f"{wall:.1f} s wall ({new_tokens / wall:.1f} new tok/s); load average {load_average()}\n"
    )
    print("kind       | steps | seconds | share | ms/step | rows decoding (mean) | tail tokens a step (mean)")
    by_kind: dict = defaultdict(list)
    for kind, busy, tokens, seconds in steps:
        by_kind[kind].append((busy, tokens, seconds))
    for kind in ("first", "admission", "full", "draining"):
        rows = by_kind.get(kind, [])
        if not rows:
            continue
        seconds = sum(s for _, _, s in rows)
        print(
            f"{kind:<10} | {len(rows):>5} | {seconds:>7.1f} | {seconds / wall:>5.0%} | {1000 * seconds / len(rows):>7.0f} "
            f"| {sum(b for b, _, _ in rows) / len(rows):>20.1f} | {sum(t for _, t, _ in rows) / len(rows):>.1f}"
        )
    if not args.ops:
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        _, _, profiled_wall = run()
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    in_ops = sum(e.self_cpu_time_total for e in events) / 1e6
    print(f"\nunder the profiler: {profiled_wall:.1f} s wall, {in_ops:.1f} s inside operations")
    print("operation                                        | calls  | self s | share of wall | us/call")

    def line(name: str, calls: str, seconds: float, per_call: str) -> None:
        print(f"{name[:48]:<48} | {calls:>6} | {seconds:>6.2f} | {seconds / profiled_wall:>13.1%} | {per_call:>7}")

    for e in events[: args.ops]:
        seconds = e.self_cpu_time_total / 1e6
        line(e.key, str(e.count), seconds, f"{1e6 * seconds / e.count:.0f}")
    line("(outside any operation: Python, dispatch)", "", profiled_wall - in_ops, "")


if __name__ == "__main__":
    main()
