"""Scoring and choosing among a best_of task's candidates: pure functions of the answers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from orcac.specs.plan import CandidateScore, Decision, ProbePlan


@dataclass(frozen=True)
class Answer:
    """One probe row answered under one candidate, with its verdict."""

    strategy: str
    row_index: int
    accepted: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    judged: float | None = None  # by = judge: the judge's score (its scale's lowest when there is none)


def score(strategy: str, answers: Iterable[Answer], metric: str = "accept") -> CandidateScore:
    """A candidate's score and spend over its probe answers: its pass rate (`accept`), or the
    mean of its judge's scores (`judge`).

    >>> a = [Answer("s", 0, True, 10, 5, judged=8), Answer("s", 1, False, 10, 7, judged=3)]
    >>> score("s", a).score, score("s", a).passed, score("s", a).total, score("s", a, "judge").score
    (0.5, 1, 2, 5.5)
    """
    mine = [a for a in answers if a.strategy == strategy]
    passed = sum(a.accepted for a in mine)
    if metric == "judge":  # a Fraction: the mean of the same scores is the same whatever their order
        mean = float(sum((Fraction(a.judged or 0) for a in mine), Fraction(0)) / len(mine)) if mine else 0.0
        value = round(mean, 6)
    else:
        value = passed / len(mine) if mine else 0.0
    return CandidateScore(
        strategy=strategy,
        score=value,
        passed=passed,
        total=len(mine),
        prompt_tokens=sum(a.prompt_tokens for a in mine),
        completion_tokens=sum(a.completion_tokens for a in mine),
        cost=round(sum(a.cost for a in mine), 10),  # float sums differ in the last bits by order
    )


def _rank(s: CandidateScore, metric: str = "accept") -> tuple:
    if metric == "judge":  # a mean already rounded the same way for every candidate
        return (-s.score, s.prompt_tokens + s.completion_tokens, s.strategy)
    # Fraction, not the float score: 1/3 and 2/6 are a tie, whatever rounding says.
    rate = Fraction(s.passed, s.total) if s.total else Fraction(0)
    return (-rate, s.prompt_tokens + s.completion_tokens, s.strategy)


def choose(scores: Iterable[CandidateScore], metric: str = "accept") -> str:
    """The winner: highest pass rate (or mean judge score), then fewest tokens (prompt +
    completion), then name.

    >>> def s(name, passed, tokens): return CandidateScore(strategy=name, score=0, passed=passed,
    ...     total=4, prompt_tokens=tokens, completion_tokens=0, cost=0)
    >>> choose([s("direct", 2, 10), s("step", 3, 90)])
    'step'
    >>> choose([s("verbose", 3, 90), s("terse", 3, 40)])
    'terse'
    >>> choose([s("b", 3, 40), s("a", 3, 40)])
    'a'
    """
    scores = list(scores)
    if not scores:
        raise ValueError("no candidates to choose from")
    return min(scores, key=lambda s: _rank(s, metric)).strategy


def decide(probe: ProbePlan, answers: Iterable[Answer]) -> Decision:
    """The Decision for `probe.key`: every candidate scored by the probe's metric, in declared
    order, and the winner."""
    answers = list(answers)
    scores = tuple(score(name, answers, probe.metric) for name in probe.candidates)
    return Decision(chosen=choose(scores, probe.metric), key=probe.key, scores=scores)
