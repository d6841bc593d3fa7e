"""A stage's trainer: its records encoded (the erase message as the system turn, labels on the
teacher's tokens only) and packed to max_length, TRL's SFTTrainer over them with orcac's loss
(or the distill trainer), LoRA where the plan asks, and whether a step needs activation
checkpointing to fit in memory."""

from __future__ import annotations

import math
import sys

from orcac.errors import OrcacError
from orcac.runtime.models import chat_format
from orcac.runtime.training import distill, memory
from orcac.runtime.training.processes import cuda_available, log


def stage_trainer(
    model,
    tokenizer,
    stage,
    index,
    rows,
    *,
    plan,
    stage_dir,
    bf16=False,
    callbacks=(),
    teacher=None,
    tokenizer_grew=False,
):
    """The stage's SFTTrainer over its encoded, packed records (not yet trained).

    `tokenizer_grew`: the student's tokenizer gained tokens (student.Student), so a LoRA
    adapter trains the embeddings in full."""
    import datasets
    from trl import SFTConfig

    if not sys.stderr.isatty():
        datasets.disable_progress_bars()  # TRL's "Packing train dataset" bar, as raw text in a log
    tp = plan.train
    encoded = encode_records(tokenizer, plan, rows, tp.max_length)
    dataset = datasets.Dataset.from_dict(
        {"input_ids": [e.input_ids for e in encoded], "labels": [e.labels for e in encoded]}
    )
    truncated = sum(e.truncated for e in encoded)
    tokens = sum(len(e.input_ids) for e in encoded)
    log(
        f"stage {index + 1}/{len(tp.stages)} {stage.name}: {len(encoded)} examples from "
        f"{', '.join(stage.tasks)}, {tokens} tokens, {stage.epochs:g} epoch(s)"
        + (f"; {truncated} answer(s) cut to max_length {tp.max_length}" if truncated else "")
    )
    config = SFTConfig(
        output_dir=str(stage_dir),
        num_train_epochs=stage.epochs,
        per_device_train_batch_size=tp.batch_size,
        gradient_accumulation_steps=tp.grad_accum,
        learning_rate=tp.lr,
        lr_scheduler_type="constant_with_warmup" if tp.schedule == "constant" else tp.schedule,
        warmup_steps=tp.warmup_ratio,  # a float below 1 is a share of the stage's steps
        seed=tp.seed,
        data_seed=tp.seed,
        bf16=bf16,  # autocast: bf16 matmuls, fp32 master weights and optimizer state
        fp16=False,
        max_length=tp.max_length,
        packing=tp.packing,
        packing_strategy="bfd",  # best-fit decreasing: whole examples, isolated; one pack a row (batches.py)
        activation_checkpointing=False,  # TRL turns it on by default; it costs a third more compute
        logging_steps=1,
        include_num_input_tokens_seen="all",
        save_strategy="no",  # checkpoints by time instead: see callbacks.SaveEvery
        save_total_limit=1,
        report_to="none",
        disable_tqdm=not sys.stderr.isatty(),
        dataloader_pin_memory=cuda_available(),
        # on a CPU: what makes torchrun use gloo (see processes.wait_for_everyone), and lets bf16 autocast run
        use_cpu=not cuda_available(),
        completion_only_loss=False,  # the labels already mask everything but the answer
    )
    from transformers import set_seed

    # TRL adds the LoRA adapters (random weights) before the Trainer seeds itself: seed first, so
    # a stage starts the same whether the stages before it ran in this process or were skipped.
    set_seed(tp.seed)
    peft_config = lora_config(tp.lora, tokenizer_grew=tokenizer_grew)
    if teacher is not None:  # objective = distill: pairs of contexts, unpacked (orcac/runtime/training/distill.py)
        trainer = distill.make_trainer(
            model,
            tokenizer,
            rows,
            plan=plan,
            teacher=teacher,
            config=config,
            callbacks=callbacks,
            peft_config=peft_config,
        )
    else:
        trainer = make_trainer(model, tokenizer, dataset, config, callbacks=callbacks, peft_config=peft_config)
    if config.disable_tqdm:  # not a terminal: one plain line per step (Steps) instead of raw dicts
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


