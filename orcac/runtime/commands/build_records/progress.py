"""What the user sees during and after `orcac build`: a live display and a summary table.

The live display (rich, on a terminal) shows calls done/total (and the answers an earlier
build stored), requests/s, tokens, cost so far, ETA, answers that passed or failed the
task's checks, and failures by reason; `--no-progress` or a non-terminal stderr gets a plain
line every few seconds instead. Which answers become records (`kept`) is decided only once
every answer is in, after the judges and rejection sampling's `keep`: the summary table at
the end says it, beside the same `passed` count the live line ended on. Counts live in
`Tally` objects keyed by (task, strategy), which the summary reads.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orcac.runtime.answers.judges import grouped_reason
from orcac.stats import rate_text

PLAIN_EVERY_S = 5.0

# Why an answer that passed its task's checks is not a record: rejection sampling's choice
# (orcac.runtime.answers.checks.kept_samples) or a judge's verdict (judges.judged).
_KEEP_REASONS = ("duplicate", "beyond keep")
_JUDGE_REASON = "judged("


def passed_checks(accepted: bool, reason: str | None) -> bool:
    """Whether an answer with this final verdict passed its task's own checks: a kept one did,
    and so did one left out by `keep` or by a judge (judges only see answers that pass).

    >>> passed_checks(False, "duplicate"), passed_checks(False, "numeric"), passed_checks(False, "judged(h): score 3 below 7")
    (True, False, True)
    """
    return accepted or reason in _KEEP_REASONS or (reason or "").startswith(_JUDGE_REASON)


@dataclass
class Tally:
    rows: int = 0  # train rows (examples) of this task
    items: int = 0  # answers wanted: rows x samples (teacher jobs sent or reused), one per row from a source
    cached: int = 0  # answered by an earlier build: no call this time
    calls: int = 0  # jobs answered or failed in this build
    passed: int = 0  # answers that passed the task's checks (before its judges and `keep`)
    accepted: int = 0  # kept: the answers that are records
    rejected: Counter = field(default_factory=Counter)  # failed the checks: check reason -> count
    not_kept: Counter = field(default_factory=Counter)  # passed the checks, no record: judge / keep reason -> count
    failed: Counter = field(default_factory=Counter)  # failure reason -> count
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # teachers' and judges' calls together
    last_s: float = 0.0  # seconds from the build's start to this task's last outcome
    judge_calls: int = 0  # judge jobs answered or failed in this build (judges' failures count in `failed`)

    def count(self, accepted: bool, reason: str | None, times: int = 1) -> None:
        """One answer's verdict counted (`times = -1`: a verdict that changed, taken back)."""
        if passed_checks(accepted, reason):
            self.passed += times
            if accepted:
                self.accepted += times
            else:
                self.not_kept[reason] += times
        else:
            self.rejected[reason] += times


