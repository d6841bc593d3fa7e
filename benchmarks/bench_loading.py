"""Loading the demo's model: dequantising its GGUF file against reading the model cache's copy.

    .venv/bin/python -m benchmarks.bench_loading [--model local/smollm2-135m-instruct] [--rounds 2]

Each round, in one process, with an empty model cache of its own (a temporary ORCAC_CACHE_DIR):
`load_causal_lm` once from GGUF (transformers dequantises it; orcac then keeps the fp32 copy,
which this timing includes) and once more (the copy, orcac.runtime.models.loading). The demo
loads its model four times (teacher, student, eval's base and prompted arms), so the first
line is what each of them paid before the cache, the second what the last three pay now.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=2, help="the fastest round of each counts")
    args = parser.parse_args()
    from orcac.runtime.models import loading

    first = cached = float("inf")
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["ORCAC_CACHE_DIR"] = cache
            started = time.perf_counter()
            loading.load_causal_lm(args.model)
            first = min(first, time.perf_counter() - started)
            started = time.perf_counter()
            loading.load_causal_lm(args.model)
            cached = min(cached, time.perf_counter() - started)
    print(f"{args.model}: from GGUF (dequantised, copy kept) {first:6.2f} s")
    print(f"{args.model}: from the model cache              {cached:6.2f} s")
    print(f"GGUF / cache: {first / cached:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
