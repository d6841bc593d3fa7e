"""Answer forms: the built-in `expect` rules, how an answer is tested against a form, and the
phrases by which an answer points at a prompt the student never sees (`no_echo`).

One module for the compiler and the runtime, so they can never disagree: `orcac check` tests
each strategy's demonstrations against its own form and against the other strategies' forms,
`orcac build` keeps an answer by the same test (`follows(strategy)`), and `orcac eval` scores
the student with it. Pure Python (`re` only): `check` imports it on every keystroke in an editor.

A rule is anything with `kind`, `pattern`, `value` and `description`: the Spec's `FormRule`
and the Plan's `AdherenceRule` both are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol

# An answer that refers to its hidden context ("as instructed", "following the example above")
# teaches the student to refer to something that is not there once the prompt is erased.
# Each is a regex fragment, matched case-insensitively with words bounded. Phrases that as
# often point at what the user wrote, which the student does see, are left out: "as
# requested" (a support reply), "as directed" (a medicine's label).
ECHO_PHRASES = (
    r"as (?:you )?instructed",
    r"as (?:per|in) (?:your|the) (?:instructions?|request|examples?|system (?:prompt|message))",
    r"(?:following|per|according to|based on) (?:your|the) (?:instructions?|system (?:prompt|message))",
    r"(?:following|like|as in|as shown in|as demonstrated in|similar to) the (?:examples?|demonstrations?)(?: (?:above|given|provided|before|earlier|shown))?",
    r"the (?:examples?|demonstrations?) (?:above|given|provided|earlier)",
    r"as (?:shown|demonstrated) (?:above|earlier|before)",
    r"in the (?:format|form|style) (?:you )?(?:asked for|requested|specified|wanted|given|shown)",
    r"in the (?:requested|specified|required|given) (?:format|form|style)",
    r"(?:the|my|your) (?:system prompt|system message)",
)
_ECHO = re.compile(r"\b(?:" + "|".join(ECHO_PHRASES) + r")\b", re.I)

# Built-in answer forms for `expect`: name -> (regex, description). Flags are inline so a
# pattern means the same wherever it is used. Forms that say "and nothing else" (`single_line`,
# `no_numbered_steps`, `no_echo`) are negative lookaheads from the start of the answer, so they
# stay plain regexes in the plan.
_NUMBERED = r"^\s*(?:step\s*)?1[.):].*^\s*(?:step\s*)?2[.):]"
NO_ECHO = "does not refer to a prompt the student never sees"
FORMS = {
    "answer_line": (r"(?im)^[\s*#>_-]*(?:final\s+)?answer\s*[*_]*\s*:", "has an 'Answer:' line"),
    "numbered_steps": (r"(?ims)" + _NUMBERED, "numbers its steps (1., 2., ...)"),
    "no_numbered_steps": (r"(?ims)\A(?!.*" + _NUMBERED + ")", "has no numbered steps"),
    "single_line": (r"\A\s*[^\n]*\S[^\n]*\s*\Z", "answers in a single line"),
    "explanation_first": (
        r"(?is)\A\s*\S.*\n[\s*#>_-]*(?:final\s+)?answer\s*[*_]*\s*:",
        "explains before the 'Answer:' line",
    ),
    "facts_first": (r"(?i)\A\s*[*#]*\s*(?:relevant\s+)?facts\s*[*]*\s*:", "starts by recalling facts ('Facts:')"),
    "extract_first": (r"(?i)\A\s*[*#]*\s*extracted\s*[*]*\s*:", "starts with what it extracted ('Extracted:')"),
    "no_echo": (r"(?is)\A(?!.*" + _ECHO.pattern + ")", NO_ECHO),
}


class Rule(Protocol):  # read-only: the Spec's rules are frozen dataclasses
    @property
    def kind(self) -> str: ...
    @property
    def pattern(self) -> str | None: ...
    @property
    def value(self) -> int | None: ...
    @property
    def description(self) -> str: ...


def echo(text: str) -> str | None:
    """The first phrase by which `text` points at a prompt it was shown, or None.

    >>> echo("As instructed, here is the answer.\\nAnswer: 4")
    'As instructed'
    >>> echo("The soldiers moved the boxes. Answer: 4") is None
    True
    """
    found = _ECHO.search(text)
    return found.group(0) if found else None


def adheres(text: str, rules: Iterable[Rule]) -> tuple[bool, list[str]]:
    """Whether an answer has a strategy's form; returns the descriptions of the rules it breaks.

    >>> from orcac.specs.plan import AdherenceRule
    >>> adheres("1. think\\nAnswer: 3", [AdherenceRule(kind="regex", pattern=r"^Answer:", description="answer line")])
    (True, [])
    """
    broken = []
    words = len(text.split())
    for rule in rules:
        if rule.kind == "regex":
            ok = re.search(rule.pattern or "", text, re.M | re.S) is not None
        elif rule.kind == "max_words":
            ok = words <= (rule.value or 0)
        elif rule.kind == "min_words":
            ok = words >= (rule.value or 0)
        else:
            raise ValueError(f"unknown adherence kind {rule.kind!r}")
        if not ok:
            broken.append(rule.description)
    return not broken, broken


def followed(text: str, forms: dict[str, Sequence[Rule]]) -> str:
    """Which strategy's form an answer follows: its name when exactly one accepts it, "none"
    when none does, "several" when more than one does. Strategies with no rules take no part
    (an empty form accepts every answer and tells nothing apart).

    >>> from orcac.specs.plan import AdherenceRule
    >>> one = AdherenceRule(kind="regex", pattern=FORMS["single_line"][0], description="one line")
    >>> steps = AdherenceRule(kind="regex", pattern=FORMS["numbered_steps"][0], description="steps")
    >>> followed("1. a\\n2. b\\nAnswer: 3", {"direct": [one], "steps": [steps]})
    'steps'
    >>> followed("hello", {"direct": [one], "steps": [steps]})
    'direct'
    """
    names = [name for name, rules in forms.items() if rules and adheres(text, rules)[0]]
    if not names:
        return "none"
    return names[0] if len(names) == 1 else "several"
