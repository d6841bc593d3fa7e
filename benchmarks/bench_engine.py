"""The decoding engine against today's static loop and against the step's floor, side by side.

    .venv/bin/python -m benchmarks.bench_engine [--batches 16,64,128] [--stream 300] [--stream-batch 64]
                                                [--samples 1] [--temperature T] [--max-tokens 128]
                                                [--precisions bf16,fp32] [--unpacked]

Prompts: the demo's (the step_by_step strategy with its two demonstrations, then an arithmetic
question from examples/cautious_reasoner: ~260 tokens, ~227 shared). Greedy. In each precision:

  floor    the model's forward for B new tokens with no context (one step's weights' arithmetic,
           which every decode step must do at batch B): B / its time, the most tokens/s a loop
           could reach at that batch.
  static   generation.decode(engine="transformers"): the model's forward with a DynamicCache,
           the shared prefix prefilled once and copied into every row, finished rows dropped.
  engine   generation.decode through orcac.runtime.models.engine: shared-prefix attention over
           one prefix copy, a preallocated cache.

For each B: the engine's step with all B rows busy (its share of the floor: what the loop's
arithmetic and attention cost beyond the weights'), beside the same step with the linear layers
through `F.linear` instead of the weights packed once for oneDNN (engine._Packed), then B prompts as one batch through each
loop (prefill and rows finishing included), tokens/s and its share of the floor.
Then the stream: `--stream` requests through `--stream-batch` rows: static batches one after
another against the engine's stream (finished rows replaced by waiting prompts), each as a share
of the floor at `--stream-batch`; then the engine in static batches (what refilling adds on its
own; `--no-engine-batches` skips it). The demo has 300 questions: with `--samples N` the stream
asks each question N times in a row, each request with its own seed, sampled at `--temperature`
(0.7 unless given), as a build with `samples = N` does; with one sample it is greedy and a stream
longer than 300 asks the questions again. Beside each loop's new tokens/s: every token through
the model per second (the shared prefix, the tails and the decode tokens, counted at the
embeddings) as a share of the floor, the loop's speed on the work it chose to do (the engine
prefills a repeated prompt's tail once).
`same` counts answers with identical tokens in both loops. The load average is printed beside
the numbers: the machine may be shared, so the ratios measured in one run are what count
(on a crowded machine, `--threads 1 --cpu-time` counts the process's own CPU seconds).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def floor(model, batch: int, repeats: int = 5) -> float:
    """Tokens/s of the model's forward for `batch` new tokens with no context (best of `repeats`)."""
    import torch

    ids = torch.randint(100, 1000, (batch, 1))
    best = float("inf")
    with torch.inference_mode():
        model(input_ids=ids, use_cache=False, logits_to_keep=1)  # warm up
        for _ in range(repeats):
            _, seconds = timed(lambda: model(input_ids=ids, use_cache=False, logits_to_keep=1))
            best = min(best, seconds)
    return batch / best


def steady_step(model, ids: list, batch: int, steps: int = 10, packed: bool = True) -> float:
    """Tokens/s of the engine's decode step with all `batch` rows busy (no prefill, no row done);
    `packed=False`: its linear layers through F.linear."""
    from orcac.runtime.models import engine

    was, engine.PACK_WEIGHTS = engine.PACK_WEIGHTS, packed and engine.PACK_WEIGHTS
    try:
        stream = busy_stream(engine, model, ids, batch)
    finally:
        engine.PACK_WEIGHTS = was
    _, seconds = timed(lambda: [stream.step() for _ in range(steps)])
    return batch * steps / seconds


def busy_stream(engine, model, ids: list, batch: int):
    """A Stream of `engine` (the module) with the first `batch` prompts admitted and two warm
    steps taken: every later step decodes all `batch` rows (their budgets never run out)."""
    from orcac.runtime.models.generation import shared_prefix

    chunk = ids[:batch]
    stream = engine.Stream(model, chunk[0][: shared_prefix(chunk)], width=batch, eos=set(), pad=0)
    for i, prompt in enumerate(chunk):
        stream.add(i, prompt, 10_000)
    for _ in range(3):  # the admission (prefill) and two warm steps
        stream.step()
    return stream


def timed(run) -> tuple[list, float]:
    """(results, seconds): wall seconds, or this process's CPU seconds under --cpu-time."""
    clock = time.process_time if CPU_TIME else time.perf_counter
    started = clock()
    results = run()
    return results, clock() - started


CPU_TIME = False  # --cpu-time: a shared machine's wall clock measures the neighbours too


