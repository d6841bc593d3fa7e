"""The README tutorial runs as written: its files are written, its commands succeed, in order."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.db import rows

README = Path(__file__).resolve().parents[1] / "README.md"
TUTORIAL = README.read_text().split("## Tutorial", 1)[1].split("\n## ", 1)[0]
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)


def tutorial_steps() -> list[tuple[str, str]]:
    """("file", path + content) and ("run", command) steps, in README order."""
    steps = []
    for lang, info, body in BLOCK.findall(TUTORIAL):
        target = re.search(r"file=(\S+)", info)
        if target:
            steps.append(("file", f"{target.group(1)}\n{body}"))
        elif lang == "console":
            steps += [("run", line[2:]) for line in body.splitlines() if line.startswith("$ ")]
    return steps


def shown_outputs() -> list[tuple[str, str]]:
    """(command, the output the README shows under it) for every console line followed by output."""
    shown = []
    for lang, _, body in BLOCK.findall(TUTORIAL):
        if lang != "console":
            continue
        for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            if output.strip():
                shown.append((command, output))
    return shown


def test_readme_shows_what_the_commands_print(tmp_path):
    """What the tutorial shows a command printing is what it prints (today: `orcac check`)."""
    from orcac.cli import main

    for kind, step in tutorial_steps():
        if kind == "file":
            name, content = step.split("\n", 1)
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(content)
    shown = shown_outputs()
    assert shown, "the tutorial shows no command's output"
    for command, output in shown:
        out = io.StringIO()
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            with contextlib.redirect_stdout(out):
                code = main(shlex.split(command)[1:])
        finally:
            os.chdir(cwd)
        assert (code, out.getvalue()) == (0, output), command


def test_tutorial_has_files_and_commands():
    kinds = [kind for kind, _ in tutorial_steps()]
    assert kinds.count("file") >= 2 and kinds.count("run") >= 4


@pytest.mark.slow
def test_readme_tutorial_runs(tmp_path):
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    for kind, step in tutorial_steps():
        if kind == "file":
            name, content = step.split("\n", 1)
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(content)
            continue
        argv = shlex.split(step)
        assert argv[0] == "orcac", step
        done = subprocess.run(
            [sys.executable, "-m", "orcac.cli", *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"$ {step}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr

    assert (tmp_path / "capitals.plan.yaml").is_file()
    systems = [system for (system,) in rows(tmp_path / ".orca" / "capitals.duckdb", "SELECT system FROM records")]
    # Every record carries the erased message, never the strategy's instruction.
    assert all(system.startswith("You are a cautious assistant") for system in systems)
    exported = (tmp_path / "capitals.jsonl").read_text().splitlines()
    assert len(exported) == len(systems)
