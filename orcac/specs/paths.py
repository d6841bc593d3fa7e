"""Where a spec's plan file goes. Stdlib only: `orcac check` imports it."""

from __future__ import annotations

from pathlib import Path


def plan_path_for(spec_path: str | Path) -> Path:
    """Where `orcac plan` writes a spec's plan: x.orca -> x.plan.yaml beside it."""
    p = Path(spec_path)
    return p.with_name(p.name.removesuffix(".orca") + ".plan.yaml")
