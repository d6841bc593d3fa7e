"""Training throughput: orcac's packed SFTTrainer path against a naive padded, unpacked loop.

Same model, same Orca-like records with mixed lengths (most answers short, every fifth one
long), same optimizer and learning rate, in one run. Prints real (non-padding) tokens per
second and the share of padding tokens for each, and the ratio. Usage:

    .venv/bin/python -m benchmarks.bench_train [--examples 192] [--max-length 512] [--hidden 256]
    .venv/bin/python -m benchmarks.bench_train --model local/smollm2-135m-instruct --short-answers 0.75

The model is a small random Llama (SmolLM2 tokenizer, 4 layers, hidden 256 by default) so the
run takes a few minutes on 2 CPU cores; the ratio, not the absolute number, is the result.
`--model` trains a real one instead (the demo's, from the model cache). `--short-answers F`
gives that share of the records a one-line answer (`Answer: 42`, as the direct_answer strategy
writes; the demo's records are 73% such), where the answer-only vocabulary head matters most.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback  # noqa: E402

from orcac.runtime.commands.train import trainer as stage_trainer  # noqa: E402
from orcac.runtime.models import chat_format  # noqa: E402
from tests.support.plans import ERASE  # noqa: E402
from tests.support.tiny_model import tiny_model_dir  # noqa: E402
from tests.support.train_data import orca_rows  # noqa: E402


def make_model(tokenizer, hidden: int, layers: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.config.use_cache = False
    return model


def naive(model, encoded, *, batch_size: int, lr: float, epochs: int, pad_id: int) -> dict:
    """Shuffle, batch `batch_size` examples, right-pad to the longest, one AdamW step per batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    real = padded = steps = 0
    started = time.perf_counter()
    for epoch in range(epochs):
        order = list(range(len(encoded)))
        random.Random(epoch).shuffle(order)
        for start in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[start : start + batch_size]]
            width = max(len(e.input_ids) for e in batch)
            ids = torch.full((len(batch), width), pad_id)
            labels = torch.full((len(batch), width), -100)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, e in enumerate(batch):
                n = len(e.input_ids)
                ids[row, :n] = torch.tensor(e.input_ids)
                labels[row, :n] = torch.tensor(e.labels)
                mask[row, :n] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            real += int(mask.sum())
            padded += ids.numel()
            steps += 1
    seconds = time.perf_counter() - started
    return {"tokens": real, "slots": padded, "seconds": seconds, "steps": steps, "loss": float(loss.detach())}


class _Clock(TrainerCallback):
    """Time the training loop only (dataset preparation excluded, as for the naive loop)."""

    def __init__(self):
        self.started = self.seconds = 0.0
        self.slots = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.started


