"""Scoring and choosing among a best_of task's candidates: pure functions of the answers.

The winner has the highest pass rate (or mean judge score); among candidates that tie on
it, fewer tokens wins, then name order. A decision records which of those two rules broke
a tie (`tie_break`), and `noise` says where a probe's answers are too few to tell the
winner from another candidate: a pass rate over `probe` answers is a binomial estimate, and
two whose 95% Wilson score intervals overlap are within each other's noise.
"""

from __future__ import annotations

import math
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


TIE_RULES = ("fewer tokens", "name order")  # in the order they break a tie (`_rank`)


def tie_break(scores: Iterable[CandidateScore], metric: str = "accept") -> str | None:
    """The rule that chose the winner among the candidates with its score (one of TIE_RULES),
    or None when no other candidate has it.

    >>> def s(name, passed, tokens): return CandidateScore(strategy=name, score=0, passed=passed,
    ...     total=4, prompt_tokens=tokens, completion_tokens=0, cost=0)
    >>> tie_break([s("direct", 2, 10), s("step", 3, 90)]), tie_break([s("verbose", 3, 90), s("terse", 3, 40)])
    (None, 'fewer tokens')
    >>> tie_break([s("b", 3, 40), s("a", 3, 40), s("c", 3, 10)])
    'fewer tokens'
    >>> tie_break([s("b", 3, 40), s("a", 3, 40)])
    'name order'
    """
    ranked = sorted(scores, key=lambda s: _rank(s, metric))
    winner, rest = ranked[0], ranked[1:]
    tied = [s for s in rest if _rank(s, metric)[0] == _rank(winner, metric)[0]]
    if not tied:
        return None
    same_tokens = any(_rank(s, metric)[1] == _rank(winner, metric)[1] for s in tied)
    return TIE_RULES[1] if same_tokens else TIE_RULES[0]


def tie_message(task: str, decision: Decision, metric: str = "accept") -> str | None:
    """One line for the build's output naming a tie and the rule that broke it; None without one."""
    if decision.tie_break is None:
        return None
    winner = next(s for s in decision.scores if s.strategy == decision.chosen)
    tied = [
        s for s in decision.scores if s.strategy != winner.strategy and _rank(s, metric)[0] == _rank(winner, metric)[0]
    ]
    at = f"a mean judge score of {winner.score:g}" if metric == "judge" else f"{winner.passed}/{winner.total}"
    tokens = ", ".join(f"{s.strategy} {s.prompt_tokens + s.completion_tokens:,}" for s in [winner, *tied])
    return (
        f"task {task}: {' and '.join(s.strategy for s in [winner, *tied])} tie at {at}; "
        f"{decision.tie_break} chose {winner.strategy} (tokens: {tokens})"
    )


Z95 = 1.959964  # the standard normal's 97.5th percentile: two-sided 95%
MOST_ROWS = 100_000  # a probe size past which `noise` stops looking for one that separates two rates


def wilson(passed: int, total: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a pass rate `passed / total`.

    >>> [round(x, 3) for x in wilson(2, 4)], [round(x, 3) for x in wilson(4, 4)]
    ([0.15, 0.85], [0.51, 1.0])
    """
    if total <= 0:
        return 0.0, 1.0
    rate, z2 = passed / total, Z95 * Z95
    centre = (rate + z2 / (2 * total)) / (1 + z2 / total)
    half = Z95 * math.sqrt(rate * (1 - rate) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    (a_low, a_high), (b_low, b_high) = wilson(*a), wilson(*b)
    return a_low <= b_high and b_low <= a_high


def rows_to_separate(first: float, second: float) -> int | None:
    """The probe size at which two pass rates, if they held, would have 95% Wilson intervals
    that no longer overlap; None for equal rates (no size separates them) or past MOST_ROWS.

    >>> rows_to_separate(0.75, 0.5), rows_to_separate(1.0, 0.5), rows_to_separate(0.5, 0.5)
    (57, 12, None)
    """
    if first == second:
        return None

    def apart(n: int) -> bool:
        return not _overlap((round(first * n), n), (round(second * n), n))

    low, high = 1, 1
    while not apart(high):  # apart(n) holds from some n on: the intervals narrow as n grows
        if high > MOST_ROWS:
            return None
        low, high = high, high * 2
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if not apart(middle) else (low, middle)
    return high


def noise(decision: Decision, metric: str = "accept") -> list[str]:
    """Where the probe cannot tell its winner from another candidate: one line per candidate
    with a lower pass rate whose 95% Wilson interval overlaps the winner's, with the probe
    size that would separate the two rates if they held. A tie is named by `tie_message`
    instead; a mean judge score (`by = judge`) is no binomial rate and gets none.

    >>> from orcac.specs.plan import Decision
    >>> def s(name, passed): return CandidateScore(strategy=name, score=passed / 4, passed=passed,
    ...     total=4, prompt_tokens=0, completion_tokens=0, cost=0)
    >>> noise(Decision(chosen="direct_answer", key="k", scores=(s("direct_answer", 3), s("step_by_step", 2))))
    ['direct_answer 3/4 vs step_by_step 2/4: within the noise of 4 probe answers each (their 95% Wilson intervals overlap); raise probe to ~57 to tell them apart']
    """
    if metric == "judge":
        return []
    winner = next(s for s in decision.scores if s.strategy == decision.chosen)
    lines = []
    for other in decision.scores:
        if other is winner or other.passed * winner.total >= winner.passed * other.total:
            continue  # the winner itself, and a tie (`tie_message`)
        if not _overlap((winner.passed, winner.total), (other.passed, other.total)):
            continue
        each = (
            f"{winner.total} probe answers each"
            if winner.total == other.total
            else f"{winner.total} and {other.total} probe answers"
        )
        needed = rows_to_separate(winner.passed / winner.total, other.passed / other.total)
        advice = (
            f"raise probe to ~{needed:,} to tell them apart"
            if needed
            else f"not even {MOST_ROWS:,} probe answers would tell them apart"
        )
        lines.append(
            f"{winner.strategy} {winner.passed}/{winner.total} vs {other.strategy} {other.passed}/{other.total}: "
            f"within the noise of {each} (their 95% Wilson intervals overlap); {advice}"
        )
    return lines


def decide(probe: ProbePlan, answers: Iterable[Answer]) -> Decision:
    """The Decision for `probe.key`: every candidate scored by the probe's metric, in declared
    order, the winner, and the rule that broke a tie for first place if there was one."""
    answers = list(answers)
    scores = tuple(score(name, answers, probe.metric) for name in probe.candidates)
    return Decision(
        chosen=choose(scores, probe.metric), key=probe.key, scores=scores, tie_break=tie_break(scores, probe.metric)
    )
