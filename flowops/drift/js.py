"""The Jensen-Shannon distance between the reference's and the current data's shares.

Over the PSI bins of a numeric feature (the reference's deciles by default) or the
categories of a categorical one, with ``m = (p + q) / 2``::

    JS = sqrt((KL(p || m) + KL(q || m)) / 2)     (logarithms base 2)

It lies in [0, 1], is symmetric, and needs no smoothing: an empty bin on one side is
finite. For small shifts the divergence ``JS^2 ln 2`` is about ``PSI / 8``, so JS 0.1
(the floor, Evidently's default threshold) is about PSI 0.055 and 0.2 (critical) about
PSI 0.22; the same relation gives its p-value as PSI's: ``8 JS^2 ln 2 / (1/M + 1/N)``
is about chi-square with ``B - 1`` degrees of freedom under no drift.

>>> js_distance(np.array([50, 50]), np.array([50, 50]))
0.0
>>> js_distance(np.array([10, 0]), np.array([0, 10]))
1.0
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from flowops.drift.chisq import contingency_table
from flowops.drift.window_test import Baseline, Current, FeatureKind, Measurement

__all__ = ["JS_TEST", "JSTest", "js_distance", "js_test"]


def js_distance(reference: NDArray[np.int64], current: NDArray[np.int64]) -> float:
    """The Jensen-Shannon distance (base 2) of two count vectors over the same bins."""
    p = reference / reference.sum()
    q = current / current.sum()
    m = (p + q) / 2
    divergence = (_kl(p, m) + _kl(q, m)) / 2
    return math.sqrt(max(divergence, 0.0))


def js_test(reference: NDArray[np.int64], current: NDArray[np.int64]) -> Measurement:
    """JS distance (statistic and effect) and its chi-square p-value.

    >>> js_test(np.array([500, 500]), np.array([500, 500])).pvalue
    1.0
    """
    from scipy import stats  # scipy only where a p-value is computed

    distance = js_distance(reference, current)
    if reference.size < 2:
        return Measurement(distance, 1.0, distance)
    scaled = 8 * distance**2 * math.log(2) / (1 / reference.sum() + 1 / current.sum())
    return Measurement(distance, float(stats.chi2.sf(scaled, reference.size - 1)), distance)


def _kl(p: NDArray[np.float64], m: NDArray[np.float64]) -> float:
    """KL(p || m) in bits over the bins where p > 0 (m > 0 there)."""
    held = p > 0
    return float(np.sum(p[held] * np.log2(p[held] / m[held])))


class JSTest:
    """The Jensen-Shannon distance as a registered window test (see the module).

    Exact from counts: the PSI bins are unions of grid cells.
    """

    name = "js"
    kinds: frozenset[FeatureKind] = frozenset({"numeric", "categorical"})
    effect_name = "JS distance"
    min_effect = 0.1
    critical_effect = 0.2
    exact_from_counts = True

    def run(self, baseline: Baseline, current: Current, *, fast: bool) -> Measurement:
        """JS over the PSI bins (numeric) or the categories (categorical)."""
        if baseline.kind == "categorical":
            table = contingency_table(baseline.frequencies, current.counts)
            return js_test(table[0], table[1])
        return js_test(baseline.reference.counts, baseline.psi_counts(current))


JS_TEST = JSTest()
"""The registered Jensen-Shannon test."""
