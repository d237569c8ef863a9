"""The chi-square test of homogeneity for a categorical feature.

The reference and current category counts form a 2 x K contingency table. Under the
hypothesis that both samples come from one distribution the expected count of a cell is
``row total * column total / grand total``, and Pearson's statistic
``sum (observed - expected)^2 / expected`` is approximately chi-square distributed with
``K - 1`` degrees of freedom (no continuity correction, as
``scipy.stats.chi2_contingency(table, correction=False)``).

The K columns are the categories seen in the reference and one more, :data:`UNSEEN`,
pooling the current categories the reference never saw. A category with no values on
either side is dropped, as is :data:`UNSEEN` when the current data has no new category.

>>> chi2_test({"a": 50, "b": 50}, {"a": 30, "b": 70})
ChiSquareResult(statistic=8.333333333333334, pvalue=0.003892417122778637, dof=1)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from flowops.drift.window_test import Baseline, Current, FeatureKind, Measurement
from flowops.errors import EmptyInputError, InputError

__all__ = [
    "CHI2_TEST",
    "UNSEEN",
    "ChiSquareResult",
    "ChiSquareTest",
    "chi2_test",
    "cohens_w",
    "contingency_table",
]

UNSEEN = "<unseen>"
"""The name of the bucket pooling current categories the reference never saw.

The bucket is kept apart from the reference's categories even if one of them is spelt
the same way."""


class ChiSquareResult(NamedTuple):
    """Pearson's chi-square statistic, its p-value and its degrees of freedom."""

    statistic: float
    pvalue: float
    dof: int


def chi2_test(reference: Mapping[str, int], current: Mapping[str, int]) -> ChiSquareResult:
    """Chi-square two-sample homogeneity test of category counts.

    With a single category left there is nothing to compare: statistic 0, p-value 1,
    0 degrees of freedom.

    >>> chi2_test({"a": 10}, {"a": 3})
    ChiSquareResult(statistic=0.0, pvalue=1.0, dof=0)
    >>> chi2_test({"a": 10, "b": 10}, {"a": 10, "b": 10}).pvalue
    1.0
    """
    from scipy import stats  # scipy only where a p-value is computed

    table = contingency_table(reference, current).astype(np.float64)
    dof = table.shape[1] - 1
    if dof == 0:
        return ChiSquareResult(0.0, 1.0, 0)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return ChiSquareResult(statistic, float(stats.chi2.sf(statistic, dof)), dof)


def contingency_table(
    reference: Mapping[str, int], current: Mapping[str, int]
) -> NDArray[np.int64]:
    """The 2 x K table of counts: reference row, current row, one column per category.

    Columns follow the reference's categories in their order, then :data:`UNSEEN` when
    the current data holds categories the reference never saw (or only saw zero times).
    Raises :class:`~flowops.errors.EmptyInputError` when a side has no values.

    >>> contingency_table({"a": 5, "b": 0, "c": 2}, {"a": 1, "c": 4, "x": 2, "y": 1}).tolist()
    [[5, 2, 0], [1, 4, 3]]
    """
    ref = _counts(reference, "reference")
    cur = _counts(current, "current")
    columns = [[count, cur.get(name, 0)] for name, count in ref.items() if count > 0]
    unseen = sum(count for name, count in cur.items() if not ref.get(name))
    if unseen:
        columns.append([0, unseen])
    return np.array(columns, dtype=np.int64).T


def _counts(counts: Mapping[str, int], what: str) -> dict[str, int]:
    """``counts`` checked to be non-negative integers with a positive total."""
    checked: dict[str, int] = {}
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
            raise InputError(f"{what}: the count of {name!r} must be a non-negative integer")
        checked[str(name)] = int(count)
    if sum(checked.values()) == 0:
        raise EmptyInputError(f"{what}: no values")
    return checked


def cohens_w(reference: Mapping[str, int], current: Mapping[str, int]) -> float:
    """Cohen's w of the current category shares ``q`` against the reference's ``p``.

    ``sqrt(sum (q - p)^2 / m)`` with ``m = (p + q) / 2``: for small shifts this is
    Cohen's ``sqrt(sum (q - p)^2 / p)`` (and ``w^2`` about PSI); against the average of
    both shares a category new in the current data counts as much as one that
    vanished, and w does not depend on the sizes of the two samples, which Cramer's V of
    a 2 x K table does (a reference 100 times the window makes V ten times smaller for
    the same shift). It lies in [0, 2].

    >>> round(cohens_w({"a": 50, "b": 50}, {"a": 65, "b": 35}), 3)
    0.303
    >>> cohens_w({"a": 5}, {"b": 5})
    2.0
    """
    table = contingency_table(reference, current).astype(np.float64)
    p, q = table[0] / table[0].sum(), table[1] / table[1].sum()
    return float(np.sqrt(np.sum((q - p) ** 2 / ((p + q) / 2))))


class ChiSquareTest:
    """The chi-square test as a registered window test: its effect size is Cohen's w.

    Floor 0.3 and critical 0.5 are Cohen's "medium" and "large" w; since ``w^2`` is about
    PSI for small shifts they sit where PSI's conventional 0.1 and 0.25 do. Categorical
    features always come as counts, so the test is exact from counts.
    """

    name = "chi2"
    kinds: frozenset[FeatureKind] = frozenset({"categorical"})
    effect_name = "Cohen's w"
    min_effect = 0.3
    critical_effect = 0.5
    exact_from_counts = True

    def run(self, baseline: Baseline, current: Current, *, fast: bool) -> Measurement:
        """Pearson's chi-square with its p-value; the effect is Cohen's w."""
        result = chi2_test(baseline.frequencies, current.counts)
        return Measurement(
            result.statistic, result.pvalue, cohens_w(baseline.frequencies, current.counts)
        )


CHI2_TEST = ChiSquareTest()
"""The registered chi-square test."""
