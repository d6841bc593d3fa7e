"""What every runtime command is handed: one plan, where it lives, its database, one hash.

    context = RunContext.of(plan, plan_path, db=None, recompile=compile_spec)
    build.command(context, args)

The CLI builds it once per command (`orcac/cli.py`: it compiles a `.orca` spec, or reads a
`.plan.yaml`), so the runtime never imports the compiler and no command works out the
database path or the plan's hash its own way. The one thing the runtime needs from the
compiler, recompiling with the decisions a probe made (handed in memory, so the plan
file is written once, after), is handed down as a function (`recompile`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

from orcac.specs.plan import Decision, Plan, spec_stem
from orcac.specs.plan_file import plan_sha256


def default_db(root: Path, spec: str) -> Path:
    """`.orca/<spec stem>.duckdb` beside the plan: `spec` is the plan's `spec` (its file name)."""
    return root / ".orca" / f"{spec_stem(spec)}.duckdb"


class Recompile(Protocol):
    """The compiler's `compile_spec`: (spec file, plan file, decisions = task -> its probe
    decision) -> the plan `orcac plan` would write now, those decisions carried where their
    keys hold."""

    def __call__(self, spec: Path, plan_file: Path, *, decisions: Mapping[str, Decision]) -> Plan: ...


@dataclass(frozen=True)
class RunContext:
    plan: Plan
    path: Path  # the plan file
    root: Path  # the directory the plan's relative paths start from: the plan file's
    db: Path  # the spec's DuckDB file (--db, else default_db)
    recompile: Recompile | None = None  # None: no compiler at hand (a .plan.yaml run by a test)

    @classmethod
    def of(
        cls,
        plan: Plan,
        path: str | Path,
        *,
        db: str | Path | None = None,
        recompile: Recompile | None = None,
    ) -> RunContext:
        path = Path(path)
        root = path.resolve().parent
        return cls(plan, path, root, Path(db) if db else default_db(root, plan.spec), recompile)

    @cached_property
    def plan_sha256(self) -> str:
        """The plan's identity in runs, train_runs, eval_runs and a trained model's plan.sha256."""
        return plan_sha256(self.plan)

    def with_plan(self, plan: Plan) -> RunContext:
        """The same files with a newer plan (after a probe decided a strategy)."""
        return dataclasses.replace(self, plan=plan)
