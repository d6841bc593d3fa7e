"""Whether a run is new, resumed or needless, and where a resumed one starts.

`train_state.json` (orcac/runtime/training/layout.py) says which run the output folder holds:
its id, the plan hash, a digest of the records, --max-steps, and whether it finished. A run of
the same three that did not finish is resumed: the stages it finished (their `stage.json`
names the run) are skipped, and the stage it stopped in restarts from its newest complete
checkpoint. A finished run whose `final/` is still its own leaves nothing to do.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from orcac.errors import OrcacError
from orcac.runtime.commands.train.saving import write_text_beside
from orcac.runtime.training.layout import FINAL_DIR, STAGE_FILE, STATE_FILE, stage_dir
from orcac.runtime.training.processes import is_main_process, log

# ---- the run's state file ----------------------------------------------------------------


def load_state(output: Path, this_run: dict, *, resume: bool, retrain: bool):
    """(state, resumed): the stopped run of the same `this_run` (plan hash, records, --max-steps) to
    resume, or a new run; (None, False) when that run finished and final/ is still its own:
    nothing to do."""
    last = read_json(output / STATE_FILE)
    if not last or "run_id" not in last:
        return {"run_id": uuid.uuid4().hex[:12], **this_run, "finished": False}, False
    # A state file written before `records`, `max_steps` or `finished` were kept matches on them.
    changed = [name for name, value in this_run.items() if last.get(name, value) != value]
    trained = final_sha256(output / FINAL_DIR) == this_run["plan_sha256"]
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


def write_state(output: Path, state: dict) -> None:
    write_text_beside(output / STATE_FILE, json.dumps(state, indent=2))


def run_id_in(output: Path) -> str | None:
    """The id of the run the output folder holds; None before a run wrote its state."""
    try:
        return json.loads((output / STATE_FILE).read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        return None


def final_sha256(final: Path) -> str | None:
    """The plan hash a complete final/ was trained on (plan.sha256 is its last file)."""
    try:
        return (final / "plan.sha256").read_text().split()[0]
    except (OSError, IndexError):
        return None


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---- stages and checkpoints -------------------------------------------------------------------


def stage_done(stage_dir: Path, run_id: str) -> bool:
    """Whether this run trained the stage (a summary in the layout before stage.json moved
    beside final/ says no run: it belongs to the run being resumed)."""
    summary = read_json(stage_dir / STAGE_FILE) or read_json(stage_dir / FINAL_DIR / STAGE_FILE)
    return summary is not None and summary.get("run_id", run_id) == run_id


def previous_final(output: Path, index: int, stages) -> Path:
    """The weights stage `index` starts from: the last finished stage's (index >= 1)."""
    return stage_dir(output, index - 1, stages[index - 1].name) / FINAL_DIR


def last_checkpoint(stage_dir: Path) -> Path | None:
    """The newest complete checkpoint. A kill during a save leaves a directory without the
    trainer_state.json the Trainer writes last (or without weights): skipped, and removed,
    for the one before it (the Trainer drops an older one only once the new one is saved)."""
    for checkpoint in sorted(_checkpoints(stage_dir), key=checkpoint_step, reverse=True):
        if _checkpoint_complete(checkpoint):
            return checkpoint
        log(f"  {checkpoint.name} is incomplete (its save was cut off): skipped")
        if is_main_process():
            shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def checkpoint_step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[-1])


def drop_checkpoints(stage_dir: Path) -> None:
    for checkpoint in _checkpoints(stage_dir):
        shutil.rmtree(checkpoint, ignore_errors=True)


def _checkpoint_complete(checkpoint: Path) -> bool:
    state = read_json(checkpoint / "trainer_state.json")
    weights = [*checkpoint.glob("*.safetensors"), *checkpoint.glob("*.bin"), *checkpoint.glob("*.index.json")]
    return state is not None and "global_step" in state and bool(weights)


def _checkpoints(stage_dir: Path) -> list[Path]:
    return [path for path in stage_dir.glob("checkpoint-*") if path.name.rsplit("-", 1)[-1].isdigit()]
