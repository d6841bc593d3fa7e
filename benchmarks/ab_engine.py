"""Two versions of the decoding engine side by side in one process: a stream, rounds alternating.

    git show REV:orcac/runtime/models/engine.py > /tmp/engine_REV.py
    .venv/bin/python -m benchmarks.ab_engine /tmp/engine_REV.py [--prompts 256] [--width 64]
                                             [--max-tokens 128] [--rounds 4] [--precision fp32]
                                             [--steps 1,4,16,64]

The working tree's engine ("new") against the file given ("old", loaded under another module
name, so both run on the same loaded model), on the demo's prompts (benchmarks/bench_generation.py:
the step_by_step strategy with its two demonstrations, then an arithmetic question), greedy:
`--prompts` prompts through a stream `--width` rows wide. Rounds alternate old, new / new, old;
before each, the floor at `--width` (bench_engine.floor: the model's forward for that many new
tokens with no context), so each round's tokens/s is read against a floor measured beside it
(on a shared machine the floor itself moves by a fifth). Wall seconds, torch's threads.

`--steps`: instead of the stream, the decode step alone with every one of B rows busy (no
admission, no row finishing; bench_engine.steady_step's setting), for each B: the two versions'
streams built side by side, then 8 steps of each, alternating for `--rounds` rounds; the best
round of each. A stream of 16 spends most of its steps at a few rows (its last answers).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", help="an engine.py from another commit (git show REV:orcac/runtime/models/engine.py)")
    parser.add_argument("--model", default="local/smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--steps", default="", help="row counts: time the decode step alone at each (see above)")
    args = parser.parse_args()

    import torch

    from benchmarks.bench_engine import floor, load_average
    from benchmarks.bench_generation import prompts
    from orcac.runtime.models import engine as new
    from orcac.runtime.models import loading
    from orcac.runtime.models.generation import shared_prefix, stop_ids

    spec = importlib.util.spec_from_file_location("engine_old", args.old)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)

    model, tokenizer = loading.load_causal_lm(args.model)
    model.eval().to(torch.bfloat16 if args.precision == "bf16" else torch.float32)
    ids = prompts(tokenizer, args.prompts)
    ids = [ids[i % len(ids)] for i in range(args.prompts)]  # the demo has 300 questions
    shared, eos = shared_prefix(ids), stop_ids(model, tokenizer)

    def run(engine, chunk):
        budgets = [args.max_tokens] * len(chunk)
        return engine.stream(
            model, chunk, budgets, eos=eos, pad=tokenizer.pad_token_id, shared=shared, batch_size=args.width
        )

    run(old, ids[:4]), run(new, ids[:4])  # warm up
    if args.steps:
        steps(model, ids, [int(b) for b in args.steps.split(",")], old, new, args.rounds)
        return
    seconds: dict[str, list[float]] = {"old": [], "new": []}
    floors, answers = [], {}
    for round_ in range(args.rounds):
        floors.append(floor(model, args.width))
        order = (("old", old), ("new", new)) if round_ % 2 == 0 else (("new", new), ("old", old))
        for name, engine in order:
            started = time.perf_counter()
            answers[name] = run(engine, ids)
            seconds[name].append(time.perf_counter() - started)
    tokens = sum(len(t) for t, _ in answers["new"])
    same = sum(a == b for a, b in zip(answers["old"], answers["new"]))
    print(
        f"{args.prompts} prompts through {args.width}, up to {args.max_tokens} new tokens, {args.precision}, "
        f"torch threads {torch.get_num_threads()}: {tokens} new tokens (old {sum(len(t) for t, _ in answers['old'])}); "
        f"same {same}/{args.prompts}; load average {load_average()}"
    )
    print("round | floor tok/s | old tok/s (share) | new tok/s (share) | new/old")
    for i, top in enumerate(floors):
        o, n = tokens / seconds["old"][i], tokens / seconds["new"][i]
        print(f"{i + 1:5} | {top:11.0f} | {o:8.1f} ({o / top:.2f}) | {n:8.1f} ({n / top:.2f}) | {n / o:.3f}x")


def steps(model, ids: list, batches: list[int], old, new, rounds: int) -> None:
    """ms per decode step with every row busy, old against new, for each row count."""
    from benchmarks.bench_engine import busy_stream

    print("rows | old ms/step | new ms/step | new/old speed")
    for batch in batches:
        streams = {"old": busy_stream(old, model, ids, batch), "new": busy_stream(new, model, ids, batch)}
        best = {"old": float("inf"), "new": float("inf")}
        for round_ in range(rounds):
            for name in ("old", "new") if round_ % 2 == 0 else ("new", "old"):
                started = time.perf_counter()
                for _ in range(8):
                    streams[name].step()
                best[name] = min(best[name], (time.perf_counter() - started) / 8 * 1e3)
        print(f"{batch:4} | {best['old']:11.1f} | {best['new']:11.1f} | {best['old'] / best['new']:.3f}x", flush=True)


if __name__ == "__main__":
    main()
