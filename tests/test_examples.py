"""Every example spec that declares work has a committed plan, and it is what the spec compiles to
today (`orcac plan --check`). Every examples/*/*.orca is enumerated, with or without a plan file."""

from __future__ import annotations

from pathlib import Path

import pytest

from orcac.cli import main
from orcac.compiler import analyze

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p for p in ROOT.glob("examples/*/*.orca") if p.is_file())  # not a .orca/ build folder


def declares_work(spec: Path) -> bool:
    """A task or a train block: what a plan is made of (a file that others import has neither)."""
    unit = analyze(spec)
    assert unit.spec is not None, unit.diags.items
    return bool(unit.spec.tasks or unit.spec.train)


def test_every_example_with_a_train_or_task_has_a_committed_plan():
    with_work = [p for p in SPECS if declares_work(p)]
    assert {"cautious.orca", "triage.orca", "product_qa.orca", "mix.orca"} <= {p.name for p in with_work}
    missing = [str(p.relative_to(ROOT)) for p in with_work if not p.with_suffix(".plan.yaml").is_file()]
    assert not missing, f"no committed plan: {missing} (run `orcac plan` on each and commit it)"


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_committed_plan_is_current(spec, capsys):
    # A spec without tasks passes: it has no plan. One with tasks fails when its plan is missing.
    assert main(["plan", "--check", str(spec)]) == 0, capsys.readouterr().err


def test_the_judged_example_counts_its_judge_before_any_call(tmp_path, capsys):
    """examples/product_qa: a free in-process teacher, a hosted judge. Both dry runs call
    nothing, need no key, and price the judge's calls on their own lines, not in the teacher's."""
    import re

    from orcac import costs

    spec = str(ROOT / "examples" / "product_qa" / "product_qa.orca")
    db = str(tmp_path / "product_qa.duckdb")
    assert main(["build", spec, "--db", db, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^product_questions +108 +0 +108 +0 +[\d,]+ +\$0\.0000$", out, re.M), out  # the local teacher
    judged = re.search(r"^product_questions +grounded +108 +0 +108 +([\d,]+) +\$(\d+\.\d+)$", out, re.M)
    tokens = int(judged.group(1).replace(",", ""))
    assert judged.group(2) == f"{costs.cost('openai/gpt-4o-mini', tokens, 108, 200):.4f}" != "0.0000"

    assert main(["eval", spec, "--db", db, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^prompted +product_questions +local +12 +0 +12 +[\d,]+ +\$0\.0000$", out, re.M), out
    for arm in ("base", "prompted", "trained"):
        assert re.search(rf"^{arm} +product_questions +judged\(grounded\) +12 +0 +12 ", out, re.M), out
    assert not Path(db).exists()  # a dry run writes nothing
