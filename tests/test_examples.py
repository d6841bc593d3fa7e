"""The committed example plans are what their specs compile to today (`orcac plan --check`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orcac.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p for p in ROOT.glob("examples/*/*.orca") if p.is_file() and p.with_suffix(".plan.yaml").exists())


def test_every_example_with_a_train_or_task_has_a_committed_plan():
    names = {p.name for p in SPECS}
    assert {"cautious.orca", "triage.orca", "product_qa.orca", "mix.orca"} <= names


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_committed_plan_is_current(spec, capsys):
    assert main(["plan", "--check", str(spec)]) == 0, capsys.readouterr().err
