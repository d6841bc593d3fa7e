""".pre-commit-hooks.yaml: each hook's entry, run the way pre-commit runs it (entry + the
staged files its `files` pattern matches), passes on the shipped examples and fails on a
spec that is not formatted or whose plan is stale."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
HOOKS = {hook["id"]: hook for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
# What pre-commit hands a hook: tracked files (a demo's .orca/ build folder is neither).
EXAMPLES = subprocess.run(
    ["git", "ls-files", "examples"], cwd=ROOT, capture_output=True, text=True, check=True
).stdout.split()


def run_hook(hook_id: str, files: list[str], cwd: Path) -> subprocess.CompletedProcess:
    hook = HOOKS[hook_id]
    program, *args = hook["entry"].split()
    assert program == "orcac" and hook["language"] == "system"
    matched = [f for f in files if re.search(hook["files"], f)]
    assert matched, f"{hook_id}: its files pattern matches none of {files}"
    # The console script is `orcac = orcac.cli:main`: the same code, run from this checkout.
    return subprocess.run([sys.executable, "-m", "orcac.cli", *args, *matched], cwd=cwd, capture_output=True, text=True)


def test_the_hooks_are_fmt_check_and_plan_check():
    assert {h: HOOKS[h]["entry"] for h in HOOKS} == {
        "orcac-fmt": "orcac fmt --check",
        "orcac-plan": "orcac plan --check",
    }


@pytest.mark.parametrize("hook_id", sorted(HOOKS))
def test_each_hook_passes_on_the_examples(hook_id):
    done = run_hook(hook_id, EXAMPLES, ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_hooks_fail_on_an_unformatted_spec_and_a_stale_plan(tmp_path):
    source = ROOT / "examples" / "cautious_reasoner"
    shutil.copytree(source, tmp_path / "spec")
    spec = tmp_path / "spec" / "cautious.orca"
    assert run_hook("orcac-plan", ["spec/cautious.orca"], tmp_path).returncode == 0
    spec.write_text(spec.read_text().replace("orca 1\n", "orca 1\n\n\n\n", 1))
    assert run_hook("orcac-fmt", ["spec/cautious.orca"], tmp_path).returncode == 1
    spec.write_text(re.sub(r"holdout\s*=\s*\d+%", "holdout = 10%", spec.read_text(), count=1))
    stale = run_hook("orcac-plan", ["spec/cautious.orca"], tmp_path)
    assert stale.returncode == 1 and "stale; rewrite it with: orcac plan" in stale.stderr


def test_plan_with_o_takes_one_spec(tmp_path, capsys):
    from orcac.cli import main

    specs = [
        str(ROOT / "examples" / "cautious_reasoner" / "cautious.orca"),
        str(ROOT / "examples" / "product_qa" / "product_qa.orca"),
    ]
    assert main(["plan", *specs, "-o", str(tmp_path / "x.plan.yaml")]) == 1
    assert "-o names one plan file" in capsys.readouterr().err
    assert not (tmp_path / "x.plan.yaml").exists()