def sampling_temperature(samples: int, temperature: float | None) -> float:
    """`--temperature` as given, else a build's: greedy with one sample, 0.7 with several."""
    if temperature is not None:
        return temperature
    return 0.7 if samples > 1 else 0.0


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/smollm2-135m-instruct")
    parser.add_argument("--batches", default="16,64,128")
    parser.add_argument("--stream", type=int, default=300)
    parser.add_argument("--stream-batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=1, help="the stream asks each question this many times in a row")
    parser.add_argument("--temperature", type=float, default=None, help="default: 0 with one sample, else 0.7")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument(
        "--no-engine-batches",
        action="store_true",
        help="skip the engine in static batches on the stream's prompts (what refilling alone adds): "
        "a third of the stream's time at full size",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time by this process's CPU seconds (with --threads 1 on a shared machine)",
    )
    parser.add_argument(
        "--unpacked",
        action="store_true",
        help="the engine's linear layers through F.linear, not from weights packed for oneDNN (engine._Packed)",
    )
    args = parser.parse_args()

    import torch

    global CPU_TIME
    CPU_TIME = args.cpu_time
    if args.threads:
        torch.set_num_threads(args.threads)

    from benchmarks.bench_generation import prompts
    from orcac.runtime.models import engine as stream_engine

    stream_engine.PACK_WEIGHTS = not args.unpacked
    from orcac.runtime.models import loading as hf_models
    from orcac.runtime.models.generation import decode, shared_prefix, stop_ids

    model, tokenizer = hf_models.load_causal_lm(args.model)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos = stop_ids(model, tokenizer)
    batches = [int(b) for b in args.batches.split(",") if b]
    wanted = max(batches + [args.stream])
    questions = prompts(tokenizer, wanted)
    ids = [questions[i % len(questions)] for i in range(wanted)]  # the demo's data has 300 questions
    # The stream: each question `--samples` times in a row, as a build lists a row's samples.
    streamed = [questions[(i // args.samples) % len(questions)] for i in range(args.stream)]
    temperature = sampling_temperature(args.samples, args.temperature)
    print(
        f"{args.model}; {len(set(map(tuple, ids)))} distinct prompts of {min(map(len, ids))}-{max(map(len, ids))} "
        f"tokens, {shared_prefix(ids)} shared; "
        f"greedy, up to {args.max_tokens} new tokens; torch threads {torch.get_num_threads()}; "
        f"{'CPU' if CPU_TIME else 'wall'} seconds; "
        f"linear layers {'F.linear' if args.unpacked else 'packed for oneDNN'}; "
        f"load average {load_average()}",
        flush=True,
    )

    def run(engine: str, chunk: list, batch: int | None, seeds: list | None = None):
        """Greedy, or sampled at `temperature` with a seed per prompt."""
        return decode(
            model,
            chunk,
            max_new_tokens=args.max_tokens,
            eos=eos,
            pad=tokenizer.pad_token_id,
            engine=engine,
            batch_size=batch,
            temperature=temperature if seeds is not None else 0.0,
            seeds=seeds,
        )

    forwarded = [0]  # tokens through the model: every forward's input ids, at the embeddings

    def count(module, inputs, out) -> None:
        forwarded[0] += inputs[0].numel()

    model.model.embed_tokens.register_forward_hook(count)

    def through(run) -> tuple[list, float, int]:
        """timed(run) and the tokens it put through the model."""
        before = forwarded[0]
        results, seconds = timed(run)
        return results, seconds, forwarded[0] - before

    for precision in args.precisions.split(","):
        model.to(torch.bfloat16 if precision == "bf16" else torch.float32)
        run("auto", ids[:2], None), run("transformers", ids[:2], None)  # warm up
        print(
            f"\n{precision}:  batch | floor tok/s | engine step, all rows busy (share) | the step unpacked (share) "
            f"| static tok/s (share) | engine tok/s (share) | engine/static | same"
        )
        for batch in batches:
            top = floor(model, batch)
            step = steady_step(model, ids, batch)
            unpacked = steady_step(model, ids, batch, packed=False)
            chunk = ids[:batch]
            static, static_s = timed(lambda chunk=chunk: run("transformers", chunk, None))
            ours, ours_s = timed(lambda chunk=chunk: run("auto", chunk, None))
            tokens = sum(len(r.tokens) for r in ours)
            static_rate = sum(len(r.tokens) for r in static) / static_s
            rate = tokens / ours_s
            same = sum(a == b for a, b in zip(static, ours))
            print(
                f"{precision:>5}  {batch:5} | {top:11.0f} | {step:8.1f} ({step / top:.2f}) | {unpacked:8.1f} ({unpacked / top:.2f}) "
                f"| {static_rate:8.1f} ({static_rate / top:.2f}) "
                f"| {rate:8.1f} ({rate / top:.2f}) | {rate / static_rate:5.2f}x | {same}/{batch}  "
                f"[load {load_average()}]",
                flush=True,
            )
        if args.stream:
            chunk, width = streamed, args.stream_batch
            sampled = temperature > 0
            seeds = list(range(len(chunk))) if sampled else None
            static, static_s, static_through = through(lambda c=chunk, w=width, s=seeds: run("transformers", c, w, s))
            ours, ours_s, ours_through = through(lambda c=chunk, w=width, s=seeds: run("auto", c, w, s))
            tokens = sum(len(r.tokens) for r in ours)
            static_rate = sum(len(r.tokens) for r in static) / static_s
            rate = tokens / ours_s
            same = sum(a == b for a, b in zip(static, ours))
            top = floor(model, width)
            print(
                f"{precision:>5} stream of {args.stream} ({len(set(map(tuple, chunk)))} distinct prompts, "
                f"{'temperature ' + str(temperature) + ', a seed each' if sampled else 'greedy'}) through {width}: "
                f"static batches {static_rate:.1f} tok/s ({static_s:.0f}s, {static_rate / top:.2f} of floor; "
                f"through the model {static_through / static_s:.0f} tok/s, {static_through / static_s / top:.2f}), "
                f"engine stream {rate:.1f} tok/s ({ours_s:.0f}s, {rate / top:.2f} of floor {top:.0f}; "
                f"through the model {ours_through / ours_s:.0f} tok/s, {ours_through / ours_s / top:.2f}): "
                f"{rate / static_rate:.2f}x static; same {same}/{len(chunk)}  [load {load_average()}]",
                flush=True,
            )
            if not args.no_engine_batches:
                # The engine in static batches too: what refilling the batch adds on its own.
                _, batches_s = timed(
                    lambda c=chunk, w=width, s=seeds: [
                        r for i in range(0, len(c), w) for r in run("auto", c[i : i + w], None, s and s[i : i + w])
                    ]
                )
                print(
                    f"{precision:>5} engine in static batches {tokens / batches_s:.1f} tok/s ({batches_s:.0f}s): "
                    f"the stream is {batches_s / ours_s:.2f}x that  [load {load_average()}]",
                    flush=True,
                )


if __name__ == "__main__":
    main()
