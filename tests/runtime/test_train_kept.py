"""`orcac train` never destroys a finished model: a re-run of a trained plan does nothing, a
stopped run resumes with the plain command, a cut-off checkpoint is skipped, final/ is renamed
into place once complete, and what is kept on disk is what resuming needs plus final/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pytest
from transformers import AutoModelForCausalLM, TrainerCallback

from orcac.cli import main
from orcac.compiler import compile_spec, dump_plan
from orcac.runtime.commands.train import command as train
from orcac.runtime.commands.train import resume, saving
from orcac.runtime.models.loading import save_model, umask
from orcac.runtime.training.layout import STATE_FILE
from tests.support.db import rows
from tests.support.plans import context, train_plan
from tests.support.train_data import orca_rows, write_records

pytestmark = pytest.mark.xdist_group("train")

ONE_STAGE = (("only", ("add",), 1.0),)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _checkpoint_every_step(monkeypatch):
    monkeypatch.setattr(train, "CHECKPOINT_EVERY_S", 0.0)


@pytest.fixture(scope="module")
def records():
    return orca_rows("add", 6) + orca_rows("mul", 6)


@pytest.fixture(scope="module")
def trained(tiny, records, tmp_path_factory):
    """A finished one-stage run (one step) through the command line; each test copies it."""
    root = tmp_path_factory.mktemp("trained")
    plan = train_plan(str(tiny), stages=ONE_STAGE)
    (root / "test.plan.yaml").write_text(dump_plan(plan))
    write_records(root / "build.duckdb", records)
    assert main(_args(root)) == 0
    return root, plan


def _args(root: Path, *more: str) -> list[str]:
    return ["train", str(root / "test.plan.yaml"), "--db", str(root / "build.duckdb"), "--max-steps", "1", *more]


def _copy(trained, tmp_path: Path) -> Path:
    shutil.copytree(trained[0], tmp_path / "run")
    return tmp_path / "run"


def _final(root: Path, plan) -> Path:
    return root / plan.train.output / train.FINAL_DIR


def _fingerprint(final: Path) -> str:
    return train.fingerprint(AutoModelForCausalLM.from_pretrained(final))


def _steps(db: Path):
    return rows(db, "SELECT stage_index, step FROM train_steps ORDER BY stage_index, step")


def _stop(when: str, at_stage: int = 0, step: int = 0):
    """Callbacks that raise KeyboardInterrupt (Ctrl-C) at the start of stage `at_stage`'s
    training, or right after its checkpoint at `step` is saved."""

    class Stop(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if when == "begin":
                raise KeyboardInterrupt

        def on_save(self, args, state, control, **kwargs):
            if when == "save" and state.global_step >= step:
                raise KeyboardInterrupt

    return lambda stage, index: [Stop()] if index == at_stage else []


# ---- 1. a trained plan is left alone --------------------------------------------------------


@pytest.mark.slow
def test_a_rerun_of_a_trained_plan_does_nothing_and_says_so(trained, tmp_path, monkeypatch, capsys):
    root = _copy(trained, tmp_path)
    weights = _final(root, trained[1]) / "model.safetensors"
    written = weights.stat().st_mtime_ns
    capsys.readouterr()

    assert main(_args(root)) == 0
    err = capsys.readouterr().err
    assert "is already trained on this plan and its records" in err and "nothing to do" in err and "--retrain" in err
    assert len(err.strip().splitlines()) == 1
    assert weights.stat().st_mtime_ns == written  # not deleted, not written again
    assert rows(root / "build.duckdb", "SELECT status FROM train_runs") == [("finished",)]  # no second run
    assert main(_args(root, "--resume")) == 0  # old scripts: nothing to resume, nothing done

    # A build that changed the records (the same plan) trains anew, and final/ stays meanwhile.
    con = duckdb.connect(str(root / "build.duckdb"))
    con.execute("DELETE FROM records WHERE record_id = 'add-5'")
    con.close()
    monkeypatch.setattr(train, "extra_callbacks", _stop("begin"))
    assert main(_args(root)) == 130
    assert "starting a new run" in capsys.readouterr().err
    assert weights.stat().st_mtime_ns == written


@pytest.mark.slow
def test_a_changed_plan_trains_anew_and_keeps_the_old_final_until_the_new_one_is_complete(
    trained, tmp_path, monkeypatch
):
    root = _copy(trained, tmp_path)
    final = _final(root, trained[1])
    written = (final / "model.safetensors").stat().st_mtime_ns
    old_sha = (final / "plan.sha256").read_text()
    changed = trained[1].model_copy(update={"train": trained[1].train.model_copy(update={"lr": 5e-4})})
    (root / "test.plan.yaml").write_text(dump_plan(changed))

    monkeypatch.setattr(train, "extra_callbacks", _stop("begin"))
    assert main(_args(root)) == 130  # Ctrl-C before the first step
    assert (final / "model.safetensors").stat().st_mtime_ns == written and _fingerprint(final)  # untouched, loads
    assert (final / "plan.sha256").read_text() == old_sha

    assert main(_args(root, "--resume")) == 130  # the changed plan's stopped run resumes, stopped again
    monkeypatch.setattr(train, "extra_callbacks", lambda stage, index: [])
    assert main(_args(root)) == 0
    assert (final / "plan.sha256").read_text() != old_sha  # the changed plan's student, in place


@pytest.mark.slow
def test_retrain_keeps_the_old_final_through_a_crash_in_the_middle_of_its_save(trained, tmp_path, monkeypatch, capsys):
    root = _copy(trained, tmp_path)
    plan = trained[1]
    final = _final(root, plan)
    weights = final / "model.safetensors"
    written = weights.stat().st_mtime_ns
    sha = (final / "plan.sha256").read_text()

    def crash_after_the_weights(model, tokenizer, directory):
        model.save_pretrained(directory)
        if directory.parent == final.parent:  # the student's final/, not a stage's
            raise KeyboardInterrupt  # the tokenizer, plan.yaml and plan.sha256 never written

    monkeypatch.setattr(train, "save_model", crash_after_the_weights)
    with pytest.raises(KeyboardInterrupt):
        train.run(context(plan, root, root / "build.duckdb"), retrain=True, max_steps=1)
    assert weights.stat().st_mtime_ns == written and (final / "plan.sha256").read_text() == sha
    assert (final / "tokenizer.json").is_file() and _fingerprint(final)  # whole, and it loads
    assert sorted(p.name for p in final.parent.iterdir() if p.name.startswith(".")) == []  # no partial copy left

    monkeypatch.setattr(train, "save_model", save_model)
    capsys.readouterr()
    assert train.run(context(plan, root, root / "build.duckdb"), max_steps=1) == 0  # the plain command resumes
    err = capsys.readouterr().err
    assert "resuming the stopped run" in err and "stage only: done before the run stopped, skipped" in err
    assert weights.stat().st_mtime_ns != written  # the retrained student, in place
    assert (final / "plan.sha256").read_text() == sha
    assert rows(root / "build.duckdb", "SELECT status FROM train_runs ORDER BY started_at") == [("finished",)] * 2


def test_a_kill_between_the_two_renames_puts_the_old_final_back(tmp_path):
    final = tmp_path / "final"
    final.mkdir()
    (final / "plan.sha256").write_text("old")
    old = saving.old_copy(final)
    final.rename(old)  # killed here: the new copy not yet renamed into place
    (tmp_path / ".final.partial-1234").mkdir()
    saving.put_back(final)
    assert (final / "plan.sha256").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


# ---- 2. after Ctrl-C, the same command resumes ------------------------------------------------


@pytest.mark.slow
def test_the_plain_command_resumes_a_stopped_run_and_keeps_only_what_resuming_needs(
    tiny, records, tmp_path, monkeypatch, capsys
):
    plan = train_plan(str(tiny))
    db = write_records(tmp_path / "build.duckdb", records)
    out = tmp_path / plan.train.output
    monkeypatch.setattr(train, "extra_callbacks", _stop("begin", at_stage=1))
    with pytest.raises(KeyboardInterrupt):
        train.run(context(plan, tmp_path, db), max_steps=2)
    assert (out / "stages/01-basics/final/model.safetensors").is_file()  # what stage 2 starts from

    monkeypatch.setattr(train, "extra_callbacks", lambda stage, index: [])
    capsys.readouterr()
    assert train.run(context(plan, tmp_path, db), max_steps=2) == 0
    err = capsys.readouterr().err
    assert "stage basics: done before the run stopped, skipped" in err
    assert _steps(db) == [(0, 1), (0, 2), (1, 1), (1, 2)]  # every step once
    assert len(rows(db, "SELECT DISTINCT run_id FROM train_steps")) == 1

    # 26: once final/ is written, the stages keep their summaries, not their weights.
    assert not list(out.glob("stages/*/final")) and not list(out.glob("stages/*/checkpoint-*"))
    assert sorted(p.parent.name for p in out.glob("stages/*/stage.json")) == ["01-basics", "02-reason"]
    held = [line for line in err.splitlines() if line.startswith(f"{out} holds")]
    assert len(held) == 1 and " MB" in held[0] and "keep_stages = true keeps them" in held[0]


# ---- 3. a checkpoint cut off by a kill is skipped -----------------------------------------------


@pytest.mark.slow
def test_an_incomplete_checkpoint_is_skipped_for_the_complete_one_before_it(
    tiny, records, tmp_path, monkeypatch, capsys
):
    plan = train_plan(str(tiny), stages=ONE_STAGE)
    plan = plan.model_copy(update={"train": plan.train.model_copy(update={"keep_stages": True})})
    db = write_records(tmp_path / "build.duckdb", records)
    stage_dir = tmp_path / plan.train.output / "stages/01-only"
    monkeypatch.setattr(train, "extra_callbacks", _stop("save", step=1))
    with pytest.raises(KeyboardInterrupt):
        train.run(context(plan, tmp_path, db))
    assert [p.name for p in stage_dir.glob("checkpoint-*")] == ["checkpoint-1"]
    # A SIGKILL during the next save: the directory holds only what the Trainer writes first.
    cut = stage_dir / "checkpoint-2"
    cut.mkdir()
    (cut / "config.json").write_text((stage_dir / "checkpoint-1/config.json").read_text())

    monkeypatch.setattr(train, "extra_callbacks", lambda stage, index: [])
    capsys.readouterr()
    assert train.run(context(plan, tmp_path, db), resume=True) == 0
    err = capsys.readouterr().err
    assert "checkpoint-2 is incomplete (its save was cut off): skipped" in err and "resuming from checkpoint-1" in err
    assert _steps(db) == [(0, 1), (0, 2)]  # the stage's two steps, each once
    assert (stage_dir / "final/model.safetensors").is_file()  # 26: keep_stages = true keeps them


# ---- 25. file modes ---------------------------------------------------------------------------------


def test_saved_weights_get_the_umask_mode_like_every_other_file(tiny, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny)
    previous = os.umask(0o027)
    try:
        assert umask() == 0o027
        save_model(model, None, tmp_path)
    finally:
        os.umask(previous)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o640


@pytest.mark.slow
def test_the_trained_student_is_readable_as_the_umask_allows(trained):
    final = _final(*trained)
    modes = {p.name: p.stat().st_mode & 0o777 for p in final.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"] == 0o666 & ~umask(), modes
    assert final.stat().st_mode & 0o777 == 0o777 & ~umask()


# ---- 26. keep_stages, a key of the language -----------------------------------------------------


def test_keep_stages_is_written_to_the_plan_only_when_set(tmp_path):
    shutil.copytree(ROOT / "examples/cautious_reasoner", tmp_path / "ex", ignore=shutil.ignore_patterns(".orca"))
    spec = tmp_path / "ex/cautious.orca"
    plain = dump_plan(compile_spec(spec, tmp_path / "plain.plan.yaml"))
    assert "keep_stages" not in plain
    spec.write_text(spec.read_text().replace("train {\n", "train {\n  keep_stages = true\n", 1))
    kept = compile_spec(spec, tmp_path / "kept.plan.yaml")
    assert kept.train.keep_stages is True and "keep_stages: true" in dump_plan(kept)


KILLED_IN_A_SAVE = """
import os, signal, sys
from transformers import Trainer
from orcac.cli import main
from orcac.runtime.commands.train import command as train

