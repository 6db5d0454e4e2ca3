"""The champion/challenger arithmetic: McNemar's exact test against a hand-computed value, the paired bootstrap's
interval on differences whose answer is known, and the relative improvement in both directions."""
from __future__ import annotations

import numpy as np
import pytest

from governance.challenge import relative_improvement
from governance.significance import mcnemar, paired_bootstrap


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_rows():
    champion = np.array([True] * 50 + [False] * 10 + [True] * 2 + [False] * 5)
    challenger = np.array([True] * 50 + [True] * 10 + [False] * 2 + [False] * 5)
    test = mcnemar(champion, challenger)
    assert (test.only_challenger, test.only_champion) == (10, 2)
    # two-sided: 2 * P(X <= 2) for X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert test.p_value == pytest.approx(158 / 4096)
    assert test.favours_challenger(0.05) and not test.favours_challenger(0.01)
    assert not mcnemar(challenger, champion).favours_challenger(0.05)  # as significant, the other way round


def test_mcnemar_without_discordant_rows_shows_nothing():
    same = np.array([True, False, True])
    assert mcnemar(same, same).p_value == 1.0


def test_the_bootstrap_of_identical_models_is_zero_and_not_significant():
    interval = paired_bootstrap(lambda rows: np.zeros(len(rows)), 50, resamples=200)
    assert (interval.low, interval.high) == (0.0, 0.0) and not interval.excludes_zero


def test_the_bootstrap_is_paired_and_repeatable():
    gain = np.where(np.arange(200) % 4 == 0, 1.0, 0.0)  # the challenger is right on an extra quarter of the rows

    def difference(rows: np.ndarray) -> np.ndarray:
        return gain[rows].mean(axis=1)

    first = paired_bootstrap(difference, 200, resamples=500, seed=7)
    again = paired_bootstrap(difference, 200, resamples=500, seed=7)
    assert (first.low, first.high) == (again.low, again.high)
    assert 0 < first.low < 0.25 < first.high < 0.4 and first.excludes_zero
    other = paired_bootstrap(difference, 200, resamples=500, seed=8)
    assert (other.low, other.high) != (first.low, first.high)


def test_a_metric_undefined_on_some_resample_leaves_no_interval():
    interval = paired_bootstrap(lambda rows: np.where(rows[:, 0] == 0, np.nan, 1.0), 5, resamples=200)
    assert interval.low is None and not interval.excludes_zero


@pytest.mark.parametrize(("champion", "challenger", "lower_is_better", "expected"), [
    (0.80, 0.88, False, 0.10),  # f1: 0.88 is 1.1 times 0.80
    (0.80, 0.76, False, -0.05),
    (10.0, 8.0, True, 0.25),  # rmse: the champion's error is 1.25 times the challenger's
    (-0.50, -0.25, False, 0.50),  # r2 below zero: the gain against its magnitude
    (0.0, 0.3, False, None),
    (0.2, 0.0, True, None),
])
def test_relative_improvement(champion, challenger, lower_is_better, expected):
    found = relative_improvement(champion, challenger, lower_is_better=lower_is_better)
    assert found == (None if expected is None else pytest.approx(expected))
