"""Diagnostics: one error shape, collected across passes, rendered with the source line.

spec.orca:12:14: error: unknown strategy 'step_by_stpe'
   12 |   strategy = step_by_stpe
      |              ^^^^^^^^^^^^
  did you mean 'step_by_step'?
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

from orcac.errors import OrcacError
from orcac.specs.spec import Span


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span | None = None
    hint: str | None = None
    severity: str = "error"

    def sort_key(self) -> tuple:
        s = self.span
        return (s.file, s.line, s.col) if s else ("", 0, 0)

    def as_dict(self) -> dict:
        s = self.span
        return {
            "file": s.file if s else None,
            "line": s.line if s else None,
            "column": s.col if s else None,
            "end_line": s.end_line if s else None,
            "end_column": s.end_col if s else None,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass
class Diagnostics:
    """Collects diagnostics; knows each file's text so it can show the offending line."""

    items: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    def error(self, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.items.append(Diagnostic(message, span, hint))

    def warning(self, message: str, span: Span | None = None, hint: str | None = None) -> None:
        """Reported, but the spec still compiles (a row that cannot be rendered, say)."""
        self.items.append(Diagnostic(message, span, hint, severity="warning"))

    def __bool__(self) -> bool:
        return any(d.severity == "error" for d in self.items)

    def raise_if_any(self) -> None:
        if self:
            raise CompileError(self.items, self.sources)


class CompileError(OrcacError):
    """Every problem found in a spec; `render()` shows them all, in file order."""

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = list(diagnostics)
        self.sources = dict(sources or {})
        first = self.diagnostics[0].message if self.diagnostics else "no diagnostics"
        super().__init__(first)

    def render(self) -> str:
        return render(self.diagnostics, self.sources)


def render(diagnostics: list[Diagnostic], sources: dict[str, str]) -> str:
    parts = [render_one(d, sources) for d in sorted(diagnostics, key=Diagnostic.sort_key)]
    errors = sum(d.severity == "error" for d in diagnostics)
    if errors > 1:
        parts.append(f"{errors} errors")
    return "\n".join(parts)


def render_one(d: Diagnostic, sources: dict[str, str]) -> str:
    s = d.span
    head = f"{s.file}:{s.line}:{s.col}: {d.severity}: {d.message}" if s else f"{d.severity}: {d.message}"
    lines = [head]
    text = sources.get(s.file) if s else None
    if s and text is not None:
        src_lines = text.splitlines()
        if 1 <= s.line <= len(src_lines):
            line = _visible(src_lines[s.line - 1])
            width = len(str(s.line))
            end = s.end_col if s.end_line == s.line and s.end_col > s.col else max(s.col + 1, len(line) + 1)
            carets = "^" * max(1, min(end, len(line) + 1) - s.col)
            lines.append(f"  {s.line} | {line}")
            lines.append(f"  {' ' * width} | {' ' * (s.col - 1)}{carets}")
    if d.hint:
        lines.append(f"  {d.hint}")
    return "\n".join(lines)


# A control character in a spec's line is shown as its Unicode "control picture" (ESC as
# U+241B), one column wide like the character it stands for, so the caret stays aligned
# and nothing in a spec can move the cursor or clear the screen.
_PICTURES = {**{i: 0x2400 + i for i in range(0x20)}, 0x7F: 0x2421, **{i: 0xFFFD for i in range(0x80, 0xA0)}, 0x09: 0x20}


def _visible(line: str) -> str:
    return line.translate(_PICTURES)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A "did you mean 'x'?" hint for a misspelt name, or None when nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
