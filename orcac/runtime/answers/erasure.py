"""Prompt erasure: records carry the generic erase message, never the strategy's instruction.

The two sides of erasure live here. The teacher is shown `teacher_messages`: the strategy's
system text, its demonstrations as earlier user/assistant turns, then the task's prompt. A
record is (system = the task's erase message, user = the rendered prompt, assistant = the
teacher's answer): no instruction and no demonstration. `audit` runs at the end of every
build over every stored record: each *distinctive* sentence of every strategy's system text
and of its demonstrations is searched (case and whitespace insensitive) in the records'
`system` and `user` fields; a hit fails the build. Both sides are normalised the same way:
`normalise` here, and `sql_normalised` in DuckDB (orcac.runtime.store.builds, where the audit's
query is), which agree on every code point (a test checks them against each other).

The assistant field is not audited: a teacher that writes "let's think step by step" in its
answer teaches the student a behaviour, which is the point; what must not survive is the
instruction in the prompt the student is trained on. (A source's own answers are audited
against their rows' instructions in the assistant field too: orcac.runtime.answers.given.)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from orcac.errors import OrcacError
from orcac.specs.plan import Plan

MIN_WORDS = 4  # shorter sentences ("Be concise.") are too generic to prove a leak
MIN_CHARS = 20
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Whitespace as Python's str.split() knows it, spelled out so that RE2 (DuckDB) reads the same
# class: its own \s is ASCII only.
WHITESPACE = "[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
_WHITESPACE = re.compile(WHITESPACE)

RECORD_FIELDS = ("strategy", "system", "user", "assistant", "teacher", "gold")
"""A record's content columns; with record_id, task, split, row_index and job_id it is a row of `records`."""


def teacher_messages(plan: Plan, strategy: str, prompt: str, system: str | None = None) -> tuple[dict, ...]:
    """What the teacher is shown for one prompt under `strategy` (`system`: a resolved text
    that replaces the strategy's own)."""
    shown = plan.strategies[strategy]
    messages = [{"role": "system", "content": system if system is not None else shown.system}]
    for demo in shown.demonstrations:
        messages += [{"role": "user", "content": demo.user}, {"role": "assistant", "content": demo.assistant}]
    messages.append({"role": "user", "content": prompt})
    return tuple(messages)


def erased(plan: Plan, task: str, strategy: str | None, prompt: str, answer: str | None, gold: str | None) -> tuple:
    """The training record for an answer, in RECORD_FIELDS order: the system message is the
    task's erase text, whatever strategy the teacher was given (None: the source's answer)."""
    task_plan = plan.tasks[task]
    return (strategy, plan.erase[task_plan.erase].system, prompt, answer, task_plan.teacher, gold)


def record_id(task: str, row_index: int, job_id: str) -> str:
    """Stable id of the record (and of its check) for one task row answered by one job."""
    return hashlib.sha256(f"{task}\x1f{row_index}\x1f{job_id}".encode()).hexdigest()[:32]


def normalise(text: str) -> str:
    """Lower case, every run of whitespace one space, trimmed: what the audit compares.

    >>> normalise("  Think  STEP\\nby step, Straße ")
    'think step by step, straße'
    """
    return _WHITESPACE.sub(" ", text).strip(" ").replace("\u0130", "i").lower()


def distinctive_sentences(text: str, erase_texts: list[str]) -> list[str]:
    """Normalised sentences of an instruction worth searching for.

    >>> distinctive_sentences("Be brief. Think through the problem step by step.\\nAnswer: <n>", [])
    ['think through the problem step by step.']
    """
    erased = [normalise(e) for e in erase_texts]
    found = []
    for sentence in _SENTENCE_END.split(text):
        sentence = normalise(sentence)
        if len(sentence.split()) < MIN_WORDS or len(sentence) < MIN_CHARS:
            continue
        if any(sentence in e for e in erased):
            continue
        if sentence not in found:
            found.append(sentence)
    return found


@dataclass(frozen=True)
class Leak:
    strategy: str
    sentence: str
    field: str
    record_ids: tuple[str, ...]
    count: int
    label: str = ""  # what the sentence is of, where it is not a strategy's (orcac.runtime.answers.given)


def audit(plan: Plan, store) -> list[Leak]:
    """Every (strategy sentence, field) found in a stored record; empty when erasure holds."""
    erase_texts = [e.system for e in plan.erase.values()]
    rows = [
        (name, sentence)
        for name, strategy in sorted(plan.strategies.items())
        for sentence in distinctive_sentences(strategy.system, erase_texts)
    ]
    # A demonstration's user turn is written like the task's prompts, so the prompt template's
    # own text ("Is the sentiment of this review positive or negative?") is no leak.
    templates = [t.prompt for t in plan.tasks.values()]
    rows += [
        (f"{name} (demonstration {n})", sentence)
        for name, strategy in sorted(plan.strategies.items())
        for n, demo in enumerate(strategy.demonstrations, 1)
        for sentence in distinctive_sentences(f"{demo.user}\n{demo.assistant}", erase_texts + templates)
    ]
    # Task systems that do not come from a named strategy (resolved text) are audited too.
    for task in plan.tasks.values():
        if task.system and not any(task.system == s.system for s in plan.strategies.values()):
            rows += [(f"{task.name}'s system", s) for s in distinctive_sentences(task.system, erase_texts)]
    if not rows:
        return []
    from orcac.runtime.store.builds import leaked_sentences

    found = leaked_sentences(store, WHITESPACE, [r[0] for r in rows], [r[1] for r in rows])
    return [Leak(strategy, sentence, field, tuple(ids), n) for strategy, sentence, field, ids, n in found]


def raise_on_leaks(leaks: list[Leak]) -> None:
    if not leaks:
        return
    first = leaks[0]
    total = sum(leak.count for leak in leaks)
    more = f" (and {len(leaks) - 1} more sentence/field pairs)" if len(leaks) > 1 else ""
    label = first.label or f"strategy {first.strategy}'s sentence"
    raise OrcacError(
        f"erasure audit failed: {total} record field(s) carry instruction text; {label} "
        f'"{first.sentence}" is in the {first.field} of {first.count} record(s): '
        f"{', '.join(first.record_ids)}{more}",
        hint="the prompt template or erase message repeats the rows' own system messages; reword it"
        if first.label
        else "the prompt template or erase message repeats the strategy's instruction; reword one of them",
    )
