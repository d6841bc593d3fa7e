"""Answers the source already has: records with no teacher, checked and erased like the others.

    task openorca {
      from        = jsonl("data/openorca.jsonl")
      instruction = "{{ system_prompt }}"   # the row's own system message: erased
      prompt      = "{{ question }}"
      answer      = "{{ response }}"        # the answer the source has: no teacher is asked
      gold        = "{{ gold }}"
      accept      = contains(gold)          # SlimOrca's filter: answers that agree with the gold
    }

Orca 2 trained its second and third stages on Orca 1's ChatGPT and GPT-4 answers, and public
sets (OpenOrca, SlimOrca) have that shape: a system message, a question, a response. Such a
task makes no job. Each train example's answer is checked by the task's `accept` rules (the
scorer teacher answers go through, orcac.runtime.answers.checks) and, if accepted, becomes a
record like a teacher's (orcac.runtime.answers.erasure.erased): system = the erase message,
user = the prompt, assistant = the answer; its strategy, teacher and job are NULL.

The row's instruction takes the strategy's place in erasure, row by row. It is never stored
(not in examples, checks or records); an answer or prompt that carries a distinctive sentence
of it is rejected (reason `instruction`), so it never becomes a record; and `audit` checks
every stored record of such a task against its own row's instruction, in its system, user and
assistant fields, failing the build like the strategy audit does.

A record's id is content-addressed from the task, the row, the prompt and the answer (there is
no job): a finished build re-run writes nothing, a changed answer replaces its record, and a
row the plan no longer produces is deleted with the teachers' stale records (its id is not in
`Work.keep`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from orcac.runtime.answers.checks import Verdict, check_answer
from orcac.runtime.answers.erasure import WHITESPACE, Leak, distinctive_sentences, erased, normalise, record_id
from orcac.runtime.answers.examples import Example
from orcac.specs.plan import Plan, TaskPlan

INSTRUCTION = "instruction"  # why an answer that repeats its row's instruction is rejected
SHOWN = "(from source)"  # the strategy column of the build's summary for these rows


@dataclass(frozen=True)
class Given:
    """One train example of a task whose answers come from its source."""

    task: str
    row_index: int
    prompt: str
    gold: str | None
    answer: str
    instruction: str | None
    record_id: str


def given_id(task: str, row_index: int, prompt: str, answer: str) -> str:
    """The record's id: what it says, not how it was asked for (there is no job)."""
    digest = hashlib.sha256(f"{prompt}\x1f{answer}".encode()).hexdigest()
    return record_id(task, row_index, f"source:{digest}")


def given_items(task: TaskPlan, examples: list[Example]) -> list[Given]:
    return [
        Given(
            task.name,
            e.row_index,
            e.prompt,
            e.gold,
            e.answer,
            e.instruction,
            given_id(task.name, e.row_index, e.prompt, e.answer),
        )
        for e in examples
        if e.split == "train" and e.answer is not None
    ]


class Instructions:
    """Each distinct instruction's distinctive sentences, worked out once (a source like
    OpenOrca repeats a handful of system messages over millions of rows)."""

    def __init__(self, plan: Plan):
        erase_texts = tuple(e.system for e in plan.erase.values())
        self.sentences = lru_cache(maxsize=4096)(lambda text: tuple(distinctive_sentences(text, list(erase_texts))))

    def of(self, g: Given) -> tuple[str, ...]:
        return self.sentences(g.instruction) if g.instruction else ()


def verdict(plan: Plan, g: Given, instructions: Instructions) -> Verdict:
    """The task's checks on the source's answer, after the one erasure asks for: neither the
    prompt nor the answer repeats the row's instruction."""
    sentences = instructions.of(g)
    if sentences:
        user, answer = normalise(g.prompt), normalise(g.answer)
        if any(s in user or s in answer for s in sentences):
            return Verdict(False, INSTRUCTION)
    return check_answer(g.answer, None, g.gold, plan.tasks[g.task].accept)


def record(plan: Plan, g: Given) -> tuple:
    """The erased record, in RECORD_FIELDS order: no strategy, no teacher."""
    return erased(plan, g.task, None, g.prompt, g.answer, g.gold)


def audit(plan: Plan, store, given: list[Given]) -> list[Leak]:
    """Every stored record of these rows checked against its own row's instruction (system,
    user and assistant); empty when erasure holds."""
    instructions = Instructions(plan)
    sentences: dict[str, int] = {}
    ids: list[str] = []
    which: list[int] = []
    for g in given:
        for s in instructions.of(g):
            ids.append(g.record_id)
            which.append(sentences.setdefault(s, len(sentences)))
    if not ids:
        return []
    from orcac.runtime.store.builds import leaked_row_instructions

    found = leaked_row_instructions(store, WHITESPACE, ids, which, list(sentences))
    return [
        Leak(
            f"task {task}'s row instruction",
            list(sentences)[k],
            field,
            tuple(found_ids),
            n,
            label=f"the instruction of a row of task {task}, its sentence",
        )
        for task, k, field, found_ids, n in found
    ]
