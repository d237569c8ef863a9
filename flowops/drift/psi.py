"""The population stability index (PSI) and its p-value.

PSI compares the share of values per bin in the reference (``p_i``) and the current
data (``q_i``)::

    PSI = sum_i (q_i - p_i) * ln(q_i / p_i)

It is the symmetrised Kullback-Leibler divergence: 0 for identical shares, growing with
the shift. Numeric features use quantile bins fitted on the reference (see
:class:`~flowops.drift.reference.Reference`); categorical features use one bin per
reference category plus :data:`~flowops.drift.chisq.UNSEEN` for new categories.

**Empty bins.** A bin empty on one side would make ``ln(q_i / p_i)`` infinite. Each bin
count is therefore smoothed by half a value on both sides (Jeffreys' prior):
``p_i = (r_i + 0.5) / (M + B / 2)`` and ``q_i = (c_i + 0.5) / (N + B / 2)``, with ``r_i``,
``c_i`` the counts, ``M``, ``N`` the sample sizes and ``B`` the number of bins. PSI stays
finite and changes smoothly when a bin empties; the smoothing pulls PSI slightly towards
0, by a relative amount of order ``B / M + B / N``, negligible once the bins hold tens of
values. (A tiny floor such as ``sys.float_info.min`` instead turns one empty bin into a
PSI of hundreds, and equal-width bins over both samples make PSI depend on outliers.)

**p-value.** Under no drift, ``PSI ≈ (1/M + 1/N) · χ²(B - 1)`` (Yurdakul 2018), so the
p-value is ``chi2.sf(PSI / (1/M + 1/N), B - 1)``. With 10 bins and 10,000 values on each
side the 99th percentile of PSI under no drift is ``2e-4 * 21.67 ≈ 0.004``: rules of
thumb such as "PSI > 0.1 is drift" ignore the sample size, the p-value does not.

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> reference = Reference(rng.normal(size=10_000))
>>> psi_test(reference, rng.normal(size=10_000)).pvalue > 0.05
True
>>> round(psi(reference, rng.normal(0.5, size=10_000)), 2)
0.25
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from flowops.drift.chisq import contingency_table
from flowops.drift.reference import Reference, as_sample
from flowops.drift.window_test import Baseline, Current, FeatureKind, Measurement

__all__ = ["PSI_TEST", "SMOOTHING", "PSIResult", "PSITest", "categorical_psi", "psi", "psi_test"]

SMOOTHING = 0.5
"""Count added to every bin on both sides before taking shares."""


class PSIResult(NamedTuple):
    """PSI, its p-value under no drift, and the number of bins actually used."""

    statistic: float
    pvalue: float
    bins: int


def psi(reference: ArrayLike | Reference, current: ArrayLike, bins: int = 10) -> float:
    """PSI of ``current`` against ``reference`` over quantile bins of the reference.

    ``bins`` is the number of quantile bins to fit on a raw reference sample; a prepared
    :class:`Reference` brings its own bins and ``bins`` is ignored.

    >>> psi([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], bins=2)
    0.0
    """
    return psi_test(reference, current, bins).statistic


def psi_test(reference: ArrayLike | Reference, current: ArrayLike, bins: int = 10) -> PSIResult:
    """PSI of ``current`` against ``reference`` with its p-value and bin count.

    >>> result = psi_test([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], bins=2)
    >>> round(result.statistic, 3), round(result.pvalue, 3), result.bins
    (0.879, 0.185, 2)
    """
    prepared = reference if isinstance(reference, Reference) else Reference(reference, bins=bins)
    counts = prepared.bin_counts(as_sample(current, "current"))
    return _psi_test(prepared.counts, counts)


def categorical_psi(reference: Mapping[str, int], current: Mapping[str, int]) -> PSIResult:
    """PSI over categories: one bin per reference category, new ones pooled in one bin.

    Current categories absent from the reference share the bin
    :data:`~flowops.drift.chisq.UNSEEN`; categories with no values on either side are
    left out, so ``bins`` counts the categories actually compared.

    >>> categorical_psi({"a": 50, "b": 50}, {"a": 50, "b": 50})
    PSIResult(statistic=0.0, pvalue=1.0, bins=2)
    >>> categorical_psi({"a": 50, "b": 50}, {"a": 40, "b": 40, "c": 20}).bins
    3
    """
    table = contingency_table(reference, current)
    return _psi_test(table[0], table[1])


def _psi_test(reference: NDArray[np.int64], current: NDArray[np.int64]) -> PSIResult:
    """PSI and its chi-square p-value from the bin counts of both samples."""
    from scipy import stats  # scipy only where a p-value is computed

    bins = reference.size
    M, N = int(reference.sum()), int(current.sum())
    if bins == 1:
        return PSIResult(0.0, 1.0, 1)
    statistic = _smoothed_psi(reference, current)
    pvalue = float(stats.chi2.sf(statistic / (1.0 / M + 1.0 / N), bins - 1))
    return PSIResult(statistic, pvalue, bins)


def _smoothed_psi(reference: NDArray[np.int64], current: NDArray[np.int64]) -> float:
    """``sum (q - p) ln(q / p)`` over shares smoothed by :data:`SMOOTHING` per bin."""
    p = (reference + SMOOTHING) / (reference.sum() + SMOOTHING * reference.size)
    q = (current + SMOOTHING) / (current.sum() + SMOOTHING * current.size)
    return float(np.sum((q - p) * np.log(q / p)))


class PSITest:
    """PSI as a registered window test: its effect size is PSI itself.

    The conventional reading of PSI (0.1 a moderate shift worth a look, 0.25 a large
    one) gives the floor and the critical level. From counts on the grid it is exact:
    the PSI edges are grid edges.
    """

    name = "psi"
    kinds: frozenset[FeatureKind] = frozenset({"numeric", "categorical"})
    effect_name = "PSI"
    min_effect = 0.1
    critical_effect = 0.25
    exact_from_counts = True

    def run(self, baseline: Baseline, current: Current, *, fast: bool) -> Measurement:
        """PSI and its chi-square p-value; the effect is the statistic."""
        if baseline.kind == "categorical":
            result = categorical_psi(baseline.frequencies, current.counts)
        elif current.values is not None:
            result = psi_test(baseline.reference, current.values)
        else:
            result = _psi_test(baseline.reference.counts, baseline.psi_counts(current))
        return Measurement(result.statistic, result.pvalue, result.statistic)


PSI_TEST = PSITest()
"""The registered PSI test."""
