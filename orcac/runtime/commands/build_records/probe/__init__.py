"""best_of: a task's strategy chosen by measured performance, before its main run.

    choice.py     scoring and choosing among candidates (pure)
    decisions.py  when a recorded decision holds; writing it into the plan file
    run.py        the probe jobs, answered and stored as the build's own
    estimate.py   the dry run's count of probe calls; the decision table
    phase.py      `orcac build`'s probe phase (its SQL: orcac.runtime.store.probes)

The names below are the package's interface; the modules above are where they live.
"""

from orcac.runtime.commands.build_records.probe.choice import (
    Answer,
    choose,
    decide,
    noise,
    score,
    tie_break,
    tie_message,
)
from orcac.runtime.commands.build_records.probe.decisions import (
    apply_decision,
    is_decided,
    pending,
    record,
    resolve_decided,
)
from orcac.runtime.commands.build_records.probe.estimate import ProbeEstimate, decision_table, estimate, print_estimate
from orcac.runtime.commands.build_records.probe.phase import dry_run_phase, needed, run_phase
from orcac.runtime.commands.build_records.probe.run import ProbeResult, probe_items, run_probes
from orcac.runtime.store.probes import write_decision

__all__ = [
    "Answer",
    "ProbeEstimate",
    "ProbeResult",
    "apply_decision",
    "choose",
    "decide",
    "dry_run_phase",
    "decision_table",
    "estimate",
    "is_decided",
    "needed",
    "noise",
    "pending",
    "print_estimate",
    "probe_items",
    "record",
    "resolve_decided",
    "run_phase",
    "run_probes",
    "score",
    "tie_break",
    "tie_message",
    "write_decision",
]
