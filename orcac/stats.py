"""How sure a figure is: intervals for rates, a paired test for two arms, and a bootstrap.

Every rate orcac prints (eval's accuracy and adherence per arm, the build's yield) is a count
out of n, and n is often small: 10 of 12 is "83%", but anything from about 55% to 95% would
give 10 of 12 as often. So each comes with its 95% Wilson score interval (`wilson`), which,
unlike the textbook p +- 1.96 sqrt(p(1-p)/n), stays inside [0, 1] and does not shrink to
nothing at 0 of 12 or 12 of 12.

Base and trained answer the same held-out rows, so whether they differ beyond chance is a
paired question: only the rows where their outcomes differ carry information, and under "no
difference" each such row is a fair coin (`mcnemar`, the exact test). The gap closed, a ratio
of differences, has no closed form: `bootstrap_gap` resamples rows with a fixed seed, so the
same answers always give the same interval. `undecided` says in one line when n is too
small for a difference to mean anything.

Standard library only (math, random): `check` and `fmt` import nothing heavy, and these
numbers need nothing more.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

Z95 = 1.959964  # the standard normal's 97.5th percentile: a two-sided 95% interval
ALPHA = 0.05
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the same rows give the same interval on every run and machine


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for `hits` out of `n` (None when n is 0).

    >>> [round(b, 4) for b in wilson(10, 12)]
    [0.552, 0.953]
    >>> [round(b, 4) for b in wilson(0, 12)]  # never below 0, never the empty [0, 0]
    [0.0, 0.2425]
    >>> wilson(0, 0) is None
    True
    """
    if n <= 0:
        return None
    p = hits / n
    z2 = z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at 0 of n and n of n the bound is the edge itself, not a rounding error either side of it
    return (0.0 if hits == 0 else center - half), (1.0 if hits == n else center + half)


def rate_text(hits: int, n: int, *, show_n: bool = True) -> str:
    """A rate as orcac prints it: percent, its 95% interval in points, and n (`show_n`: where
    no column beside it says n already).

    >>> rate_text(10, 12)
    '83% [55-95] n=12'
    >>> rate_text(12, 12, show_n=False)
    '100% [76-100]'
    >>> rate_text(0, 0)
    'n/a'
    """
    if n <= 0:
        return "n/a"
    low, high = wilson(hits, n)
    return f"{100 * hits / n:.0f}% [{100 * low:.0f}-{100 * high:.0f}]" + (f" n={n}" if show_n else "")


def mcnemar(worse: int, better: int) -> float:
    """Exact two-sided McNemar p for paired outcomes: `worse` rows one arm got right and the
    other wrong, `better` the other way round. Under "no difference" each such row is a fair
    coin, so p is the binomial test of min(worse, better) out of worse + better at 1/2.

    >>> round(mcnemar(1, 7), 4)
    0.0703
    >>> mcnemar(0, 6)
    0.03125
    >>> mcnemar(0, 0)  # no row differs: no evidence either way
    1.0
    """
    n = worse + better
    tail = sum(math.comb(n, k) for k in range(min(worse, better) + 1)) / 2**n
    return min(1.0, 2 * tail)


def smallest_telling_difference(alpha: float = ALPHA) -> int:
    """The fewest discordant rows, all one way, that `mcnemar` calls below `alpha`: with fewer
    than this many more rows won than lost, no n makes the difference tell.

    >>> smallest_telling_difference()  # 2 / 2**6 = 0.031; 2 / 2**5 = 0.0625
    6
    """
    d = 1
    while mcnemar(0, d) >= alpha:
        d += 1
    return d


def undecided(n: int, worse: int, better: int, alpha: float = ALPHA) -> str | None:
    """One line saying that n paired rows cannot tell two arms apart, or None when they do
    (exact McNemar p below `alpha`).

    The floor is exact: a difference of d rows won over lost gives p >= mcnemar(0, d), so a
    difference under `smallest_telling_difference()` rows, in points of n, is never beyond
    chance, whatever the rows.

    >>> undecided(12, 1, 2)
    'n=12: a difference under ~50 points cannot be told from chance'
    >>> undecided(60, 3, 10)
    'n=60: 12 points (10 rows better, 3 worse) could be chance (p=0.092)'
    >>> undecided(4, 0, 4)
    'n=4: no difference can be told from chance (even all 4 rows better gives p=0.125)'
    >>> undecided(12, 0, 7) is None
    True
    """
    if n <= 0:
        return None
    p = mcnemar(worse, better)
    if p < alpha:
        return None
    floor = smallest_telling_difference(alpha)
    if floor > n:
        return f"n={n}: no difference can be told from chance (even all {n} rows better gives p={mcnemar(0, n):.3g})"
    if abs(better - worse) < floor:
        return f"n={n}: a difference under ~{100 * floor / n:.0f} points cannot be told from chance"
    return (
        f"n={n}: {100 * abs(better - worse) / n:.0f} points ({max(better, worse)} rows "
        f"{'better' if better > worse else 'worse'}, {min(better, worse)} {'worse' if better > worse else 'better'}) "
        f"could be chance (p={p:.2g})"
    )


def gap_closed(base: float | None, prompted: float | None, trained: float | None) -> float | None:
    """The share of the prompt's effect the trained student shows without the prompt:
    (trained - base) / (prompted - base); None where the prompt changed nothing, or a rate
    is missing.

    >>> round(gap_closed(0.0, 0.8, 0.6), 6)  # a float division: 0.7499999999999999 unrounded
    0.75
    >>> gap_closed(0.2, 0.2, 0.5) is None  # the prompt changed nothing: no gap to close
    True
    """
    if base is None or prompted is None or trained is None or abs(prompted - base) < 1e-9:
        return None
    return (trained - base) / (prompted - base)


def bootstrap_gap(
    rows: Sequence[tuple[bool, bool, bool]],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """A percentile bootstrap interval for the gap closed over rows of (base, prompted,
    trained) outcomes on the same example: resample the rows with replacement, `samples`
    times, from a seeded generator (the same rows give the same interval every run).
    Resamples where the prompt changed nothing have no gap and are left out; None when most
    have none (or there are no rows).

    >>> rows = [(False, True, True)] * 8 + [(False, True, False)] * 2 + [(False, False, False)] * 2
    >>> low, high = bootstrap_gap(rows)
    >>> round(low, 2), round(high, 2)
    (0.5, 1.0)
    >>> bootstrap_gap(rows) == bootstrap_gap(rows)  # seeded: reproducible
    True
    >>> bootstrap_gap([(True, True, True)] * 5) is None  # the prompt never changes anything
    True
    """
    if not rows:
        return None
    n = len(rows)
    # Resample counts of the 8 outcome patterns, not the rows themselves: the same draws, less work.
    patterns = sorted(set(rows))
    weights = [sum(r == p for r in rows) for p in patterns]
    rng = random.Random(seed)
    gaps = []
    for _ in range(samples):
        drawn = Counter(rng.choices(range(len(patterns)), weights=weights, k=n))
        b, p, t = (sum(count for i, count in drawn.items() if patterns[i][arm]) for arm in range(3))
        gap = gap_closed(b / n, p / n, t / n)
        if gap is not None:
            gaps.append(gap)
    if len(gaps) * 2 < samples:
        return None
    gaps.sort()
    tail = (1 - level) / 2
    return _quantile(gaps, tail), _quantile(gaps, 1 - tail)


def _quantile(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values, linear between neighbours (numpy's default)."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)
