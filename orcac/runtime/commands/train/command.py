"""`orcac train`: fine-tune the plan's student on the build's prompt-erased records.

The recipe (`TrainRecipe`), top to bottom:

  setup    every stage's records, read from DuckDB before any compute is spent (mixture.py);
           whether this is a new run, a stopped one to resume, or nothing to do (resume.py);
           the student loaded once, GGUF weights dequantised to fp32, with a chat template
           and a pad token (student.py); the distill teacher; the precision; whether packed
           examples are isolated; the run's row in train_runs
  train    each stage in order, from the weights the stage before it saved: its records
           encoded (erase message as the system turn, labels on the teacher's tokens only)
           and packed to max_length, the memory a step needs decided, TRL's SFTTrainer
           (trainer.py); the loss of every step to DuckDB (callbacks.py); the stage's weights
  save     the final weights with the tokenizer, the resolved plan and its sha256, the model
           card, the loss curve
  cleanup  the run's row says how it ended (finished, failed, interrupted); the database closed

A finished model is never destroyed: a re-run of an unchanged plan whose `final/` is complete
does nothing (`--retrain` trains again), a stopped run of the same plan resumes where it
stopped, and every `final/` (the student's and each stage's) is written beside the old one and
renamed into place once complete (saving.py), so a kill at any moment leaves a model that loads.

Multi-GPU: the same command runs unchanged under `torchrun --nproc-per-node N -m orcac.cli
train spec.orca` or `accelerate launch -m orcac.cli train spec.orca`; the Trainer reads the
process group from the environment, and only the main process writes files and DuckDB rows
(orcac/runtime/training/processes.py).
"""

from __future__ import annotations

import json
import shutil

from orcac.errors import OrcacError
from orcac.runtime.commands.train.callbacks import SaveEvery, Steps
from orcac.runtime.commands.train.mixture import mixture_line, records_digest, stage_records
from orcac.runtime.commands.train.resume import (
    checkpoint_step,
    drop_checkpoints,
    last_checkpoint,
    load_state,
    previous_final,
    run_id_in,
    stage_done,
    write_state,
)
from orcac.runtime.commands.train.saving import disk_line, put_back, write_beside, write_text_beside
from orcac.runtime.commands.train.student import (
    count_params,
    fingerprint,
    isolation_check,
    load_for_training,
    load_student,
    load_weights,
)
from orcac.runtime.commands.train.trainer import fit_in_memory, planned_steps, stage_trainer
from orcac.runtime.context import RunContext
from orcac.runtime.models import chat_format, precision
from orcac.runtime.models.loading import save_model
from orcac.runtime.results import model_card
from orcac.runtime.store import training as training_store
from orcac.runtime.store.database import Store
from orcac.runtime.store.training import TrainRun
from orcac.runtime.training import distill, guard
from orcac.runtime.training.layout import FINAL_DIR, STAGE_FILE, stage_dir
from orcac.runtime.training.processes import device_name, is_main_process, log, wait_for_everyone, world_size
from orcac.specs.plan_file import dump_plan

# A checkpoint (weights + optimizer: 1.6 GB for a 135M student) after the first step that
# ends this long after the last one: a resumed run then repeats at most this much work, and a
# short stage writes none (its final weights are saved anyway).
CHECKPOINT_EVERY_S = 300.0


def command(context: RunContext, args) -> int:
    # out of memory: one line and exit 1, never the kernel's bare `Killed` (training/guard.py)
    spec = context.plan.spec
    return guard.supervised(
        lambda: guard.out_of_memory_is_an_error(
            lambda: run(context, resume=args.resume, retrain=args.retrain, max_steps=args.max_steps), spec=spec
        ),
        spec=spec,
        on_killed=lambda: _killed(context),
    )


def _killed(context: RunContext) -> None:
    """The supervised child died by a signal: its run, if still 'running', failed."""
    run_id = run_id_in(context.root / context.plan.train.output)
    if run_id is None:
        return  # killed before it wrote a run
    with training_store.open_for_training(context.db) as store:
        training_store.fail_if_running(store, run_id)