def make_trainer(model, tokenizer, dataset, config, *, callbacks=(), peft_config=None):
    """SFTTrainer on a dataset that already has `input_ids` and `labels` (so TRL only packs it).

    The loss is `loss.answer_loss`: the model's cross-entropy over the teacher's tokens, with
    the vocabulary head applied only where a label is, rather than TRL's chunked log-prob head
    (which also computes entropy and accuracy metrics: on CPU a whole step 1.7x slower) or the
    model's own (the head over every prompt token). The value is the same: the sum over the
    teacher tokens of the batch over their count (benchmarks/bench_train.py, BENCHMARKS.md).
    """
    from trl import SFTTrainer

    from orcac.runtime.training import batches
    from orcac.runtime.training.loss import answer_loss

    class OrcacTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not self.model_accepts_loss_kwargs:
                num_items_in_batch = None  # then the Trainer divides a mean by the accumulation steps
            result = answer_loss(model, inputs, num_items_in_batch, return_outputs=return_outputs)
            if num_items_in_batch is not None and self.args.average_tokens_across_devices:
                # the count is over every process's batch: as Trainer.compute_loss, undo the mean
                # that DDP takes of the gradients
                scale = self.accelerator.num_processes
                result = (result[0] * scale, result[1]) if return_outputs else result * scale
            return result

        def _track_num_input_tokens(self, inputs):
            # train_steps.tokens and the step lines count the examples' tokens, not the padding
            # of one-pack rows (transformers' "non_padding" would also drop every <|im_end|>,
            # which is the pad token)
            positions = inputs.get("position_ids")
            if positions is None or "attention_mask" in inputs or positions.dim() != 2:
                return super()._track_num_input_tokens(inputs)
            import torch

            seen = torch.as_tensor(batches.real_tokens(positions), device=self.args.device, dtype=torch.int64)
            self.state.num_input_tokens_seen += self.accelerator.gather(seen).sum().item()

    trainer = OrcacTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        peft_config=peft_config,
    )
    if config.packing and not batches.uses_varlen_attention(trainer.model):
        # TRL takes no collator of ours with bfd packing (it insists on padding-free), so swap it in
        trainer.data_collator = batches.pack_rows_collator(tokenizer.pad_token_id)
    return trainer


def encode_records(tokenizer, plan, rows, max_length):
    """Encode (task, user, assistant) rows under each task's erase message; check max_length."""
    encoded = []
    for row in rows:
        task = plan.tasks[row["task"]]
        system = plan.erase[task.erase].system
        e = chat_format.encode(tokenizer, system, row["user"], row["assistant"], max_length=max_length)
        if e.prompt_tokens >= max_length:
            where = (
                f"record {row['id']} of task {row['task']}"
                if row.get("id") is not None
                else f"a record of task {row['task']}"
            )
            raise OrcacError(
                f"{where}: its prompt is {e.prompt_tokens} tokens (system + user), "
                f"longer than train.max_length = {max_length}",
                hint=f"raise max_length in the train block to at least {_round_up(e.prompt_tokens + 64)}, "
                "or shorten the task's prompt",
            )
        encoded.append(e)
    return encoded


def planned_steps(rows: int, batch_size: int, grad_accum: int, epochs: float, world: int = 1) -> int:
    """Optimizer steps for `epochs` passes over `rows` (packed) rows.

    >>> planned_steps(10, 2, 1, 1.0)
    5
    >>> planned_steps(10, 2, 2, 3.0)
    9
    """
    batches = math.ceil(rows / (batch_size * world))
    per_epoch = max(1, batches // grad_accum + (batches % grad_accum > 0))
    return max(1, math.ceil(per_epoch * epochs))


def lora_config(lora, *, tokenizer_grew: bool):
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
        # Tokens added for the chat template have random embeddings: train them in full.
        modules_to_save=["embed_tokens", "lm_head"] if tokenizer_grew else None,
    )


def fit_in_memory(trainer, stage, tp, bf16) -> None:
    """Before the first step: turn on activation checkpointing if a step needs it to fit, or
    refuse in one line (orcac/runtime/training/memory.py), instead of the kernel's OOM killer mid-stage."""
    on_gpu = cuda_available()
    longest = max((len(row) for row in trainer.train_dataset["input_ids"]), default=0)
    need = memory.step_memory(
        trainer.model, tokens=longest * tp.batch_size, compute_bytes=2 if bf16 else 4, on_gpu=on_gpu
    )
    free, where = memory.free_memory(on_gpu)
    if memory.fit(need, free, where, stage=stage.name, batch_size=tp.batch_size, max_length=tp.max_length):
        # transformers 5 reads activation_checkpointing in train(); its old name, gradient_checkpointing,
        # is an alias only when the arguments are made, and set afterwards turned nothing on
        trainer.args.activation_checkpointing = True
        trainer.args.activation_checkpointing_kwargs = {"use_reentrant": False}
        log("  " + memory.checkpointing_line(need, free, where))


def _round_up(n: int, to: int = 64) -> int:
    return -(-n // to) * to
