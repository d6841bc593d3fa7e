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
