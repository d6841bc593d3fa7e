"""`orcac train`: fine-tune the plan's student on the build's prompt-erased records.

The recipe, top to bottom (`command`):

  1. read the plan and every stage's records from DuckDB, before any compute is spent;
  2. load the student once (GGUF weights dequantised to fp32), give its tokenizer a chat
     template and a pad token;
  3. for each stage in order: encode its tasks' records (erase message as the system turn,
     labels on the teacher's tokens only), pack them to max_length, train with TRL's
     SFTTrainer, save the stage's weights; the next stage starts from them;
  4. save the final weights with the tokenizer, the resolved plan and its sha256; write the
     loss of every step to DuckDB and draw the loss curve.

A finished model is never destroyed: a re-run of an unchanged plan whose `final/` is complete
does nothing (`--retrain` trains again), a stopped run of the same plan resumes where it
stopped, and every `final/` (the student's and each stage's) is written beside the old one and
renamed into place once complete, so a kill at any moment leaves a model that loads.

Multi-GPU: the same command runs unchanged under `torchrun --nproc-per-node N -m orcac.cli
train spec.orca` or `accelerate launch -m orcac.cli train spec.orca`; the Trainer reads the
process group from the environment, and only the main process writes files and DuckDB rows.

Packing puts several examples in one row (a pack) without a padding token between them. Each
keeps its own position ids (0, 1, ...) and there is no attention mask, from which transformers
builds a block-diagonal causal mask for the sdpa, eager and flash kernels, so no example
attends to another; each pack is a row of its own in the batch (train/batches.py: laid end to
end, attention would cost the square of the whole batch). `isolation_check` verifies that on
the loaded student before training and says so in the log when it does not hold.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
import uuid
from pathlib import Path

from transformers import TrainerCallback

from orcac.errors import OrcacError, printable
from orcac.runtime.context import RunContext
from orcac.runtime.models import chat_format, precision
from orcac.runtime.models.loading import save_model
from orcac.runtime.report import model_card
from orcac.runtime.train import distill, guard
from orcac.specs.plan_file import dump_plan

FINAL_DIR = "final"  # under TrainPlan.output: the trained model, tokenizer, plan.yaml, plan.sha256
STAGES_DIR = "stages"  # under TrainPlan.output: one directory per stage, with its checkpoints
STATE_FILE = "train_state.json"  # under TrainPlan.output: the run (id, plan hash, --max-steps) and whether it finished
STAGE_FILE = "stage.json"  # under a stage's directory: what it trained, for which run
# A checkpoint (weights + optimizer: 1.6 GB for a 135M student) after the first step that
# ends this long after the last one: a resumed run then repeats at most this much work, and a
# short stage writes none (its final weights are saved anyway).
CHECKPOINT_EVERY_S = 300.0

# ---- the recipe ------------------------------------------------------------------------


def command(context: RunContext, args) -> int:
    # out of memory: one line and exit 1, never the kernel's bare `Killed` (train/guard.py)
    spec = context.plan.spec
    return guard.supervised(
        lambda: guard.out_of_memory_is_an_error(lambda: run(context, resume=args.resume, retrain=args.retrain, max_steps=args.max_steps), spec=spec),
        spec=spec,
        on_killed=lambda: _killed(context),
    )


def _killed(context: RunContext) -> None:
    """The supervised child died by a signal: its run, if still 'running', failed."""
    try:
        run_id = json.loads((context.root / context.plan.train.output / STATE_FILE).read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        return  # killed before it wrote a run
    con = _connect(context.db)
    try:
        con.execute("UPDATE train_runs SET status = 'failed', ended_at = now() WHERE run_id = ? AND status = 'running'", [run_id])
    finally:
        con.close()


def run(context: RunContext, *, resume: bool = False, retrain: bool = False, max_steps: int | None = None) -> int:
    """Train every stage of the context's plan on the records in its database.

    A stopped run of the same plan (and --max-steps) resumes; `resume` insists on it (--resume:
    a changed plan is an error instead of a new run). A plan whose student is already trained
    is left alone unless `retrain`.

    The run's row in `train_runs` says how it ended: finished, failed or interrupted (Ctrl-C
    here; the OOM killer under `orcac train`: marked by the supervising parent, train/guard.py;
    a kill -9 of the whole command: by the next run, which finds it still 'running').
    """
    live: dict[str, str] = {}  # the run id, once its row is written
    try:
        return _run(context, resume=resume, retrain=retrain, max_steps=max_steps, live=live)
    except BaseException as error:
        if "run_id" in live:
            _end_run(context.db, live["run_id"], "interrupted" if isinstance(error, KeyboardInterrupt) else "failed")
        raise


def _run(context: RunContext, *, resume: bool, retrain: bool, max_steps: int | None, live: dict) -> int:
    plan, root, db_path = context.plan, context.root, context.db
    if plan.train is None:
        raise OrcacError("the plan has no train section", hint="add a `train { ... }` block to the spec")
    tp = plan.train
    plan_yaml, plan_sha = dump_plan(plan), context.plan_sha256  # saved with the model: eval compares them
    output = root / tp.output
    final = output / FINAL_DIR
    stage_dirs = [output / STAGES_DIR / f"{index + 1:02d}-{stage.name}" for index, stage in enumerate(tp.stages)]
    main = _is_main_process()

    # 1. Every stage's records, checked up front: a missing task fails now, not after stage 1.
    records = {stage.name: _stage_records(db_path, plan, stage) for stage in tp.stages}

    # 2. A student already trained on this plan and these records is left alone; a stopped run
    #    of them resumes.
    if main:
        for kept in [final, *(stage_dir / FINAL_DIR for stage_dir in stage_dirs)]:
            _put_back(kept)
    this_run = {"plan_sha256": plan_sha, "records": _records_digest(records), "max_steps": max_steps}
    state, resumed = _load_state(output, this_run, resume=resume, retrain=retrain)
    if state is None:
        _log(
            f"the student in {final} is already trained on this plan and its records (plan sha256 {plan_sha[:12]}): "
            "nothing to do (pass --retrain to train it again)"
        )
        return 0
    if main:
        for stage in tp.stages:
            _log(_mixture_line(stage, records[stage.name]))
    _wait_for_everyone()  # every rank has read (read-only) before the main one writes

    if main:
        if resumed:
            _log(f"resuming the stopped run {state['run_id']} in {output}")
        elif output.exists():
            kept = f"; {final} stays until the new one is complete" if final.is_dir() else ""
            _log(f"starting a new run in {output}{kept}")
            for stage_dir in stage_dirs:
                _drop_checkpoints(stage_dir)  # an older run's: never resumed into this one
        output.mkdir(parents=True, exist_ok=True)
        _write_state(output, state)

    # 3. The student, loaded once.
    student = plan.students.get(tp.student)
    if student is None:
        raise OrcacError(f"train.student {tp.student!r} is not a declared student")
    chosen = precision.choose(tp.precision)
    bf16 = chosen.bf16
    from transformers import set_seed

    set_seed(tp.seed)  # rows added for new tokens start random: the same ones in every run
    model, tokenizer = _load_student(student, root)
    # objective = distill: the local teacher whose token distributions the student learns
    teacher = None if tp.objective == "sft" else distill.load_teacher(plan, root, tokenizer, _load_student)
    chat_format.set_default_system(tokenizer, plan)  # saved with every stage: callers get the erase message
    grew = getattr(model, "_orcac_grew", False)  # the tokenizer grew: every stage's LoRA trains the embeddings
    isolated = isolation_check(model) if tp.packing else True
    if tp.packing and not isolated:
        _log(
            f"warning: the attention implementation {model.config._attn_implementation!r} does not isolate "
            "packed examples: each example can attend to the ones packed before it"
        )
    run_id = state["run_id"]
    if main:
        _write_run(db_path, run_id, plan_sha, tp, student.model, bf16, isolated, status="running")
        live["run_id"] = run_id
    _log(
        f"training {student.model} ({_count_params(model) / 1e6:.0f}M parameters) on {_device_name()}, "
        f"{chosen}, packing {'on' if tp.packing else 'off'}"
        + (" (examples isolated)" if tp.packing and isolated else "")
        + (f", LoRA r={tp.lora.r}" if tp.lora else "")
        + (f"; objective {tp.objective}, teacher {tp.distill.teacher} (pairs unpacked)" if teacher is not None else "")
    )

    # 4. Stages in order; each starts from the weights the previous one saved.
    for index, stage in enumerate(tp.stages):
        stage_dir = stage_dirs[index]
        if resumed and _stage_done(stage_dir, run_id):
            _log(f"stage {stage.name}: done before the run stopped, skipped")
            model = None  # loaded from this stage's weights if a later stage needs them
            continue
        if model is None:
            model, _ = _load_dir(_previous_final(output, index, tp))
            model._orcac_grew = grew  # weights from disk do not say how the tokenizer grew
        model = train_stage(
            model,
            tokenizer,
            stage,
            index,
            records[stage.name],
            plan=plan,
            stage_dir=stage_dir,
            run_id=run_id,
            db_path=db_path if main else None,
            bf16=bf16,
            resume=resumed,
            max_steps=max_steps,
            teacher=teacher,
        )
        if main and index > 0 and not tp.keep_stages:
            # The next stage (or a resumed run) starts from this one's weights, not the last one's.
            shutil.rmtree(stage_dirs[index - 1] / FINAL_DIR, ignore_errors=True)
        if tp.lora is not None:
            # A merged LoRA model carries peft's leftovers in memory; the next stage starts from
            # what this one saved, exactly as a resumed run does (measured: they differed).
            model = None

    # 5. The final weights, with the tokenizer, the resolved plan and its hash; the old final/
    #    stays until this one is complete.
    if main:
        if model is None:
            model, _ = _load_dir(_previous_final(output, len(tp.stages), tp))
        model.config.use_cache = True  # off for training only: generation wants the KV cache

        def write_final(directory: Path) -> None:
            save_model(model, tokenizer, directory)
            (directory / "plan.yaml").write_text(plan_yaml)
            (directory / "plan.sha256").write_text(f"{plan_sha}  plan.yaml\n")

        _write_beside(final, write_final)
        losses = _step_losses(db_path, run_id)
        final_loss = losses[-1][3] if losses else None
        _write_run(db_path, run_id, plan_sha, tp, student.model, bf16, isolated, status="finished", final_loss=final_loss)
        model_card.write(context, final)  # final/README.md: what the student is, how it was trained
        from orcac.runtime.report import plots

        plots.loss_curve(losses, output / "loss.png", title=f"orcac train: {plan.spec}")
        # Finished only now: a kill before this resumes with every stage done (a save, no step).
        _write_state(output, {**state, "finished": True})
        for stage_dir in stage_dirs:
            _drop_checkpoints(stage_dir)  # every stage is done: nothing left to resume
            if not tp.keep_stages:
                shutil.rmtree(stage_dir / FINAL_DIR, ignore_errors=True)
        _log(f"saved the trained student to {final}; loss curve: {output / 'loss.png'}")
        _log(_disk_line(output, final, keep_stages=tp.keep_stages))
    return 0


def train_stage(model, tokenizer, stage, index, rows, *, plan, stage_dir, run_id, db_path, bf16, resume, max_steps, teacher=None):
    """Train one stage with SFTTrainer; return the trained model (LoRA merged into it)."""
    tp = plan.train
    steps = Steps(run_id=run_id, stage=stage.name, stage_index=index, db_path=db_path)
    weights_in = fingerprint(model)
    trainer = stage_trainer(
        model, tokenizer, stage, index, rows, plan=plan, stage_dir=stage_dir, bf16=bf16, callbacks=[steps], teacher=teacher
    )
    planned = planned_steps(len(trainer.train_dataset), tp.batch_size, tp.grad_accum, stage.epochs, _world_size())
    if max_steps and max_steps < planned:
        trainer.args.max_steps = max_steps
        _log(f"  capped at {max_steps} of {planned} steps (--max-steps)")

    _fit_in_memory(trainer, stage, tp, bf16)
    checkpoint = _last_checkpoint(stage_dir) if resume else None
    if checkpoint:
        _log(f"  resuming from {checkpoint.name}")
        steps.forget_after(_checkpoint_step(checkpoint))
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    steps.flush()

    model = trainer.model
    if tp.lora is not None:
        model = model.merge_and_unload()
    weights_out = fingerprint(model)
    if trainer.is_world_process_zero():
        _write_beside(stage_dir / FINAL_DIR, lambda directory: save_model(model, tokenizer, directory))
        summary = {
            "stage": stage.name,
            "index": index,
            "run_id": run_id,
            "steps": trainer.state.global_step,
            "final_loss": steps.last_loss,
            "weights_in": weights_in,
            "weights_out": weights_out,
        }
        # Beside final/, not in it: the summary outlives the weights (keep_stages = false).
        _write_text_beside(stage_dir / STAGE_FILE, json.dumps(summary, indent=2))
        _drop_checkpoints(stage_dir)
    _log(f"  stage {stage.name} done: {trainer.state.global_step} steps, last loss {steps.last_loss:.4f}")
    return model


def _fit_in_memory(trainer, stage, tp, bf16) -> None:
    """Before the first step: turn on activation checkpointing if a step needs it to fit, or
    refuse in one line (orcac/runtime/train/memory.py), instead of the kernel's OOM killer mid-stage."""
    from orcac.runtime.train import memory

    on_gpu = _cuda_available()
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
        _log("  " + memory.checkpointing_line(need, free, where))


