"""Two arms of an A/B split compared on one metric: the difference, its interval, a p-value.

The pure core of an A/B verdict: each arm's metrics come from windows of its variant
(:mod:`flowops.quality.windows`), realised or estimated. The test is Wald's on the
difference of two independent estimates, each arm's standard error read from its own
confidence interval (half its width over the normal quantile), so one test serves every
metric, whatever interval the metric has: Wilson's for accuracy, Hanley-McNeil's for ROC
AUC, the normal one for mean losses. For a proportion this is the unpooled two-proportion
z-test; a skewed interval (Wilson's near 0 or 1) makes it approximate, and windows of a
few hundred rows are where the approximation holds.

An arm wins when the difference favours it beyond ``min_difference`` (in the metric's
units: a significant but tiny difference does not move traffic) and the p-value is
below ``alpha``; otherwise there is no winner yet.

>>> from flowops.quality.metrics import wilson
>>> verdict = compare_arms("accuracy", wilson(900, 1000), wilson(860, 1000))
>>> verdict.winner, round(verdict.pvalue, 4)
('a', 0.0059)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy.stats import norm

from flowops.quality import drop as _drop
from flowops.quality.metrics import Interval

__all__ = ["ArmComparison", "compare_arms"]


@dataclass(frozen=True)
class ArmComparison:
    """Arm ``b`` against arm ``a`` on one metric."""

    metric: str
    a: Interval
    b: Interval
    difference: float
    """``b - a`` in the metric's units."""
    low: float
    high: float
    pvalue: float
    """Two-sided, of no difference."""
    winner: Literal["a", "b"] | None


def compare_arms(
    metric: str,
    a: Interval,
    b: Interval,
    *,
    confidence: float = 0.95,
    alpha: float = 0.05,
    min_difference: float = 0.0,
) -> ArmComparison:
    """Compare two arms' figures of ``metric`` (each with its interval at ``confidence``)."""
    if metric not in _drop.HIGHER_IS_BETTER | _drop.LOWER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}: is higher or lower better?")
    z = float(norm.ppf(0.5 + confidence / 2))
    difference = b.value - a.value
    spread = math.hypot(_error(a, z), _error(b, z))
    if not math.isfinite(difference) or not math.isfinite(spread):
        return ArmComparison(metric, a, b, difference, math.nan, math.nan, math.nan, None)
    if spread == 0:
        pvalue = 1.0 if difference == 0 else 0.0
    else:
        pvalue = float(2 * norm.sf(abs(difference) / spread))
    better = difference if metric in _drop.HIGHER_IS_BETTER else -difference
    winner: Literal["a", "b"] | None = None
    if pvalue < alpha and abs(better) > min_difference:
        winner = "b" if better > 0 else "a"
    return ArmComparison(
        metric, a, b, difference, difference - z * spread, difference + z * spread, pvalue, winner
    )


def _error(interval: Interval, z: float) -> float:
    """The standard error an interval at quantile ``z`` implies (half its width over z)."""
    return (interval.high - interval.low) / (2 * z)
