"""Golden files, one stem per case: orca/x.orca -> plan/x.plan.yaml; invalid/x.orca -> invalid/x.out.

Regenerate with ORCAC_UPDATE_GOLDENS=1 (then review the diff before committing).
"""

from __future__ import annotations

import pytest

from orcac.compiler import compile_spec, dump_plan

from .helpers import GOLDEN, ROOT, golden_compare, run_cli

VALID = sorted((GOLDEN / "orca").glob("*.orca"))
INVALID = sorted((GOLDEN / "invalid").glob("*.orca"))


@pytest.mark.parametrize("spec", VALID, ids=lambda p: p.stem)
def test_plan_golden(spec):
    out = GOLDEN / "plan" / f"{spec.stem}.plan.yaml"
    golden_compare(out, dump_plan(compile_spec(spec, out)))


@pytest.mark.parametrize("spec", VALID, ids=lambda p: p.stem)
def test_valid_goldens_check_clean(spec):
    code, out, err = run_cli("check", str(spec.relative_to(ROOT)))
    assert (code, err) == (0, "")


@pytest.mark.parametrize("spec", INVALID, ids=lambda p: p.stem)
def test_invalid_golden(spec):
    code, out, err = run_cli("check", str(spec.relative_to(ROOT)))
    assert code == 1
    assert "Traceback" not in err and "internal error" not in err
    golden_compare(spec.with_suffix(".out"), err)


@pytest.mark.parametrize("spec", INVALID, ids=lambda p: p.stem)
def test_invalid_plan_fails_the_same_way(spec):
    code, out, err = run_cli("plan", str(spec.relative_to(ROOT)), "-o", "/dev/null/never-written.plan.yaml")
    assert code == 1
    assert err.strip()
