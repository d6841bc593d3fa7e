"""The orcac compiler: .orca spec -> Plan.

The passes, in order (`PASSES` below; each its own module):

    load       read the spec and its imports, parse each (load.py, orcac/grammar/)
    resolve    syntax blocks -> typed declarations (to_spec.py), one Spec, names
               checked, defaults applied (resolve.py)
    check      sources, templates, golds, holdouts, stages (check.py)
    lower      Spec -> Plan, with the estimate and carried probe decisions (lower.py);
               orcac/specs/plan_file.py writes it as YAML

`orcac check` runs them up to `check` reading only source headers; `orcac plan` runs
them all, reading whole sources. Every pass collects diagnostics; the first pass that
ends with errors stops the pipeline and raises CompileError with all of them, except that
`resolve` and `check` always run together (names, then data and templates), so one report
shows both kinds.

Entry points for the rest of orcac: `compile_spec`, `load_plan`, `read_plan`,
`dump_plan`, `plan_path_for`.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orcac.specs.diagnostics import CompileError, Diagnostic, Diagnostics
from orcac.specs.paths import plan_path_for

if TYPE_CHECKING:
    from orcac.compiler.check import Facts
    from orcac.compiler.load import Loaded
    from orcac.specs.plan import Decision, Plan
    from orcac.specs.spec import Spec

__all__ = [
    "PASSES",
    "Unit",
    "analyze",
    "run",
    "CompileError",
    "Diagnostic",
    "LoadedPlan",
    "check_spec",
    "diagnose",
    "compile_spec",
    "dump_plan",
    "load_plan",
    "plan_file_state",
    "plan_path_for",
    "read_plan",
    "write_plan",
]


def dump_plan(plan: Plan) -> str:
    """The plan file's text: deterministic YAML (see orcac/specs/plan_file.py)."""
    from orcac.specs.plan_file import dump_plan as dump

    return dump(plan)


def read_plan(path: str | Path) -> Plan:
    """Read a plan file; raises OrcacError when it is missing or not a plan."""
    from orcac.specs.plan_file import read_plan as read

    return read(path)


@dataclass
class Unit:
    """One compilation: its inputs, and what each pass has produced so far."""

    path: Path  # the spec, as given
    output: Path  # where the plan goes (paths in it are relative to its directory)
    whole: bool  # read sources whole (plan) or only their headers (check)
    diags: Diagnostics
    loaded: list[Loaded] | None = None  # load: every module, imports first
    spec: Spec | None = None  # resolve: the Spec (orcac.specs.spec)
    facts: Facts | None = None  # check: sources' columns, rows, hashes; split sizes
    plan: Plan | None = None  # lower: the Plan
    unsaved: dict | None = None  # absolute path -> editor text read instead of the file (load.py)
    # task -> the previous probe decision lower carries forward; None: those of the plan at `output`
    decisions: Mapping[str, Decision] | None = None


def _load(unit: Unit) -> None:
    from orcac.compiler.load import load

    unit.loaded = load(unit.path, str(unit.path), unit.diags, unit.unsaved)


def _resolve(unit: Unit) -> None:
    from orcac.compiler.resolve import resolve

    assert unit.loaded is not None  # each pass runs only after the one before it succeeded
    unit.spec = resolve(unit.loaded, unit.path, str(unit.path), unit.diags)  # runs to_spec per module


def _check(unit: Unit) -> None:
    from orcac.compiler.check import check

    assert unit.spec is not None
    unit.facts = check(unit.spec, unit.path.resolve().parent, unit.diags, whole=unit.whole)


def _lower(unit: Unit) -> None:
    from orcac.compiler.lower import lower

    assert unit.loaded is not None and unit.spec is not None and unit.facts is not None
    decisions = unit.decisions if unit.decisions is not None else decisions_in(unit.output)
    files = {item.module.file: item.path for item in unit.loaded if not item.stdlib}
    unit.plan = lower(
        unit.spec,
        unit.facts,
        base=unit.path.resolve().parent,
        plan_path=unit.output,
        files=files,
        decisions=decisions,
        diags=unit.diags,
    )


def decisions_in(plan_file: Path) -> dict[str, Decision]:
    """task -> the probe decision recorded in the plan file, for lower to carry forward; none
    from a missing, broken or older file (it has no decisions worth keeping)."""
    if not plan_file.is_file():
        return {}
    try:
        plan = read_plan(plan_file)
    except Exception:  # noqa: BLE001 - a broken or older plan has no decisions worth keeping
        return {}
    from orcac.specs.plan import recorded_decisions

    return recorded_decisions(plan)


