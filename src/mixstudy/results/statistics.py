"""Statistics over seeds: a mean's t-interval, and a configuration's difference to the baseline.

The difference uses a Welch t-interval and Welch's t-test (unequal variances, unpaired): Welch
rather than a paired test because it stays valid when a seed is missing on one side.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def welch_difference(cell, baseline, confidence: float = CONFIDENCE) -> dict:
    """Mean difference cell - baseline, its Welch t-interval and Welch's t-test p-value.

    The interval and p-value need two seeds on each side and some spread; otherwise they are NaN.
    """
    cell, baseline = np.asarray(cell, dtype=float), np.asarray(baseline, dtype=float)
    result = {"diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan}
    if len(cell) and len(baseline):
        result["diff"] = float(cell.mean() - baseline.mean())
    if len(cell) < 2 or len(baseline) < 2 or (cell.var() == 0 and baseline.var() == 0):
        return result
    test = stats.ttest_ind(cell, baseline, equal_var=False)
    interval = test.confidence_interval(confidence)
    result.update(ci_low=float(interval.low), ci_high=float(interval.high), p=float(test.pvalue))
    return result


def mean_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and its t-interval over seeds (NaN bounds below two seeds)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half
