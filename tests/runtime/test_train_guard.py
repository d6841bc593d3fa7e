"""Out of memory while training ends in one line and exit 1, the run marked failed, the finished
stages kept: never a traceback, never the kernel's bare `Killed` (runtime/training/guard.py)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orcac.compiler import dump_plan
from tests.support.db import rows
from tests.support.plans import train_plan
from tests.support.train_data import orca_rows, write_records

pytestmark = [
    pytest.mark.xdist_group("train"),
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process limits and /proc"),
]
ROOT = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path, tiny, *, max_length: int, batch_size: int, records: int) -> Path:
    plan = train_plan(
        str(tiny),
        stages=(("first", ("add",), 1.0), ("second", ("add",), 50.0)),
        max_length=max_length,
        batch_size=batch_size,
    )
    (tmp_path / "test.plan.yaml").write_text(dump_plan(plan))
    write_records(tmp_path / "build.duckdb", orca_rows("add", records))
    return tmp_path / "test.plan.yaml"


def _orcac_train(tmp_path: Path, *extra: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ORCAC_TRAIN_CHILD", None)
    return subprocess.Popen(
        [sys.executable, "-m", "orcac.cli", "train", "test.plan.yaml", "--db", "build.duckdb", *extra],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def _address_space_after_imports() -> int:
    """What a process that has imported the training stack maps before it trains (bytes)."""
    probe = (
        "import orcac.runtime.commands.train.command, trl, datasets, duckdb; print(open('/proc/self/status').read())"
    )
    status = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:"))


def test_a_failed_allocation_is_one_line_and_exit_1(tiny, tmp_path):
    """Training under a memory limit (ulimit -v) that loading fits in and a step does not."""
    _spec(tmp_path, tiny, max_length=2048, batch_size=16, records=96)
    limit = _address_space_after_imports() + 2**30
    child = _orcac_train(
        tmp_path, "--max-steps", "1", preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    )
    _, err = child.communicate(timeout=600)
    assert child.returncode == 1, err
    last = err.rstrip("\n").splitlines()[-2:]
    assert last[0].startswith("error: training ran out of memory (an allocation of "), err
    assert last[0].endswith("; the run is marked failed and the stages that finished are kept")
    assert last[1].startswith("  to fix this: lower train.max_length or train.batch_size")
    assert "Traceback" not in err
    assert rows(tmp_path / "build.duckdb", "SELECT status FROM train_runs") == [("failed",)]


def test_a_training_process_killed_by_the_kernel_is_one_line_and_exit_1(tiny, tmp_path):
    """SIGKILL, as the OOM killer sends it, to the process that trains: `orcac train` says so."""
    _spec(tmp_path, tiny, max_length=256, batch_size=2, records=24)
    parent = _orcac_train(tmp_path, "--max-steps", "200")
    seen = []
    for line in parent.stderr:  # the first stage finishes, the second starts its steps
        seen.append(line)
        if line.startswith("  second step 1/"):
            break
    trainers = _children(parent.pid)
    assert len(trainers) == 1, "".join(seen)
    os.kill(trainers[0], signal.SIGKILL)
    err = "".join(seen) + parent.stderr.read()
    assert parent.wait(timeout=60) == 1, err
    last = err.rstrip("\n").splitlines()[-2:]
    assert last[0].startswith("error: the training process was killed by SIGKILL at "), err
    assert last[0].endswith(
        " GB resident, most likely by the kernel's out-of-memory killer; the run is "
        "marked failed and the stages that finished are kept"
    )
    assert last[1].startswith("  to fix this: lower train.max_length or train.batch_size")
    assert rows(tmp_path / "build.duckdb", "SELECT status FROM train_runs") == [("failed",)]
    # the finished stage: marked done, and its weights kept (the next stage, not yet saved, starts from them)
    assert (tmp_path / "out/student/stages/01-first/stage.json").is_file()
    assert (tmp_path / "out/student/stages/01-first/final/model.safetensors").is_file()


def _children(pid: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if found:
            return [int(p) for p in found]
        time.sleep(0.1)
    return []