def packed(
    model,
    tokenizer,
    encoded,
    *,
    max_length: int,
    batch_size: int,
    lr: float,
    epochs: int,
    out: Path,
    bf16: bool = False,
    before: bool = False,
) -> dict:
    """orcac's path: SFTTrainer, packing (best-fit decreasing, padding-free), our labels; with
    `bf16`, autocast as `orcac train` runs it (bf16 matmuls, fp32 weights and optimizer); with
    `before`, as orcac trained until this comparison: TRL's padding-free layout (a batch's packs
    end to end in one row) and the model's own loss (the vocabulary head over every token),
    instead of one pack a row (runtime/training/batches.py) and the head over the labelled
    positions only (runtime/training/loss.py)."""
    from datasets import Dataset
    from trl import SFTConfig

    dataset = Dataset.from_dict({"input_ids": [e.input_ids for e in encoded], "labels": [e.labels for e in encoded]})
    clock = _Clock()
    trainer = stage_trainer.make_trainer(
        model,
        tokenizer,
        dataset,
        SFTConfig(
            output_dir=str(out),
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=lr,
            lr_scheduler_type="constant",
            max_length=max_length,
            packing=True,
            packing_strategy="bfd",
            activation_checkpointing=False,
            bf16=bf16,
            use_cpu=not torch.cuda.is_available(),
            logging_steps=10_000,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_pin_memory=False,
            completion_only_loss=False,
        ),
        callbacks=[clock],
    )
    if before:
        import types

        from transformers import Trainer
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        trainer.compute_loss = types.MethodType(Trainer.compute_loss, trainer)
        trainer.data_collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
    packs = trainer.train_dataset
    real = sum(len(x) for x in packs["input_ids"]) * epochs
    # One pack a row: a batch is right-padded to its longest pack (bfd packs are nearly full);
    # padding-free (`before`): the packs end to end, so the only slots are real tokens. Either
    # way, the padded layout's slots are counted for the record.
    rows = [len(x) for x in packs["input_ids"]]
    padded_layout = (
        sum(max(rows[i : i + batch_size]) * len(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size))
        * epochs
    )
    result = trainer.train()
    return {
        "tokens": real,
        "slots": real if before else padded_layout,
        "slots_if_padded": padded_layout,
        "seconds": clock.seconds,
        "steps": trainer.state.global_step,
        "packs": len(rows),
        "loss": result.training_loss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=192)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8, help="naive: examples per step")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the fastest of each path counts")
    parser.add_argument("--bf16", action="store_true", help="also orcac's packed path in bf16 autocast, beside fp32")
    parser.add_argument("--model", help="a model string (e.g. local/smollm2-135m-instruct) instead of the random Llama")
    parser.add_argument("--short-answers", type=float, default=0.0, metavar="F", help="share of one-line answers")
    parser.add_argument("--no-naive", action="store_true", help="leave out the naive loop (slow at 135M)")
    parser.add_argument(
        "--demo-erase", action="store_true", help="the demo's erase message (Orca 2's cautious one) as system turn"
    )
    args = parser.parse_args()
    torch.manual_seed(0)

    from transformers import AutoTokenizer

    if args.model:
        from orcac.runtime.models import loading

        base, tokenizer = loading.load_causal_lm(args.model)
        base.config.use_cache = False
    else:
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir())
    if chat_format.prepare_tokenizer(tokenizer) and args.model:
        base.resize_token_embeddings(len(tokenizer))
    rows = orca_rows("add", args.examples // 2, seed=1) + orca_rows("mul", args.examples - args.examples // 2, seed=2)
    for i, row in enumerate(rows):
        if (i * args.short_answers) % 1 + args.short_answers >= 1:  # spread evenly: F of every row
            row["assistant"] = f"Answer: {row['gold']}"
    system = ERASE
    if args.demo_erase:
        from orcac.compiler import compile_spec

        plan = compile_spec(ROOT / "examples/cautious_reasoner/cautious.orca", "/tmp/never-written/cautious.plan.yaml")
        system = plan.erase["cautious"].system
    encoded = [
        chat_format.encode(tokenizer, system, r["user"], r["assistant"], max_length=args.max_length) for r in rows
    ]
    lengths = sorted(len(e.input_ids) for e in encoded)
    mean = sum(lengths) / len(lengths)
    # Packs hold about max_length tokens; pick packs per step so both paths see similar tokens per step.
    pack_batch = max(1, round(args.batch_size * mean / args.max_length))
    print(
        f"data: {len(encoded)} Orca-like examples, tokens min {lengths[0]} median {lengths[len(lengths) // 2]} "
        f"max {lengths[-1]} mean {mean:.0f}, {sum(r['assistant'].startswith('Answer:') for r in rows)} one-line answers, "
        f"{100 * sum(sum(x != -100 for x in e.labels) for e in encoded) / sum(lengths):.0f}% of tokens labelled; model: "
        + (args.model if args.model else f"Llama hidden {args.hidden}, {args.layers} layers")
        + f", vocab {len(tokenizer)}; {torch.get_num_threads()} CPU threads; torch {torch.__version__}"
    )

    lr = 1e-4
    if not args.model:
        base = make_model(tokenizer, args.hidden, args.layers)
    state = {k: v.clone() for k, v in base.state_dict().items()}
    # Alternate the two paths and keep each one's fastest round: other work on a shared
    # machine then slows both alike instead of whichever happened to run during it.
    naive_result = packed_result = bf16_result = before_result = None
    for _ in range(args.rounds):
        if not args.no_naive:
            base.load_state_dict(state)
            r = naive(
                base, encoded, batch_size=args.batch_size, lr=lr, epochs=args.epochs, pad_id=tokenizer.pad_token_id
            )
            naive_result = r if naive_result is None or r["seconds"] < naive_result["seconds"] else naive_result
        base.load_state_dict(state)
        with tempfile.TemporaryDirectory() as out:
            r = packed(
                base,
                tokenizer,
                encoded,
                max_length=args.max_length,
                batch_size=pack_batch,
                lr=lr,
                epochs=args.epochs,
                out=Path(out),
            )
        packed_result = r if packed_result is None or r["seconds"] < packed_result["seconds"] else packed_result
        base.load_state_dict(state)
        with tempfile.TemporaryDirectory() as out:
            r = packed(
                base,
                tokenizer,
                encoded,
                max_length=args.max_length,
                batch_size=pack_batch,
                lr=lr,
                epochs=args.epochs,
                out=Path(out),
                before=True,
            )
        before_result = r if before_result is None or r["seconds"] < before_result["seconds"] else before_result
        if args.bf16:
            base.load_state_dict(state)
            with tempfile.TemporaryDirectory() as out:
                r = packed(
                    base,
                    tokenizer,
                    encoded,
                    max_length=args.max_length,
                    batch_size=pack_batch,
                    lr=lr,
                    epochs=args.epochs,
                    out=Path(out),
                    bf16=True,
                )
            bf16_result = r if bf16_result is None or r["seconds"] < bf16_result["seconds"] else bf16_result

    def line(name, r, extra=""):
        pad = 1 - r["tokens"] / r["slots"]
        print(
            f"{name:<28} {r['tokens'] / r['seconds']:>9.0f} tok/s   padding {100 * pad:5.1f}%   "
            f"{r['steps']:>4} steps   {r['seconds']:6.1f} s{extra}"
        )

    print(f"{'path':<28} {'tokens/s':>9}         {'padding':>8}")
    if naive_result is not None:
        line(f"naive padded (bs {args.batch_size})", naive_result)
    line(
        f"orcac packed (bs {pack_batch} x {args.max_length})",
        packed_result,
        f"   ({packed_result['packs']} packs, one a row)",
    )
    line(
        "packed, one row, every token",
        before_result,
        f"   (padding-free, head on every token; final loss {before_result['loss']:.3f} vs {packed_result['loss']:.3f})",
    )
    if bf16_result is not None:
        line(
            "orcac packed, bf16 autocast",
            bf16_result,
            f"   (final loss {bf16_result['loss']:.3f} vs fp32 {packed_result['loss']:.3f})",
        )
    if naive_result is not None:
        speedup = (packed_result["tokens"] / packed_result["seconds"]) / (
            naive_result["tokens"] / naive_result["seconds"]
        )
        print(f"speed-up: {speedup:.2f}x real tokens/s (goal >= 1.5x); padding goal <= 5%")
    head = (packed_result["tokens"] / packed_result["seconds"]) / (before_result["tokens"] / before_result["seconds"])
    print(f"one pack a row, answer-only head / one row, head everywhere: {head:.2f}x real tokens/s")
    if bf16_result is not None:
        from orcac.runtime.models import precision

        ratio = (bf16_result["tokens"] / bf16_result["seconds"]) / (packed_result["tokens"] / packed_result["seconds"])
        print(f"bf16 / fp32: {ratio:.2f}x real tokens/s; precision auto here: {precision.choose('auto')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
