"""Scoring a model's answer: acceptance checks against the gold, and strategy adherence.

One module serves three callers so they can never disagree: `orcac build` keeps a
teacher answer only if `check_answer` accepts it, the probe scores each candidate
strategy with it, and `orcac eval` scores the student with it. Pure Python, no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from orcac.specs.forms import NO_ECHO, adheres, echo
from orcac.specs.plan import AdherenceRule, CheckRule

__all__ = [
    "ECHO",
    "Verdict",
    "adheres",
    "check_answer",
    "extract_answer",
    "kept_samples",
    "normalise",
    "parse_number",
    "passes",
]

ECHO = "echo"  # why an answer that points at its hidden prompt is rejected, by `no_echo` or a form's `no_echo`

# "Answer: 42", "Final answer: 42", "**Answer:** 42"
_ANSWER_LINE = re.compile(r"^[\s*#>_-]*(?:final\s+)?answer\s*[*_]*\s*[:：]\s*[*_]*\s*(.*?)\s*$", re.I | re.M)
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?|[-+]?\.\d+", re.I)
_EDGE_PUNCT = "\"'`*_.,;:!?()[]{} \t"


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str  # "accepted", or the first check that failed, e.g. "truncated", "contains"


def normalise(text: str) -> str:
    """Casefolded, whitespace collapsed, surrounding quotes and punctuation stripped.

    >>> normalise('  "Yes."  ')
    'yes'
    """
    return " ".join(text.casefold().split()).strip(_EDGE_PUNCT)


def extract_answer(text: str) -> str:
    """The final answer: the last "Answer:" line if there is one, else the last non-empty line.

    >>> extract_answer("Step 1: 2 + 2 = 4.\\nAnswer: 4")
    '4'
    >>> extract_answer("The cat is in the box.")
    'The cat is in the box.'
    """
    found = [m.group(1) for m in _ANSWER_LINE.finditer(text) if m.group(1).strip()]
    if found:
        return found[-1].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def parse_number(text: str) -> float | None:
    """The last number in `text` ("1,234.5" reads as 1234.5), or None.

    >>> parse_number("so the total is $1,250.")
    1250.0
    """
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    try:
        return float(numbers[-1].replace(",", ""))
    except ValueError:
        return None


def passes(rule: CheckRule, text: str, gold: str | None, form: Iterable[AdherenceRule] = ()) -> bool:
    """Whether one check holds. Checks that need a gold fail when there is none;
    `follows` holds when every rule of the strategy's form (`form`) does."""
    if rule.kind == "follows":
        return adheres(text, form)[0]
    if rule.kind == "nonempty":
        return bool(text.strip())
    if rule.kind == "no_echo":
        return echo(text) is None
    if rule.kind == "regex":
        return re.search(rule.pattern or "", text, re.M) is not None
    if gold is None:
        return False
    if rule.kind == "contains":
        wanted = normalise(gold)
        return bool(wanted) and wanted in " ".join(text.casefold().split())
    if rule.kind == "exact":
        return normalise(extract_answer(text)) == normalise(gold)
    if rule.kind == "numeric":
        got, want = parse_number(extract_answer(text)), parse_number(gold)
        if got is None or want is None:
            return False
        return math.isclose(got, want, rel_tol=0.0, abs_tol=rule.tolerance or 1e-9)
    raise ValueError(f"unknown check kind {rule.kind!r}")


def check_answer(
    text: str | None,
    finish_reason: str | None,
    gold: str | None,
    rules: Iterable[CheckRule],
    *,
    allow_truncated: bool = False,
    form: Iterable[AdherenceRule] = (),
) -> Verdict:
    """Accept an answer only if it is complete, non-empty and passes every rule.

    The reason for a rejection is the first rule that failed; for `follows`, the form's first
    broken rule, e.g. "form: has an 'Answer:' line"; "echo" for an answer that points at its
    hidden prompt, whether `no_echo` or the form's `no_echo` caught it (one count in the summary).

    >>> from orcac.specs.plan import CheckRule
    >>> check_answer("Answer: 4", "stop", "4", [CheckRule(kind="numeric")])
    Verdict(accepted=True, reason='accepted')
    >>> check_answer("Answer: 4", "length", "4", [CheckRule(kind="numeric")])
    Verdict(accepted=False, reason='truncated')
    """
    if finish_reason == "length" and not allow_truncated:
        return Verdict(False, "truncated")
    if not text or not text.strip():
        return Verdict(False, "empty")
    for rule in rules:
        if rule.kind == "judged":  # asked after these pass, once the answers are in (orcac.runtime.answers.judges)
            continue
        if rule.kind == "follows":
            ok, broken = adheres(text, form)
            if not ok:
                return Verdict(False, ECHO if broken[0] == NO_ECHO else f"form: {broken[0]}")
        elif not passes(rule, text, gold):
            return Verdict(False, ECHO if rule.kind == "no_echo" else rule.kind)
    return Verdict(True, "accepted")


def kept_samples(samples: Iterable[tuple[int, str | None, bool]], keep: int) -> dict[int, str]:
    """Rejection sampling's choice for one example: up to `keep` accepted, distinct answers,
    lowest sample index first. Takes (sample index, text, accepted); returns, for each accepted
    sample that is not kept, why ("duplicate" or "beyond keep"). Deterministic whatever order
    the answers arrived in.

    >>> kept_samples([(2, "Answer: 4", True), (0, "answer: 4", True), (1, "Answer: 5", True)], keep=2)
    {2: 'duplicate'}
    >>> kept_samples([(0, "a", True), (1, "b", True), (2, "c", False)], keep=1)
    {1: 'beyond keep'}
    """
    seen: set[str] = set()
    dropped: dict[int, str] = {}
    for index, text, accepted in sorted(samples, key=lambda s: s[0]):
        if not accepted:
            continue
        key = normalise(text or "")
        if key in seen:
            dropped[index] = "duplicate"
        elif len(seen) >= keep:
            dropped[index] = "beyond keep"
        else:
            seen.add(key)
    return dropped
