"""Does `orcac train`'s memory estimate hold? The estimate against the real peak of a training step.

For each shape, a fresh process loads the student as `orcac train` does, makes a stage's
trainer over rows labelled almost everywhere (Orca 2's long explanations, packed full), lets
`_fit_in_memory` decide on activation checkpointing as `orcac train` would, and trains a few
optimizer steps. Measured: the peak resident memory of the steps above what was resident when
they started (Linux: the high-water mark reset through /proc/self/clear_refs, read from
/proc/self/status VmHWM; on a GPU `torch.cuda.max_memory_allocated`). That is what
`memory.step_memory` estimates: what a step holds beyond what is already resident.

    .venv/bin/python -m benchmarks.bench_memory                      # demo and paper shapes, 135M
    .venv/bin/python -m benchmarks.bench_memory --shapes demo
    .venv/bin/python -m benchmarks.bench_memory --quick              # a 4-layer SmolLM2 shape, minutes
    .venv/bin/python -m benchmarks.bench_memory --shapes row --layers 30 --checkpointing on

Shapes (max_length x batch_size, precision): demo 512 x 8 as examples/cautious_reasoner trains
it, paper 4096 x 4 (Orca 2's settings, benchmarks/orca2_settings/), long 2048 x 2 and row
4096 x 1 and pair 4096 x 2 (the same tokens in longer rows), quick 1024 x 4; grad_accum is 1 here, as
accumulation adds no memory (the gradients are summed in place). The paper shape takes minutes a
step on 2 cores (17 minutes each on a machine loaded 4-8x). Prints, per shape, the estimate by part, the measured peak, and
`estimate / measured`; the goal is within 15% (0.85 to 1.15).
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
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = "local/smollm2-135m-instruct"

# name: (max_length, batch_size, bf16)
SHAPES = {
    "demo": (512, 8, True),
    "paper": (4096, 4, True),
    "quick": (1024, 4, True),
    "long": (2048, 2, True),
    "row": (4096, 1, True),  # one row of Orca 2's length
    "pair": (4096, 2, True),
}


def resident(field: str = "VmRSS") -> int:
    """Bytes of this process's resident memory (VmRSS) or its high-water mark (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Start the high-water mark again from the current resident size (Linux 4.0+)."""
    Path("/proc/self/clear_refs").write_text("5")


