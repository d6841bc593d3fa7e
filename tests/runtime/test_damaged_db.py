"""A database cut short, one with a broken header, one that holds no build, and a disk that
fills up during a build: each is one line naming the file and what to do, exit 1, for every
command that opens it (issue 18, items 6 to 9). Real builds against the loopback teacher,
real DuckDB files, a real full filesystem."""

from __future__ import annotations

import os
import shutil
import subprocess

import duckdb
import pytest

from orcac import cli
from orcac.specs.plan import StagePlan, TeacherPlan
from tests.support import retries
from tests.support.db import rows
from tests.support.loopback import Loopback
from tests.support.plans import arith_answer, make_plan, train_plan, write_plan

pytestmark = pytest.mark.xdist_group("loopback")

# Every command that opens the database, with what it needs to get that far.
COMMANDS = {
    "export": ["-o", "OUT/records.jsonl"],
    "report": ["-o", "OUT/report.html"],
    "train": [],
    "eval --dry-run": [],
    "build --dry-run": [],
    "build": ["--no-progress"],
}
READERS = ["export", "report", "train", "eval --dry-run"]


def _params(commands) -> list:
    """`train` imports torch before it opens the database: seconds, so it is a slow case."""
    return [pytest.param(c, marks=pytest.mark.slow) if c == "train" else c for c in commands]


REBUILD_COSTS = "every teacher answer stored in it is asked for (and paid for) again"


def _teacher(url: str) -> TeacherPlan:
    return TeacherPlan(name="t", model="openai/loopback", api_base=url, api_key_env="LOOPBACK_KEY", max_retries=0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(plan file, database) of a finished build whose plan also trains (so `train` reads it)."""
    root = tmp_path_factory.mktemp("damaged")
    with pytest.MonkeyPatch.context() as mp, Loopback(arith_answer) as server:
        mp.setenv("LOOPBACK_KEY", "k")
        stages = (StagePlan(name="one", tasks=("arith",), epochs=1.0, train_examples=32),)
        training = train_plan("no-such-model")
        plan = make_plan(
            root,
            n=40,
            teacher=_teacher(server.url),
            student="no-such-model",
            train=training.train.model_copy(update={"stages": stages}),
        )
        path = write_plan(root, plan)
        assert cli.main(["build", str(path), "--no-progress"]) == 0
    return path, root / ".orca" / "spec.duckdb"


def _run(command: str, plan, db, out, capsys) -> tuple[int, str]:
    words = command.split()
    extra = [a.replace("OUT", str(out)) for a in COMMANDS[command]]
    capsys.readouterr()
    code = cli.main([words[0], str(plan), "--db", str(db), *words[1:], *extra])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", _params(COMMANDS))
def test_a_database_cut_in_half_is_damaged_for_every_command(built, tmp_path, capsys, command):
    plan, original = built
    db = tmp_path / "half.duckdb"
    shutil.copyfile(original, db)
    os.truncate(db, db.stat().st_size // 2)
    code, err = _run(command, plan, db, tmp_path, capsys)
    assert code == 1, err
    first, hint = err.strip().splitlines()
    assert first.startswith(f"error: {db} is damaged (")
    assert hint.startswith("  to fix this: restore it from a copy, or delete it and run `orcac build` again")
    assert REBUILD_COSTS in hint


@pytest.mark.parametrize("command", _params(COMMANDS))
def test_a_database_with_a_broken_header_says_what_to_do(built, tmp_path, capsys, command):
    plan, original = built
    db = tmp_path / "header.duckdb"
    shutil.copyfile(original, db)
    with open(db, "r+b") as f:
        f.write(b"\0" * 64)
    code, err = _run(command, plan, db, tmp_path, capsys)
    assert code == 1, err
    first, hint = err.strip().splitlines()
    assert first == f"error: {db} is not a DuckDB database: its header is damaged, or it is another kind of file"
    assert hint.startswith("  to fix this: if it is the build's database, restore it from a copy")
    assert REBUILD_COSTS in hint and "if not, pass another --db" in hint


@pytest.mark.parametrize("command", _params(READERS))
def test_a_database_that_holds_no_build_says_so_the_same_way_everywhere(built, tmp_path, capsys, command):
    # What a first build killed with -9 before its first checkpoint leaves once its .wal is
    # lost: a valid DuckDB file with no tables in it.
    plan, _ = built
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    code, err = _run(command, plan, db, tmp_path, capsys)
    assert code == 1, err
    assert err.strip().splitlines() == [
        f"error: {db} holds no build: it is an empty database (a first build stopped before it saved "
        "anything, or its .wal file was lost)",
        "  to fix this: run `orcac build` (or pass the --db that holds the build)",
    ]


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs), unmounted afterwards; skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_rerun_asks_only_for_what_was_not_stored(
    tmp_path, small_disk, monkeypatch, capsys
):
    retries.fast_backoff(monkeypatch)
    monkeypatch.setenv("LOOPBACK_KEY", "k")
    db = small_disk / "build.duckdb"
    filler = "Let me think about this one carefully. " * 200  # 8 kB an answer: 96 fill 1 MiB

    with Loopback(lambda body: filler + arith_answer(body)) as server:
        plan = write_plan(tmp_path, make_plan(tmp_path, n=120, teacher=_teacher(server.url)))
        code = cli.main(["build", str(plan), "--no-progress", "--db", str(db)])
        err = capsys.readouterr().err
        assert code == 1, err
        assert f"error: the disk holding {db} is full" in err
        assert "to fix this: free space on that disk (or pass --db on another one) and run the same command" in err
        assert "what was stored before is kept, so it does only the rest" in err
        assert "internal error" not in err

        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        stored = rows(db, "SELECT count(*) FROM responses")[0][0]
        assert stored > 0  # what was written before the disk filled up is intact
        asked = server.stats()["requests"]
        assert cli.main(["build", str(plan), "--no-progress", "--db", str(db)]) == 0
        assert server.stats()["requests"] - asked == 96 - stored  # the re-run pays only for the rest
    assert rows(db, "SELECT count(*) FROM records")[0][0] == 96
