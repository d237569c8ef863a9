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

from flowops.errors import EmptyInputError, InputError

__all__ = ["UNSEEN", "ChiSquareResult", "chi2_test", "contingency_table"]

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
