"""Is a challenger's lead on one holdout real? A paired bootstrap of the metric's difference, and McNemar's test.

Paired: each resample draws the same rows for both models (scipy.stats.bootstrap, `paired=True`), so the interval is
of the difference on shared rows, not of two independent scores. Percentile interval, fixed seed. McNemar's exact
test (a binomial test on the rows exactly one of the two models gets right) is the classical paired test of accuracy.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 0
BATCH = 100
"""Resamples drawn at once: bounds the (BATCH, rows) index array of a large holdout."""


@dataclass(frozen=True)
class Interval:
    """The bootstrap interval of (challenger - champion) in the better direction: > 0 means the challenger is better.
    `low`/`high` are None when the metric was undefined on some resample (then nothing is significant)."""

    low: float | None
    high: float | None
    confidence: float
    resamples: int
    seed: int

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.low > 0

    def to_json(self) -> dict:
        return {"method": "paired bootstrap (percentile)", "low": self.low, "high": self.high,
                "confidence": self.confidence, "resamples": self.resamples, "seed": self.seed}


@dataclass(frozen=True)
class McNemar:
    """`only_challenger`: rows the challenger gets right and the champion wrong; `only_champion`: the reverse."""

    only_challenger: int
    only_champion: int
    p_value: float

    def favours_challenger(self, alpha: float) -> bool:
        return self.p_value < alpha and self.only_challenger > self.only_champion

    def to_json(self) -> dict:
        return {"method": "McNemar exact (binomial on discordant rows)", "only_challenger": self.only_challenger,
                "only_champion": self.only_champion, "p_value": self.p_value}


def paired_bootstrap(difference: Callable[[np.ndarray], np.ndarray], rows: int, *, resamples: int = RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = SEED) -> Interval:
    """`difference(row_indices)`: given (k, rows) row indices, the better-direction difference of the metric on each
    of the k resamples (NaN where it is undefined)."""
    if rows < 2:
        return Interval(None, None, confidence, resamples, seed)

    def statistic(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        indices = np.moveaxis(indices, axis, -1)
        return difference(indices.reshape(-1, indices.shape[-1])).reshape(indices.shape[:-1])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about a degenerate or NaN distribution; both are handled below
        result = stats.bootstrap((np.arange(rows),), statistic, paired=True, vectorized=True, batch=BATCH,
                                 n_resamples=resamples, confidence_level=confidence, method="percentile",
                                 rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        return Interval(None, None, confidence, resamples, seed)
    return Interval(low, high, confidence, resamples, seed)


def mcnemar(champion_correct: np.ndarray, challenger_correct: np.ndarray) -> McNemar:
    only_challenger = int(np.sum(challenger_correct & ~champion_correct))
    only_champion = int(np.sum(champion_correct & ~challenger_correct))
    discordant = only_challenger + only_champion
    p_value = 1.0 if discordant == 0 else float(stats.binomtest(only_challenger, discordant, 0.5).pvalue)
    return McNemar(only_challenger, only_champion, p_value)