def stage_trainer(model, tokenizer, stage, index, rows, *, plan, stage_dir, bf16=False, callbacks=(), teacher=None):
    """The stage's SFTTrainer over its encoded, packed records (not yet trained)."""
    import datasets
    from trl import SFTConfig

    if not sys.stderr.isatty():
        datasets.disable_progress_bars()  # TRL's "Packing train dataset" bar, as raw text in a log
    tp = plan.train
    encoded = encode_records(tokenizer, plan, rows, tp.max_length)
    dataset = datasets.Dataset.from_dict({"input_ids": [e.input_ids for e in encoded], "labels": [e.labels for e in encoded]})
    truncated = sum(e.truncated for e in encoded)
    tokens = sum(len(e.input_ids) for e in encoded)
    _log(
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
        save_strategy="no",  # checkpoints by time instead: see SaveEvery
        save_total_limit=1,
        report_to="none",
        disable_tqdm=not sys.stderr.isatty(),
        dataloader_pin_memory=_cuda_available(),
        # on a CPU: what makes torchrun use gloo (see _wait_for_everyone), and lets bf16 autocast run
        use_cpu=not _cuda_available(),
        completion_only_loss=False,  # the labels already mask everything but the answer
    )
    from transformers import set_seed

    # TRL adds the LoRA adapters (random weights) before the Trainer seeds itself: seed first, so
    # a stage starts the same whether the stages before it ran in this process or were skipped.
    set_seed(tp.seed)
    callbacks = [SaveEvery(CHECKPOINT_EVERY_S), *callbacks, *extra_callbacks(stage, index)]
    peft_config = _lora_config(tp.lora, tokenizer_grew=getattr(model, "_orcac_grew", False))
    if teacher is not None:  # objective = distill: pairs of contexts, unpacked (orcac/runtime/train/distill.py)
        trainer = distill.make_trainer(
            model, tokenizer, rows, plan=plan, teacher=teacher, config=config, callbacks=callbacks, peft_config=peft_config
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

    from orcac.runtime.train import batches
    from orcac.runtime.train.loss import answer_loss

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
            where = f"record {row['id']} of task {row['task']}" if row.get("id") is not None else f"a record of task {row['task']}"
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


# ---- packing isolation ------------------------------------------------------------------


def isolation_check(model) -> bool:
    """Whether two packed sequences give the same logits as each run alone on this model."""
    import torch

    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.get_text_config().vocab_size
    a = torch.randint(0, vocab, (6,), generator=generator).to(device)
    b = torch.randint(0, vocab, (5,), generator=generator).to(device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        alone = model(input_ids=b[None], use_cache=False).logits[0].float()
        packed = model(
            input_ids=torch.cat([a, b])[None],
            position_ids=torch.cat([torch.arange(6), torch.arange(5)])[None].to(device),
            use_cache=False,
        ).logits[0, 6:].float()
    model.train(was_training)
    return bool(torch.allclose(alone, packed, atol=1e-3, rtol=1e-3))


# ---- loss per step ------------------------------------------------------------------------


class Steps(TrainerCallback):
    """Collect the loss of every step; write them to DuckDB whenever a checkpoint is saved."""

    def __init__(self, run_id, stage, stage_index, db_path):
        self.run_id, self.stage, self.stage_index, self.db_path = run_id, stage, stage_index, db_path
        self.pending: list[tuple] = []
        self.last_loss = float("nan")
        self.started = time.monotonic()
        self.tokens_seen = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.tokens_seen = state.num_input_tokens_seen or 0  # non-zero when resumed

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])
            seen = int(logs.get("num_input_tokens_seen", 0) or 0)
            tokens, self.tokens_seen = seen - self.tokens_seen, seen
            if args.disable_tqdm:
                _log(
                    f"  {self.stage} step {state.global_step}/{state.max_steps}: loss {self.last_loss:.4f}, "
                    f"lr {_float(logs.get('learning_rate')) or 0:.2e}, {tokens} tokens, "
                    f"{time.monotonic() - self.started:.0f}s"
                )
            self.pending.append(
                (
                    self.run_id,
                    self.stage,
                    self.stage_index,
                    state.global_step,
                    float(state.epoch or 0.0),
                    self.last_loss,
                    _float(logs.get("learning_rate")),
                    _float(logs.get("grad_norm")),
                    tokens,
                    time.monotonic() - self.started,
                )
            )

    def on_save(self, args, state, control, **kwargs):
        self.flush()

    def flush(self):
        if self.db_path is None or not self.pending:
            self.pending.clear()
            return
        con = _connect(self.db_path)
        try:
            con.executemany("INSERT INTO train_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self.pending)
        finally:
            con.close()
        self.pending.clear()

    def forget_after(self, step: int):
        """Drop rows a stopped run logged after its last checkpoint: they are trained again."""
        if self.db_path is None:
            return
        con = _connect(self.db_path)
        try:
            con.execute(
                "DELETE FROM train_steps WHERE run_id = ? AND stage_index = ? AND step > ?",
                [self.run_id, self.stage_index, step],
            )
        finally:
            con.close()



class SaveEvery(TrainerCallback):
    """Ask for a checkpoint at the end of the first step `seconds` after the last one."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.last = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.last >= self.seconds and state.global_step < state.max_steps:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):
        self.last = time.monotonic()


def extra_callbacks(stage, index) -> list:
    """Callbacks added to every stage's trainer; tests replace this to stop a run mid-stage."""
    return []


def _float(value):
    return None if value is None else float(value)


# ---- DuckDB ---------------------------------------------------------------------------------


def _connect(db_path: Path):
    from orcac.runtime.store.database import open_database

    return open_database(db_path)


def _stage_records(db_path: Path, plan, stage) -> list[dict]:
    """The stage's training records (task, user, assistant, id) under each task's chosen strategy."""
    from orcac.runtime.store.database import open_database

    if not db_path.is_file():
        raise OrcacError(f"no build database at {db_path}", hint=f"run `orcac build {plan.spec}` first")
    con = open_database(db_path, spec=plan.spec, read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "records" not in tables:
            raise OrcacError(f"{db_path} has no training records", hint=f"run `orcac build {plan.spec}` first")
        wanted = [(t, plan.tasks[t].strategy) for t in stage.tasks]
        rows = con.execute(
            """
            SELECT task, "user", assistant, record_id FROM records
            JOIN (SELECT unnest(?) AS task, unnest(?) AS chosen) USING (task)
            WHERE split = 'train' AND (chosen IS NULL OR strategy = chosen)
            ORDER BY task, row_index, record_id
            """,
            [[t for t, _ in wanted], [s for _, s in wanted]],
        ).fetchall()
    finally:
        con.close()
    found = {r[0] for r in rows}
    missing = [t for t in stage.tasks if t not in found]
    if len(missing) == len(stage.tasks):
        raise OrcacError(
            f"stage {stage.name}: no training records for task(s) {', '.join(missing)} in {db_path}",
            hint=f"run `orcac build {plan.spec}` first (or check that its teacher answers pass the tasks' accept rules)",
        )
    if missing:
        _log(
            f"warning: stage {stage.name}: no training records for task(s) {', '.join(missing)} "
            "(no teacher answer passed their accept rules); training on the others"
        )
    out = [{"task": t, "user": u, "assistant": a, "id": i} for t, u, a, i in rows]
    return _take_portions(out, stage, seed=plan.train.seed)


def _take_portions(records: list[dict], stage, *, seed: int) -> list[dict]:
    """Each task's portion of its records (stage `tasks = [a(30%), b(500)]`), drawn by the
    train seed; every record keeps a `built` count of its task's records before the draw."""
    from orcac import sampling

    by_task: dict[str, list[dict]] = {}
    for r in records:
        by_task.setdefault(r["task"], []).append(r)
    kept: set[str] = set()
    for task, rows in by_task.items():
        p = stage.portions.get(task)
        ids = [r["id"] for r in rows]
        chosen = ids if p is None else sampling.portion(ids, seed=seed, stage=stage.name, task=task, share=p.share, at_most=p.at_most)
        kept.update(chosen)
        for r in rows:
            r["built"] = len(rows)
    return [r for r in records if r["id"] in kept]


def _mixture_line(stage, records: list[dict]) -> str:
    """`stage s: a 36 of 72 (50%), b 18, c 500 of 812 (at most 500); 554 examples`."""
    parts = []
    for task in stage.tasks:
        mine = [r for r in records if r["task"] == task]
        if not mine:
            parts.append(f"{task} 0")
            continue
        p = stage.portions.get(task)
        built = mine[0]["built"]
        if p is None:
            parts.append(f"{task} {len(mine)}")
        elif p.share is not None:
            parts.append(f"{task} {len(mine)} of {built} ({p.share:.0%})")
        else:
            parts.append(f"{task} {len(mine)} of {built} (at most {p.at_most})")
    return f"stage {stage.name}: {', '.join(parts)}; {len(records)} examples"


def _write_run(db_path, run_id, plan_sha, tp, student_model, bf16, isolated, *, status, final_loss=None):
    import importlib.metadata as md

    versions = json.dumps({p: md.version(p) for p in ("torch", "transformers", "trl", "peft")}, sort_keys=True)
    con = _connect(db_path)
    try:
        con.execute(
            """
            INSERT INTO train_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, now(), NULL, ?, NULL, ?)
            ON CONFLICT (run_id) DO UPDATE SET status = excluded.status
            """,
            [run_id, plan_sha, student_model, tp.output, _device_name(), "bf16" if bf16 else "fp32",
             tp.packing, isolated, status, versions],
        )
        if status == "running":  # another run of this output still 'running' died without a word
            con.execute(
                "UPDATE train_runs SET status = 'interrupted' WHERE status = 'running' AND output = ? AND run_id <> ?",
                [tp.output, run_id],
            )
        if status == "finished":
            con.execute(
                "UPDATE train_runs SET ended_at = now(), final_loss = ? WHERE run_id = ?", [final_loss, run_id]
            )
    finally:
        con.close()


def _end_run(db_path: Path, run_id: str, status: str) -> None:
    con = _connect(db_path)
    try:
        con.execute("UPDATE train_runs SET status = ?, ended_at = now() WHERE run_id = ?", [status, run_id])
    finally:
        con.close()


def _step_losses(db_path: Path, run_id: str) -> list[tuple]:
    """(stage_index, stage, step, loss) of a run, in training order."""
    con = _connect(db_path)
    try:
        return con.execute(
            "SELECT stage_index, stage, step, loss FROM train_steps WHERE run_id = ? ORDER BY stage_index, step",
            [run_id],
        ).fetchall()
    finally:
        con.close()


# ---- resume state ----------------------------------------------


def _load_state(output: Path, this_run: dict, *, resume: bool, retrain: bool):
    """(state, resumed): the stopped run of the same `this_run` (plan hash, records, --max-steps) to
    resume, or a new run; (None, False) when that run finished and final/ is still its own:
    nothing to do."""
    last = _read_json(output / STATE_FILE)
    if not last or "run_id" not in last:
        return {"run_id": uuid.uuid4().hex[:12], **this_run, "finished": False}, False
    # A state file written before `records`, `max_steps` or `finished` were kept matches on them.
    changed = [name for name, value in this_run.items() if last.get(name, value) != value]
    trained = _final_sha256(output / FINAL_DIR) == this_run["plan_sha256"]
    finished = last.get("finished", trained)
    if not changed and finished and trained and not retrain:
        return None, False
    if not changed and not finished:
        return {**last, **this_run}, True
    if resume and changed:
        was = {"plan_sha256": "another plan", "records": "other records (the build changed)"}.get(
            changed[0], f"--max-steps {last.get('max_steps')}"
        )
        raise OrcacError(
            f"--resume: the stopped run in {output} was started with {was}",
            hint="run `orcac train` without --resume to start a new run (the trained student in final/ stays "
            "until the new one is complete)",
        )
    return {"run_id": uuid.uuid4().hex[:12], **this_run, "finished": False}, False


def _records_digest(records: dict[str, list[dict]]) -> str:
    """Which records each stage trains on: a build that added or changed some trains anew."""
    digest = hashlib.sha256()
    for stage, rows in records.items():
        digest.update(json.dumps([stage, sorted(r["id"] for r in rows)]).encode())
    return digest.hexdigest()[:16]


def _write_state(output: Path, state: dict) -> None:
    _write_text_beside(output / STATE_FILE, json.dumps(state, indent=2))


def _final_sha256(final: Path) -> str | None:
    """The plan hash a complete final/ was trained on (plan.sha256 is its last file)."""
    try:
        return (final / "plan.sha256").read_text().split()[0]
    except (OSError, IndexError):
        return None


def _stage_done(stage_dir: Path, run_id: str) -> bool:
    """Whether this run trained the stage (a summary in the layout before stage.json moved
    beside final/ says no run: it belongs to the run being resumed)."""
    summary = _read_json(stage_dir / STAGE_FILE) or _read_json(stage_dir / FINAL_DIR / STAGE_FILE)
    return summary is not None and summary.get("run_id", run_id) == run_id


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _last_checkpoint(stage_dir: Path) -> Path | None:
    """The newest complete checkpoint. A kill during a save leaves a directory without the
    trainer_state.json the Trainer writes last (or without weights): skipped, and removed,
    for the one before it (the Trainer drops an older one only once the new one is saved)."""
    for checkpoint in sorted(_checkpoints(stage_dir), key=_checkpoint_step, reverse=True):
        if _checkpoint_complete(checkpoint):
            return checkpoint
        _log(f"  {checkpoint.name} is incomplete (its save was cut off): skipped")
        if _is_main_process():
            shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def _checkpoint_complete(checkpoint: Path) -> bool:
    state = _read_json(checkpoint / "trainer_state.json")
    weights = [*checkpoint.glob("*.safetensors"), *checkpoint.glob("*.bin"), *checkpoint.glob("*.index.json")]
    return state is not None and "global_step" in state and bool(weights)


def _checkpoints(stage_dir: Path) -> list[Path]:
    return [path for path in stage_dir.glob("checkpoint-*") if path.name.rsplit("-", 1)[-1].isdigit()]


def _checkpoint_step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[-1])


# ---- writing beside, renaming into place --------------------------------------------------


def _write_beside(target: Path, write) -> None:
    """`write(directory)` into a directory beside `target`, renamed into place once complete;
    the old `target` is removed only after. A kill leaves the old one or the new one, whole."""
    partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    partial.mkdir(parents=True)
    try:
        write(partial)
        old = _old_copy(target)
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        partial.rename(target)
    finally:
        _put_back(target)


def _put_back(target: Path) -> None:
    """Tidy what `_write_beside` left when stopped: its partial copies, and the old `target`,
    put back if the kill came between its two renames (else removed)."""
    old = _old_copy(target)
    if old.is_dir():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(target)
    for partial in target.parent.glob(f".{target.name}.partial-*"):
        shutil.rmtree(partial, ignore_errors=True)


def _old_copy(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def _write_text_beside(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def _disk_line(output: Path, final: Path, *, keep_stages: bool) -> str:
    """`out/student holds 540 MB: final/ 538 MB, ...`: what the run keeps on disk."""
    stages = output / STAGES_DIR
    line = f"{output} holds {_size_text(_disk_use(output))}: {FINAL_DIR}/ {_size_text(_disk_use(final))}"
    if keep_stages:
        return line + f", {STAGES_DIR}/ {_size_text(_disk_use(stages))} (keep_stages = true)"
    return line + f"; each stage's weights were dropped once {FINAL_DIR}/ was written (keep_stages = true keeps them)"


def _disk_use(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _size_text(size: int) -> str:
    """
    >>> _size_text(538_000_000), _size_text(3_400), _size_text(2_500_000_000)
    ('538 MB', '3.4 kB', '2.5 GB')
    """
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} B"


def _drop_checkpoints(stage_dir: Path) -> None:
    for checkpoint in _checkpoints(stage_dir):
        shutil.rmtree(checkpoint, ignore_errors=True)


def _previous_final(output: Path, index: int, tp) -> Path:
    """The weights stage `index` starts from: the last finished stage's (index >= 1)."""
    previous = tp.stages[index - 1]
    return output / STAGES_DIR / f"{index:02d}-{previous.name}" / FINAL_DIR


# ---- models and devices -------------------------------------------------------------------------


def _load_student(student, root: Path):
    """The student and its tokenizer, with a chat template and a pad token (embeddings resized)."""
    from orcac.runtime.models import loading as hf_models

    model, tokenizer = hf_models.load_causal_lm(student.model, root)
    added = chat_format.prepare_tokenizer(tokenizer, student.chat_template)
    if added:
        model.resize_token_embeddings(len(tokenizer))
        model._orcac_grew = True
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.use_cache = False
    return model, tokenizer


def _load_dir(path: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    model.config.use_cache = False
    return model, None


def _lora_config(lora, *, tokenizer_grew: bool):
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


def fingerprint(model) -> str:
    """A short hash of the weights, to show which weights a stage started from."""
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(f"{tensor.double().sum().item():.10e}".encode())
    return digest.hexdigest()[:16]


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def _wait_for_everyone() -> None:
    if _world_size() > 1:
        from accelerate import PartialState

        # cpu=True where there is no GPU: without it accelerate sees no device to spread over
        # and leaves a torchrun launch undistributed (each rank would train on all the data).
        PartialState(cpu=not _cuda_available()).wait_for_everyone()


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _round_up(n: int, to: int = 64) -> int:
    return -(-n // to) * to


def _log(message: str) -> None:
    if _is_main_process():
        print(printable(message), file=sys.stderr, flush=True)