def _money(value: float) -> str:
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class BuildProgress:
    """Counts outcomes as they arrive (event-loop thread) and shows them (timer thread)."""

    def __init__(
        self,
        total: int,
        *,
        live: bool | None = None,
        console: Console | None = None,
        label: str = "build",
        stored: int = 0,
        passed: int = 0,
        rejected: int = 0,
    ):
        self.console = console or Console(stderr=True)
        self.label = label  # the plain lines' prefix: "build", or "judges" for the judges' round
        self.total = total  # calls to make in this build
        self.stored = stored  # answers an earlier build stored: no call
        self.done = 0
        self.failed: Counter = Counter()
        # answers (stored ones included) that passed / failed their task's checks: whether one
        # that passed becomes a record is decided after the calls (judges, `keep`)
        self.passed = passed
        self.rejected = rejected
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0
        self.started = time.monotonic()
        self.live = self.console.is_terminal if live is None else live
        self._live: Live | None = None
        self._stop = threading.Event()
        self._printer: threading.Thread | None = None
        self.batches: dict[str, str] = {}  # provider batch id -> its last state line (mode = batch)

    # ---- counting ---------------------------------------------------------------------

    def outcome(self, *, failed_reason: str | None, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        self.done += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost += cost
        if failed_reason:
            self.failed[failed_reason] += 1

    def answered(self, outcome) -> str | None:
        """One teacher or judge outcome (orcac.runtime.teachers.jobs.Outcome) counted; returns
        its failure's reason, or None for an answer."""
        reason = (outcome.reason or "failed") if outcome.status == "failed" else None
        self.outcome(
            failed_reason=reason,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            cost=outcome.cost,
        )
        return reason

    def verdict(self, passed: bool) -> None:
        if passed:
            self.passed += 1
        else:
            self.rejected += 1

    def batch(self, batch_id: str, state: str) -> None:
        """A provider batch's state and counts (batch_api); shown under the bar, or logged on change."""
        if self.batches.get(batch_id) == state:
            return
        self.batches[batch_id] = state
        if not self.live:
            print(f"{self.label}: batch {batch_id}: {state}", file=sys.stderr, flush=True)

    # ---- showing ----------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        elapsed = self.elapsed()
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        parts = [
            f"{self.done}/{self.total} calls" + (f", {self.stored:,} answers stored" if self.stored else ""),
            f"{rate:.1f} req/s",
            f"{self.prompt_tokens + self.completion_tokens:,} tokens",
            _money(self.cost),
            f"ETA {_duration(eta)}" if eta is not None and self.done < self.total else f"{_duration(elapsed)}",
            f"passed {self.passed}, rejected {self.rejected}",
        ]
        if self.failed:
            parts.append("failed: " + ", ".join(f"{k} {v}" for k, v in self.failed.most_common()))
        return " | ".join(parts)

    def _render(self) -> Text:
        share = self.done / self.total if self.total else 1.0
        width = 30
        filled = int(share * width)
        bar = Text("━" * filled, style="green") + Text("━" * (width - filled), style="grey37")
        text = Text.assemble(bar, f" {share:4.0%} ", self.line())
        for batch_id, state in sorted(self.batches.items()):
            text.append(f"\n  batch {batch_id}: {state}")  # ids and states are the provider's: plain text
        return text

    def start(self) -> BuildProgress:
        self.started = time.monotonic()
        if self.total == 0:
            return self
        if self.live:
            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        else:
            self._printer = threading.Thread(target=self._print_lines, name="orcac-progress", daemon=True)
            self._printer.start()
        return self

    def _print_lines(self) -> None:
        while not self._stop.wait(PLAIN_EVERY_S):
            print(f"{self.label}: {self.line()}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._stop.set()
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._printer is not None:
            self._printer.join()
            self._printer = None
            print(f"{self.label}: {self.line()}", file=sys.stderr, flush=True)


def summary_table(tallies: dict[tuple[str, str], Tally], elapsed: float) -> Table:
    """One row per task and strategy: its rows and the answers wanted (rows x samples), calls,
    answers that passed the checks (the live line's `passed`), kept (records), yield (kept /
    answers), rejected by the checks' reasons, not kept by the judges' and `keep`'s, tokens,
    cost, time."""
    table = Table(title=f"orcac build: {_duration(elapsed)}", title_justify="left")
    judged = any(t.judge_calls for t in tallies.values())  # a column of its own only when judges were asked
    chosen = any(+t.not_kept for t in tallies.values())  # ... and when judges or `keep` left answers out
    for name, justify in [
        ("task", "left"),
        ("strategy", "left"),
        ("rows", "right"),
        ("answers", "right"),
        ("calls", "right"),
        *([("judge calls", "right")] if judged else []),
        ("cached", "right"),
        ("passed", "right"),
        ("kept", "right"),
        ("yield", "right"),
        ("rejected", "left"),
        *([("not kept", "left")] if chosen else []),
        ("failed", "left"),
        ("tokens", "right"),
        ("cost", "right"),
        ("time", "right"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    if chosen:
        table.caption = (
            "passed: answers that passed the task's checks; kept: those that became records; "
            "not kept: rejected by a judge, or a duplicate or beyond `keep` among a row's samples"
        )
        table.caption_justify = "left"

    def row(task: str, strategy: str, t: Tally, seconds: float) -> list[str]:
        return [
            task,
            strategy,
            str(t.rows),
            str(t.items),
            str(t.calls),
            *([str(t.judge_calls)] if judged else []),
            str(t.cached),
            str(t.passed),
            str(t.accepted),
            _yield(t),
            _reasons(t.rejected),
            *([_reasons(t.not_kept)] if chosen else []),
            _reasons(t.failed),
            f"{t.prompt_tokens + t.completion_tokens:,}",
            _money(t.cost),
            _duration(seconds),
        ]

    total = Tally()
    for (task, strategy), t in sorted(tallies.items()):
        table.add_row(*row(task, strategy, t, t.last_s))
        for name in (
            "rows",
            "items",
            "calls",
            "judge_calls",
            "cached",
            "passed",
            "accepted",
            "prompt_tokens",
            "completion_tokens",
            "cost",
        ):
            setattr(total, name, getattr(total, name) + getattr(t, name))
        for name in ("rejected", "not_kept", "failed"):
            getattr(total, name).update(getattr(t, name))
    if len(tallies) > 1:
        table.add_section()
        table.add_row(*row("all", "", total, elapsed))
    return table


def _yield(t: Tally) -> str:
    """Kept of the answers wanted, with its 95% interval (the answers column says n)."""
    return rate_text(t.accepted, t.items, show_n=False)


def _reasons(counter: Counter) -> str:
    grouped: Counter = Counter()
    for reason, n in counter.items():
        grouped[grouped_reason(reason)] += n  # one count per judge's threshold, not per score
    return ", ".join(f"{reason} {n}" for reason, n in sorted(grouped.items()) if n) or "0"
