"""The local teacher's decoding: orcac's loop against transformers' `generate`, fp32 against bf16.

    .venv/bin/python -m benchmarks.bench_generation [--model local/smollm2-135m-instruct] [--requests 16] [--batch 16]
                                                    [--device cuda]

The prompts are the demo's: the step_by_step strategy with its two demonstrations, then an
arithmetic question from examples/cautious_reasoner (so every prompt shares a long prefix, as
teacher prompts do). Greedy, 128 new tokens at most, one batch of `--batch` at a time:

  generate   transformers' model.generate on the left-padded batch (what orcac used before);
  orcac      orcac.runtime.models.generation.decode: the shared prefix prefilled once, finished rows
             dropped from the batch.

Each in fp32 and in bf16, side by side in one run. tokens/s counts the tokens each answer has
up to its end of sequence (the same answers, give or take a token where the two loops' float
rounding differs). Ratios are against generate in fp32. bf16 is only fast where the CPU has
native bf16 (AVX-512 BF16, AMX): the script prints what orcac.runtime.models.precision would choose.
`--device` is where the model runs: by default where the local teacher would (the GPU when torch
sees one); on a GPU, each timing ends with the answers copied back, so it waits for the device.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def prompts(tokenizer, n: int) -> list[list[int]]:
    from orcac.compiler import compile_spec
    from orcac.runtime.answers.erasure import teacher_messages

    plan = compile_spec(ROOT / "examples/cautious_reasoner/cautious.orca", "/tmp/never-written/cautious.plan.yaml")
    rows = [json.loads(line) for line in (ROOT / "examples/cautious_reasoner/data/arithmetic.jsonl").open()][:n]
    texts = [
        tokenizer.apply_chat_template(
            list(teacher_messages(plan, "step_by_step", r["question"])), add_generation_prompt=True, tokenize=False
        )
        for r in rows
    ]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def with_generate(model, tokenizer, batch: list[list[int]], max_new: int, eos: set[int]) -> int:
    import torch

    encoded = tokenizer.pad({"input_ids": batch}, padding=True, padding_side="left", return_tensors="pt")
    encoded = encoded.to(model.device)
    with torch.inference_mode():
        out = model.generate(
            **encoded,
            max_new_tokens=max_new,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=sorted(eos),
        )
    width = encoded["input_ids"].shape[1]
    tokens = 0
    for row in out[:, width:].tolist():
        ends = [i for i, t in enumerate(row) if t in eos]
        tokens += ends[0] if ends else len(row)
    return tokens


def with_orcac(model, tokenizer, batch: list[list[int]], max_new: int, eos: set[int]) -> int:
    from orcac.runtime.models.generation import decode

    return sum(len(r.tokens) for r in decode(model, batch, max_new_tokens=max_new, eos=eos, pad=tokenizer.pad_token_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: where the local teacher runs)")
    args = parser.parse_args()

    import torch

    from orcac.runtime.models import loading as hf_models
    from orcac.runtime.models import precision
    from orcac.runtime.models.generation import stop_ids

    device = args.device or precision.device()
    where = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, torch threads {torch.get_num_threads()}"
    print(f"precision auto here: {precision.choose('auto', cuda=device == 'cuda')}; {where}")
    model, tokenizer = hf_models.load_causal_lm(args.model)
    model.to(device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos = stop_ids(model, tokenizer)
    ids = prompts(tokenizer, args.requests)
    print(
        f"{args.requests} prompts of {min(map(len, ids))}-{max(map(len, ids))} tokens, batch {args.batch}, "
        f"up to {args.max_tokens} new tokens, greedy"
    )
    results = {}
    for name in args.precisions.split(","):
        model.to(torch.bfloat16 if name == "bf16" else torch.float32)
        for engine, run in (("generate", with_generate), ("orcac", with_orcac)):
            run(model, tokenizer, ids[:2], 4, eos)  # warm up
            started = time.perf_counter()
            tokens = sum(
                run(model, tokenizer, ids[i : i + args.batch], args.max_tokens, eos)
                for i in range(0, len(ids), args.batch)
            )
            seconds = time.perf_counter() - started
            results[(engine, name)] = tokens / seconds
            print(
                f"  {engine:<9} {name}: {tokens} tokens in {seconds:6.1f}s = {tokens / seconds:6.1f} tokens/s",
                flush=True,
            )
    base = results[("generate", "fp32")] if ("generate", "fp32") in results else next(iter(results.values()))
    print("ratio vs generate fp32: " + ", ".join(f"{e} {p} {v / base:.2f}x" for (e, p), v in results.items()))


if __name__ == "__main__":
    main()