def run(context: RunContext, *, resume: bool = False, retrain: bool = False, max_steps: int | None = None) -> int:
    """Train every stage of the context's plan on the records in its database.

    A stopped run of the same plan (and --max-steps) resumes; `resume` insists on it (--resume:
    a changed plan is an error instead of a new run). A plan whose student is already trained
    is left alone unless `retrain`.

    The run's row in `train_runs` says how it ended: finished, failed or interrupted (Ctrl-C
    here; the OOM killer under `orcac train`: marked by the supervising parent, training/guard.py;
    a kill -9 of the whole command: by the next run, which finds it still 'running').
    """
    recipe = TrainRecipe(context, resume=resume, retrain=retrain, max_steps=max_steps)
    try:
        if recipe.setup():
            recipe.train()
            recipe.save()
    except BaseException as error:
        recipe.cleanup(stopped_by=error)
        raise
    recipe.cleanup()
    return 0


def extra_callbacks(stage, index) -> list:
    """Callbacks added to every stage's trainer; tests replace this to stop a run mid-stage."""
    return []


class TrainRecipe:
    """One `orcac train`: `setup`, `train` (every stage), `save`; then `cleanup`, however it ended.

    Its state is on `self`, set in that order: what setup decided (the records, the run, the
    student, the precision, the run's row and its database connection), then, stage by
    stage, the weights the next stage starts from."""

    def __init__(
        self, context: RunContext, *, resume: bool = False, retrain: bool = False, max_steps: int | None = None
    ):
        if context.plan.train is None:
            raise OrcacError("the plan has no train section", hint="add a `train { ... }` block to the spec")
        self.context, self.plan, self.tp = context, context.plan, context.plan.train
        self.resume, self.retrain, self.max_steps = resume, retrain, max_steps
        self.output = context.root / self.tp.output
        self.final = self.output / FINAL_DIR
        self.stage_dirs = [stage_dir(self.output, index, stage.name) for index, stage in enumerate(self.tp.stages)]
        self.main = is_main_process()  # only it writes files and rows
        # setup
        self.records: dict[str, list[dict]] = {}  # stage -> its records
        self.state: dict = {}  # train_state.json: the run's id, what it trains on, whether it finished
        self.resumed = False
        self.student = None  # student.Student: the model as loaded, its tokenizer, whether that grew
        self.teacher = None  # objective = distill: the local teacher whose distributions the student learns
        self.precision = None  # models.precision.Precision
        self.isolated = True  # packed examples cannot attend to one another
        self.store: Store | None = None  # the run's one database connection (the main process's)
        self.run_row: TrainRun | None = None  # once written: cleanup says how the run ended
        # train: the weights the next stage starts from (None: the last finished stage's, from disk)
        self.model = None

    # ---- setup ----------------------------------------------------------------------------

    def setup(self) -> bool:
        """Everything the stages need, in order; False when the student is already trained."""
        # Every stage's records, checked up front: a missing task fails now, not after stage 1.
        self.records = {stage.name: stage_records(self.context.db, self.plan, stage) for stage in self.tp.stages}
        if not self._choose_run():
            return False
        if self.main:
            for stage in self.tp.stages:
                log(mixture_line(stage, self.records[stage.name]))
        wait_for_everyone()  # every rank has read (read-only) before the main one writes
        if self.main:
            self._prepare_output()
        self._load_models()
        self._begin_run()
        return True

    def _choose_run(self) -> bool:
        """A student already trained on this plan and these records is left alone (False); a
        stopped run of them resumes; else a new run."""
        if self.main:
            for kept in [self.final, *(directory / FINAL_DIR for directory in self.stage_dirs)]:
                put_back(kept)
        plan_sha = self.context.plan_sha256
        this_run = {"plan_sha256": plan_sha, "records": records_digest(self.records), "max_steps": self.max_steps}
        state, self.resumed = load_state(self.output, this_run, resume=self.resume, retrain=self.retrain)
        if state is None:
            log(
                f"the student in {self.final} is already trained on this plan and its records (plan sha256 {plan_sha[:12]}): "
                "nothing to do (pass --retrain to train it again)"
            )
            return False
        self.state = state
        return True

    def _prepare_output(self) -> None:
        if self.resumed:
            log(f"resuming the stopped run {self.state['run_id']} in {self.output}")
        elif self.output.exists():
            kept = f"; {self.final} stays until the new one is complete" if self.final.is_dir() else ""
            log(f"starting a new run in {self.output}{kept}")
            for directory in self.stage_dirs:
                drop_checkpoints(directory)  # an older run's: never resumed into this one
        self.output.mkdir(parents=True, exist_ok=True)
        write_state(self.output, self.state)

    def _load_models(self) -> None:
        """The student, loaded once; the distill teacher; the precision; packing's isolation."""
        plan, tp, root = self.plan, self.tp, self.context.root
        student = plan.students.get(tp.student)
        if student is None:
            raise OrcacError(f"train.student {tp.student!r} is not a declared student")
        self.precision = precision.choose(tp.precision, "train")  # applied by the Trainer: autocast over fp32 weights
        from transformers import set_seed

        set_seed(tp.seed)  # rows added for new tokens start random: the same ones in every run
        self.student = load_for_training(student, root)
        self.model = self.student.model
        # objective = distill: the local teacher whose token distributions the student learns
        self.teacher = (
            None if tp.objective == "sft" else distill.load_teacher(plan, root, self.student.tokenizer, load_student)
        )
        chat_format.set_default_system(
            self.student.tokenizer, plan
        )  # saved with every stage: callers get the erase message
        self.isolated = isolation_check(self.model) if tp.packing else True
        if tp.packing and not self.isolated:
            log(
                f"warning: the attention implementation {self.model.config._attn_implementation!r} does not isolate "
                "packed examples: each example can attend to the ones packed before it"
            )

    def _begin_run(self) -> None:
        """The run's row ('running') on the main process's one connection, and the line that says what trains."""
        tp = self.tp
        model_name = self.plan.students[tp.student].model
        if self.main:
            self.store = training_store.open_for_training(self.context.db)
            row = TrainRun(
                run_id=self.state["run_id"],
                plan_sha256=self.context.plan_sha256,
                student=model_name,
                output=tp.output,
                device=device_name(),
                precision="bf16" if self.precision.bf16 else "fp32",
                packing=tp.packing,
                isolated=self.isolated,
                versions=_versions(),
            )
            training_store.begin_run(self.store, row)
            self.run_row = row
        log(
            f"training {model_name} ({count_params(self.model) / 1e6:.0f}M parameters) on {device_name()}, "
            f"{self.precision}, packing {'on' if tp.packing else 'off'}"
            + (" (examples isolated)" if tp.packing and self.isolated else "")
            + (f", LoRA r={tp.lora.r}" if tp.lora else "")
            + (
                f"; objective {tp.objective}, teacher {tp.distill.teacher} (pairs unpacked)"
                if self.teacher is not None
                else ""
            )
        )

    # ---- train ----------------------------------------------------------------------------

    def train(self) -> None:
        """Stages in order; each starts from the weights the previous one saved."""
        for index, stage in enumerate(self.tp.stages):
            self.train_stage(index, stage)

    def train_stage(self, index: int, stage) -> None:
        """Train one stage with SFTTrainer and save its weights (LoRA merged into them)."""
        tp, directory, run_id = self.tp, self.stage_dirs[index], self.state["run_id"]
        if self.resumed and stage_done(directory, run_id):
            log(f"stage {stage.name}: done before the run stopped, skipped")
            self.model = None  # loaded from this stage's weights if a later stage needs them
            return
        if self.model is None:
            self.model = load_weights(previous_final(self.output, index, tp.stages))
        tokenizer = self.student.tokenizer
        steps = Steps(run_id, stage.name, index, self.store)
        weights_in = fingerprint(self.model)
        trainer = stage_trainer(
            self.model,
            tokenizer,
            stage,
            index,
            self.records[stage.name],
            plan=self.plan,
            stage_dir=directory,
            bf16=self.precision.bf16,
            callbacks=[SaveEvery(CHECKPOINT_EVERY_S), steps, *extra_callbacks(stage, index)],
            teacher=self.teacher,
            tokenizer_grew=self.student.tokenizer_grew,
        )
        planned = planned_steps(len(trainer.train_dataset), tp.batch_size, tp.grad_accum, stage.epochs, world_size())
        if self.max_steps and self.max_steps < planned:
            trainer.args.max_steps = self.max_steps
            log(f"  capped at {self.max_steps} of {planned} steps (--max-steps)")

        fit_in_memory(trainer, stage, tp, self.precision.bf16)
        checkpoint = last_checkpoint(directory) if self.resumed else None
        if checkpoint:
            log(f"  resuming from {checkpoint.name}")
            steps.forget_after(checkpoint_step(checkpoint))
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        steps.flush()

        model = trainer.model
        if tp.lora is not None:
            model = model.merge_and_unload()
        weights_out = fingerprint(model)
        if trainer.is_world_process_zero():
            write_beside(directory / FINAL_DIR, lambda partial: save_model(model, tokenizer, partial))
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
            write_text_beside(directory / STAGE_FILE, json.dumps(summary, indent=2))
            drop_checkpoints(directory)
        log(f"  stage {stage.name} done: {trainer.state.global_step} steps, last loss {steps.last_loss:.4f}")

        if self.main and index > 0 and not tp.keep_stages:
            # The next stage (or a resumed run) starts from this one's weights, not the last one's.
            shutil.rmtree(self.stage_dirs[index - 1] / FINAL_DIR, ignore_errors=True)
        # A merged LoRA model carries peft's leftovers in memory; the next stage starts from
        # what this one saved, exactly as a resumed run does (measured: they differed).
        self.model = None if tp.lora is not None else model

    # ---- save -----------------------------------------------------------------------------

    def save(self) -> None:
        """The final weights, with the tokenizer, the resolved plan and its hash (the old final/
        stays until this one is complete); the run finished; the model card and the loss curve."""
        if not self.main:
            return
        tp, plan_sha, tokenizer = self.tp, self.context.plan_sha256, self.student.tokenizer
        model = self.model
        if model is None:
            model = load_weights(previous_final(self.output, len(tp.stages), tp.stages))
        model.config.use_cache = True  # off for training only: generation wants the KV cache
        plan_yaml = dump_plan(self.plan)  # saved with the model: eval compares them

        def write_final(directory) -> None:
            save_model(model, tokenizer, directory)
            (directory / "plan.yaml").write_text(plan_yaml)
            (directory / "plan.sha256").write_text(f"{plan_sha}  plan.yaml\n")

        write_beside(self.final, write_final)
        losses = training_store.step_losses(self.store, self.run_row.run_id)
        training_store.finish_run(self.store, self.run_row, final_loss=losses[-1][3] if losses else None)
        self._close_store()  # the model card reads the database, which this process may not hold open for writing
        model_card.write(self.context, self.final)  # final/README.md: what the student is, how it was trained
        from orcac.runtime import charts as plots

        plots.loss_curve(losses, self.output / "loss.png", title=f"orcac train: {self.plan.spec}")
        # Finished only now: a kill before this resumes with every stage done (a save, no step).
        write_state(self.output, {**self.state, "finished": True})
        for directory in self.stage_dirs:
            drop_checkpoints(directory)  # every stage is done: nothing left to resume
            if not tp.keep_stages:
                shutil.rmtree(directory / FINAL_DIR, ignore_errors=True)
        log(f"saved the trained student to {self.final}; loss curve: {self.output / 'loss.png'}")
        log(disk_line(self.output, self.final, keep_stages=tp.keep_stages))

    # ---- cleanup --------------------------------------------------------------------------

    def cleanup(self, stopped_by: BaseException | None = None) -> None:
        """A run that stopped says so in its row (interrupted: Ctrl-C; failed: anything else);
        the database is closed."""
        try:
            if stopped_by is not None and self.run_row is not None:
                if self.store is None:  # closed for the model card: the run stopped after it finished
                    self.store = training_store.open_for_training(self.context.db)
                status = "interrupted" if isinstance(stopped_by, KeyboardInterrupt) else "failed"
                training_store.end_run(self.store, self.run_row.run_id, status)
        finally:
            self._close_store()

    def _close_store(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            store.close()


def _versions() -> str:
    import importlib.metadata as md

    return json.dumps({p: md.version(p) for p in ("torch", "transformers", "trl", "peft")}, sort_keys=True)
