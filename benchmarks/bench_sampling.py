"""Choosing the next token of a sampled batch: orcac's inverse-CDF draw against torch.multinomial.

    .venv/bin/python -m benchmarks.bench_sampling [--rows 1,16,64,128] [--vocab 49152] [--top-p 0.95]

Both from the same tempered softmax, each row from its own seeded generator (what a build's
samples need: an answer that depends on its job's seed alone). `multinomial` is what
generation._sample did before: torch.multinomial(probs[row], 1, generator=g) per row, whose
one-sample path draws an exponential for every vocabulary entry. `orcac` is generation._sample:
one uniform per row, searched in the row's cumulative sum. Logits are the demo model's own
(SmolLM2-135M's next-token logits for a batch of the demo's prompts, where the model is installed)
so top_p's nucleus is as wide as a real answer's. Best of 5 x 10 calls, milliseconds per call,
side by side in one run.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def with_multinomial(logits, temperature: float, top_p: float | None, generators):
    """generation._sample before: the nucleus by a full sort, then torch.multinomial per row."""
    import torch

    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        cumulative = sorted_probs.cumsum(dim=-1)
        sorted_probs[(cumulative - sorted_probs) > top_p] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.stack([torch.multinomial(probs[b], 1, generator=g)[0] for b, g in enumerate(generators)])


def best_ms(run, repeats: int = 5, calls: int = 10) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e3


def model_logits(rows: int):
    """[rows, vocab] next-token logits of the demo's model on the demo's prompts (cycled)."""
    import torch

    from benchmarks.bench_generation import prompts
    from orcac.runtime.models import loading

    model, tokenizer = loading.load_causal_lm("local/smollm2-135m-instruct")
    ids = prompts(tokenizer, 16)
    with torch.inference_mode():
        last = [model(input_ids=torch.tensor([p])).logits[0, -1] for p in ids]
    return torch.stack([last[i % len(last)] for i in range(rows)]).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1,16,64,128")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from orcac.runtime.models.generation import _sample

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(r) for r in args.rows.split(",")]
    temperature = args.temperature
    logits = model_logits(max(sizes))
    print(
        f"SmolLM2-135M's logits (vocabulary {logits.shape[-1]}), temperature {args.temperature}; "
        f"torch threads {torch.get_num_threads()}; ms per call, best of 5 x 10"
    )
    print("rows | top_p | multinomial ms | orcac ms | speed-up")
    for rows in sizes:
        for top_p in (None, args.top_p):
            generators = [torch.Generator().manual_seed(i) for i in range(rows)]
            chunk = logits[:rows]
            before = best_ms(lambda c=chunk, p=top_p, g=generators: with_multinomial(c, temperature, p, g))
            after = best_ms(lambda c=chunk, p=top_p, g=generators: _sample(c, temperature, p, g))
            print(f"{rows:4} | {top_p or '-':>5} | {before:14.2f} | {after:8.2f} | {before / after:7.1f}x", flush=True)


if __name__ == "__main__":
    main()
