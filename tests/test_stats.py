"""orcac/stats.py against values worked out by hand (and, for the bootstrap, its own seed)."""

from __future__ import annotations

import math

import pytest

from orcac import stats


@pytest.mark.parametrize(
    "hits, n, low, high",
    [
        # p = 10/12, z^2/n = 0.32013: centre (0.83333 + 0.16006) / 1.32013 = 0.75250,
        # half 1.959964 * sqrt(0.011574 + 0.006669) / 1.32013 = 0.20054
        (10, 12, 0.5520, 0.9530),
        (0, 12, 0.0, 0.2425),  # centre = half = (z^2 / 24) / (1 + z^2 / 12) = 0.12125
        (12, 12, 0.7575, 1.0),  # the mirror image of 0 of 12
        (1, 2, 0.0945, 0.9055),
        (50, 100, 0.4038, 0.5962),
    ],
)
def test_wilson_bounds_by_hand(hits, n, low, high):
    got = stats.wilson(hits, n)
    assert got == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


def test_wilson_of_nothing_is_none():
    assert stats.wilson(0, 0) is None and stats.rate_text(0, 0) == "n/a"


def test_rate_text_is_percent_interval_and_n():
    assert stats.rate_text(10, 12) == "83% [55-95] n=12"
    assert stats.rate_text(10, 12, show_n=False) == "83% [55-95]"


@pytest.mark.parametrize(
    "worse, better, p",
    [
        (1, 7, 18 / 256),  # 2 * (C(8,0) + C(8,1)) / 2^8 = 0.0703
        (0, 6, 2 / 64),  # 0.03125
        (7, 1, 18 / 256),  # symmetric: which way the rows went does not matter
        (0, 5, 2 / 32),  # 0.0625: five rows all one way is not enough
        (3, 3, 1.0),  # 2 * 42/64 > 1: capped
        (0, 0, 1.0),  # no row differs
        (2, 10, 2 * (1 + 12 + 66) / 4096),  # 0.0386
    ],
)
def test_exact_mcnemar_by_hand(worse, better, p):
    assert stats.mcnemar(worse, better) == pytest.approx(p)


def test_the_smallest_difference_mcnemar_can_tell():
    assert stats.smallest_telling_difference() == 6  # 2 / 2^6 < 0.05 <= 2 / 2^5
    # exact, not a rule of thumb: no table with 5 more rows one way than the other gets under 0.05
    assert min(stats.mcnemar(k, k + 5) for k in range(50)) >= 0.05


@pytest.mark.parametrize(
    "n, worse, better, line",
    [
        (12, 1, 3, "n=12: a difference under ~50 points cannot be told from chance"),
        (60, 2, 5, "n=60: a difference under ~10 points cannot be told from chance"),
        (12, 1, 7, "n=12: 50 points (7 rows better, 1 worse) could be chance (p=0.07)"),
        (20, 7, 1, "n=20: 30 points (7 rows worse, 1 better) could be chance (p=0.07)"),
        (5, 0, 5, "n=5: no difference can be told from chance (even all 5 rows better gives p=0.0625)"),
        (12, 0, 6, None),  # p = 0.031: told apart
    ],
)
def test_undecided_says_in_one_line_what_n_cannot_tell(n, worse, better, line):
    assert stats.undecided(n, worse, better) == line


def test_the_bootstrap_is_seeded_and_brackets_the_gap():
    rows = [(False, True, True)] * 40 + [(False, True, False)] * 10 + [(False, False, False)] * 10
    first, again = stats.bootstrap_gap(rows), stats.bootstrap_gap(rows)
    assert first == again  # the same rows, the same interval, every run
    low, high = first
    gap = stats.gap_closed(0.0, 50 / 60, 40 / 60)
    assert gap == pytest.approx(0.8) and low < gap < high <= 1.0
    # a binomial share of 40 of 50: the bootstrap's interval is near the normal one, 0.8 +- 0.11
    assert low == pytest.approx(0.8 - 1.96 * math.sqrt(0.8 * 0.2 / 50), abs=0.03)
    assert stats.bootstrap_gap(rows, seed=1) != first  # the seed is what fixes it


def test_the_bootstrap_has_no_interval_where_the_prompt_changes_nothing():
    assert stats.bootstrap_gap([]) is None
    assert stats.bootstrap_gap([(True, True, False)] * 3 + [(False, False, True)] * 3) is None
