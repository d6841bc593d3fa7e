"""What train hooks into the Trainer: the loss of every step, printed and written to
train_steps (`Steps`), and a checkpoint by the clock rather than by the step (`SaveEvery`)."""

from __future__ import annotations

import time

from transformers import TrainerCallback

from orcac.runtime.store import training as training_store
from orcac.runtime.store.database import Store
from orcac.runtime.training.processes import log


class Steps(TrainerCallback):
    """Collect the loss of every step; write them to DuckDB whenever a checkpoint is saved.

    `store` is the run's connection; None in a process that writes nothing (not the main one)."""

    def __init__(self, run_id: str, stage: str, stage_index: int, store: Store | None):
        self.run_id, self.stage, self.stage_index, self.store = run_id, stage, stage_index, store
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
                log(
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
        if self.store is not None and self.pending:
            training_store.add_steps(self.store, self.pending)
        self.pending.clear()

    def forget_after(self, step: int):
        """Drop rows a stopped run logged after its last checkpoint: they are trained again."""
        if self.store is not None:
            training_store.forget_steps_after(self.store, self.run_id, self.stage_index, step)


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


def _float(value):
    return None if value is None else float(value)
