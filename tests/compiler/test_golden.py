"""Golden files, one stem per case and one directory per pass (tests/golden/README.md):
orca/x.orca -> load/x.yaml, resolve/x.yaml, check/x.yaml, plan/x.plan.yaml (lower, emit);
invalid/x.orca -> invalid/x.out (the errors, of whichever pass stops).

Regenerate with ORCAC_UPDATE_GOLDENS=1 (then review the diff before committing).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from orcac.compiler import compile_spec, dump_plan

from .helpers import GOLDEN, ROOT, STAGES, golden_compare, run_cli, stage_goldens

VALID = sorted((GOLDEN / "orca").glob("*.orca"))
INVALID = sorted((GOLDEN / "invalid").glob("*.orca"))


@pytest.mark.parametrize("spec", VALID, ids=lambda p: p.stem)
def test_plan_golden(spec):
    golden = GOLDEN / "plan" / f"{spec.stem}.plan.yaml"
    # Compiled fresh: an output path beside the golden (so paths in the plan are relative to
    # plan/) where no plan exists, so nothing in the golden (a probe decision) is carried forward.
    fresh = golden.with_name(f"{spec.stem}.never-written.plan.yaml")
    assert not fresh.exists()
    golden_compare(golden, dump_plan(compile_spec(spec, fresh)))


@functools.cache
def _stages(spec: Path) -> dict[str, str]:
    return stage_goldens(spec, GOLDEN / "plan" / f"{spec.stem}.never-written.plan.yaml")


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("spec", VALID, ids=lambda p: p.stem)
def test_stage_golden(spec, stage):
    golden_compare(GOLDEN / stage / f"{spec.stem}.yaml", _stages(spec)[stage])


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
    assert err == spec.with_suffix(".out").read_text(encoding="utf-8"), "`orcac plan` says what `orcac check` says"