train.CHECKPOINT_EVERY_S = 0.0
saved_rng = Trainer._save_rng_state

def kill_in_the_second_save(self, output_dir):  # weights and optimizer written, trainer_state.json not yet
    if self.state.global_step >= 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return saved_rng(self, output_dir)

Trainer._save_rng_state = kill_in_the_second_save
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigkill_in_a_checkpoint_save_then_the_same_command_resumes_from_the_one_before(
    tiny, records, tmp_path, capsys
):
    import subprocess
    import sys

    plan = train_plan(str(tiny), stages=(("only", ("add",), 2.0),))  # 4 steps: checkpoints at 1, 2, 3
    (tmp_path / "test.plan.yaml").write_text(dump_plan(plan))
    db = write_records(tmp_path / "build.duckdb", records)
    args = ["train", str(tmp_path / "test.plan.yaml"), "--db", str(db)]
    from orcac.runtime.training import guard

    # trains in this process (as the supervised child does), where the planted kill is
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{guard.CHILD: "1"})
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_IN_A_SAVE, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr
    cut = tmp_path / plan.train.output / "stages/01-only/checkpoint-2"
    assert (cut / "model.safetensors").is_file() and not (cut / "trainer_state.json").exists()

    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "checkpoint-2 is incomplete (its save was cut off): skipped" in err and "resuming from checkpoint-1" in err
    assert _steps(db) == [(0, 1), (0, 2), (0, 3), (0, 4)]


def test_resume_refuses_a_run_of_another_plan_and_says_final_stays(tmp_path):
    from orcac.errors import OrcacError

    run = {"plan_sha256": "b" * 64, "records": "r", "max_steps": None}
    (tmp_path / STATE_FILE).write_text('{"run_id": "old", "plan_sha256": "' + "a" * 64 + '", "finished": false}')
    with pytest.raises(OrcacError) as error:
        resume.load_state(tmp_path, run, resume=True, retrain=False)
    assert "started with another plan" in error.value.message and "final/ stays" in error.value.hint
    state, resumed = resume.load_state(tmp_path, run, resume=False, retrain=False)  # the plain command: a new run
    assert not resumed and state["run_id"] != "old" and state["plan_sha256"] == "b" * 64