# The passes, in order. `orcac check` stops after "check".
PASSES = (("load", _load), ("resolve", _resolve), ("check", _check), ("lower", _lower))


@contextmanager
def _no_gc():
    # The front end allocates many small objects and no reference cycles worth
    # collecting; pausing the cyclic GC while it runs saves 20-40% on large specs.
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def run(unit: Unit, *, until: str = "lower") -> Unit:
    """Run the passes in order up to `until`; raise CompileError after the first pass
    that found errors (with every error found so far; resolve's wait for check's)."""
    with _no_gc():
        for name, step in PASSES:
            step(unit)
            if not (name in _REPORT_TOGETHER and unit.spec is not None):
                unit.diags.raise_if_any()
            if name == until:
                break
        unit.diags.raise_if_any()
    return unit


# Resolve looks at names, check at data and templates: a spec with an unknown name still
# gets its template and source errors in the same report, so one `orcac check` shows all.
_REPORT_TOGETHER = {"resolve"}


def diagnose(path: str | Path) -> Diagnostics:
    """Every problem in a spec, reading only source headers, with the files' text."""
    return analyze(path).diags


def analyze(path: str | Path, unsaved: dict[Path, str] | None = None) -> Unit:
    """What `orcac check` computes, kept: the diagnostics and every pass's output up to
    `check` (what a pass after the first failing one would produce stays None). `unsaved`
    maps absolute paths to text read instead of the files (an editor's open buffers)."""
    p = Path(path)
    unit = Unit(path=p, output=plan_path_for(p), whole=False, diags=Diagnostics(), unsaved=unsaved)
    try:
        run(unit, until="check")
    except CompileError:
        pass
    return unit


def check_spec(path: str | Path) -> list[Diagnostic]:
    """Every problem in a spec, reading only source headers; [] when it is clean."""
    return list(diagnose(path).items)


def compile_spec(
    path: str | Path,
    output: str | Path | None = None,
    *,
    warnings: list[Diagnostic] | None = None,
    decisions: Mapping[str, Decision] | None = None,
) -> Plan:
    """Compile a spec into its Plan. Paths in the plan are relative to `output`'s directory
    (default: the plan file beside the spec); a probe decision is carried forward when its
    key still matches: from `decisions` (task -> decision) when given, as a build hands in
    its probe's (`orcac.runtime.context.RunContext.recompile`), else from the plan already at
    `output`.

    Raises CompileError (an OrcacError) carrying every diagnostic. Warnings (rows that
    cannot be rendered and are left out) are appended to `warnings` when it is given.
    """
    path = Path(path)
    out = Path(output) if output is not None else plan_path_for(path)
    unit = run(Unit(path=path, output=out, whole=True, diags=Diagnostics(), decisions=decisions))
    if warnings is not None:
        warnings.extend(d for d in unit.diags.items if d.severity == "warning")
    assert unit.plan is not None  # run() raised CompileError otherwise
    return unit.plan


def write_plan(plan: Plan, output: str | Path) -> bool:
    """Write a plan file; returns whether its content changed."""
    from orcac.specs.plan_file import write_plan as write

    return write(plan, output)


@dataclass(frozen=True)
class LoadedPlan:
    plan: Plan
    path: Path  # the plan file
    root: Path  # the directory that the plan's relative paths start from
    # the plan file on disk against `plan`: "up to date", "stale" or "missing" (as `orcac plan --check` says)
    on_disk: str = "up to date"

    def resolve(self, relative: str) -> Path:
        return self.root / relative


def plan_file_state(plan: Plan, out: Path) -> str:
    """How the plan file at `out` compares with `plan`: "up to date", "stale" or "missing"."""
    if not out.is_file():
        return "missing"
    return "up to date" if out.read_text(encoding="utf-8") == dump_plan(plan) else "stale"


def load_plan(path: str | Path, *, write: bool = True) -> LoadedPlan:
    """A plan for the runtime: a .plan.yaml is read; a .orca spec is compiled and its plan
    written beside it (as `orcac plan` does), then returned. With `write=False` (a command
    that only reads) the spec is compiled in memory and the file is left as it is: the
    result says whether the file on disk is stale, as `orcac plan --check` would."""
    p = Path(path)
    if p.suffix != ".orca":
        return LoadedPlan(plan=read_plan(p), path=p, root=p.resolve().parent)
    out = plan_path_for(p)
    plan = compile_spec(p, out)
    if write:
        write_plan(plan, out)
        return LoadedPlan(plan=plan, path=out, root=out.resolve().parent)
    return LoadedPlan(plan=plan, path=out, root=out.resolve().parent, on_disk=plan_file_state(plan, out))