def smollm2_shaped(tokenizer, layers: int):
    """A random model of SmolLM2-135M's width (576 hidden, 1,536 MLP, 9 heads, 49,152 tokens) with
    `layers` layers: the per-layer and per-token terms of the 135M at a fraction of the time."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=layers,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def measure(shape: str, model_name: str, steps: int, layers: int = 0, checkpointing: str = "auto") -> dict:
    """One shape in this process: the estimate, the decision, the measured peak."""
    import gc

    import torch
    from datasets import Dataset
    from trl import SFTConfig

    from orcac.runtime.commands.train import trainer as stage_trainer
    from orcac.runtime.models import chat_format
    from orcac.runtime.models import loading as hf_models
    from orcac.runtime.training import memory

    max_length, batch_size, bf16 = SHAPES[shape]
    if layers:
        tokenizer = hf_models.load_tokenizer(model_name, ROOT)
        model = smollm2_shaped(tokenizer, layers)
        model_name = f"SmolLM2-135M-shaped, {layers} layers, random"
    else:
        model, tokenizer = hf_models.load_causal_lm(model_name, ROOT)
    if chat_format.prepare_tokenizer(tokenizer, "auto"):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.use_cache = False
    generator = torch.Generator().manual_seed(0)
    rows = batch_size * steps
    ids = torch.randint(5, min(len(tokenizer), 40_000), (rows, max_length), generator=generator)
    labels = ids.clone()
    labels[:, :64] = -100  # a prompt, then the answer to the end of the pack
    dataset = Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})
    on_gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out,
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=1,
            learning_rate=1e-4,
            lr_scheduler_type="constant",
            max_length=max_length,
            packing=True,
            packing_strategy="bfd",
            activation_checkpointing=False,
            bf16=bf16,
            fp16=False,
            use_cpu=not on_gpu,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_pin_memory=on_gpu,
            completion_only_loss=False,
        )
        trainer = stage_trainer.make_trainer(model, tokenizer, dataset, config)
        stage = SimpleNamespace(name=shape)
        tp = SimpleNamespace(batch_size=batch_size, max_length=max_length)
        stage_trainer.fit_in_memory(trainer, stage, tp, bf16)
        if checkpointing != "auto":
            trainer.args.activation_checkpointing = checkpointing == "on"
            trainer.args.activation_checkpointing_kwargs = {"use_reentrant": False}
        checkpointing = bool(trainer.args.activation_checkpointing)
        model = trainer.model
        longest = max(len(row) for row in trainer.train_dataset["input_ids"])
        need = memory.step_memory(
            trainer.model, tokens=longest * batch_size, compute_bytes=2 if bf16 else 4, on_gpu=on_gpu
        )
        gc.collect()
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            reset_peak()
            before = resident()
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() if on_gpu else resident("VmHWM")
    estimate = need.total(checkpointing=checkpointing, margin=False)
    return {
        "shape": shape,
        "model": model_name,
        "max_length": max_length,
        "batch_size": batch_size,
        "bf16": bf16,
        "steps": steps,
        "checkpointing": checkpointing,
        "layers": model.config.num_hidden_layers,
        "estimate": estimate,
        "parts": need.parts(checkpointing=checkpointing),
        "measured": peak - before,
        "resident_before": before,
        "peak_resident": peak,
        "seconds": seconds,
        "tokens_per_s": longest * batch_size * steps / seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="demo,paper", help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--model", default=DEMO_MODEL)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--layers", type=int, default=0, help="a random SmolLM2-135M-shaped model with this many layers"
    )
    parser.add_argument(
        "--checkpointing",
        choices=["auto", "on", "off"],
        default="auto",
        help="auto: as orcac train decides (train._fit_in_memory)",
    )
    parser.add_argument("--quick", action="store_true", help="a 4-layer SmolLM2-shaped model at 1024 x 4, two steps")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(
            "RESULT " + json.dumps(measure(args.child, args.model, args.steps, args.layers, args.checkpointing)),
            flush=True,
        )
        return 0
    shapes, model, steps, layers = args.shapes.split(","), args.model, args.steps, args.layers
    if args.quick:
        from tests.support.tiny_model import tiny_model_dir

        shapes, model, layers = ["quick"], str(tiny_model_dir()), 4
    worst = 1.0
    print(
        f"{'shape':<6} {'layers':>6} {'length x batch':>14} {'ckpt':>4} {'estimate':>9} {'measured':>9} {'ratio':>6} "
        f"{'tokens/s':>8}  parts"
    )
    for shape in shapes:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_memory",
                "--child",
                shape,
                "--model",
                model,
                "--steps",
                str(steps),
                "--layers",
                str(layers),
                "--checkpointing",
                args.checkpointing,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not found:
            print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
            print(f"{shape}: failed (exit {done.returncode})")
            return 1
        r = json.loads(found[-1][len("RESULT ") :])
        ratio = r["estimate"] / r["measured"]
        worst = ratio if abs(ratio - 1) > abs(worst - 1) else worst
        print(
            f"{shape:<6} {r['layers']:>6} {r['max_length']:>6} x {r['batch_size']:<5} {'on' if r['checkpointing'] else 'off':>4} "
            f"{r['estimate'] / 2**30:>6.2f} GB {r['measured'] / 2**30:>6.2f} GB {ratio:>6.2f} "
            f"{r['tokens_per_s']:>8.0f}  {r['parts']}; peak resident {r['peak_resident'] / 2**30:.2f} GB, "
            f"{r['seconds']:.0f} s for {r['steps']} step(s)"
        )
    print(f"estimate / measured, furthest from 1: {worst:.2f} (goal 0.85 to 1.15)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
