"""flowops.drift.chisq: the 2 x K chi-square homogeneity test against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from flowops.drift.chisq import UNSEEN, ChiSquareResult, chi2_test, contingency_table
from flowops.errors import EmptyInputError, InputError

categories = st.sampled_from(["a", "b", "c", "d", "e", "f"])
counts = st.dictionaries(categories, st.integers(0, 500), min_size=1, max_size=6)


def pooled_table(reference: dict[str, int], current: dict[str, int]) -> list[list[int]]:
    """The table by hand: reference categories, then the unseen ones pooled."""
    seen = [name for name, count in reference.items() if count > 0]
    unseen = sum(count for name, count in current.items() if name not in seen)
    columns = [[reference[name], current.get(name, 0)] for name in seen]
    columns += [[0, unseen]] if unseen else []
    return np.array(columns).T.tolist()


@settings(max_examples=150, deadline=None, database=None)
@given(reference=counts, current=counts)
def test_chi2_test_equals_scipys_chi2_contingency(
    reference: dict[str, int], current: dict[str, int]
) -> None:
    if sum(reference.values()) == 0 or sum(current.values()) == 0:
        return  # tested below: an empty side raises
    table = pooled_table(reference, current)

    result = chi2_test(reference, current)

    assert contingency_table(reference, current).tolist() == table
    if len(table[0]) == 1:
        assert result == ChiSquareResult(0.0, 1.0, 0)
        return
    expected = stats.chi2_contingency(table, correction=False)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-10, abs=1e-12)
    assert result.pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)
    assert result.dof == expected.dof


@pytest.mark.parametrize(
    ("reference", "current", "table"),
    [
        ({"a": 5, "b": 3}, {"b": 1, "a": 2}, [[5, 3], [2, 1]]),
        ({"a": 5, "b": 0, "c": 2}, {"a": 1, "c": 4, "x": 2, "y": 1}, [[5, 2, 0], [1, 4, 3]]),
        ({"a": 5, "gone": 0}, {"a": 5, "gone": 0}, [[5], [5]]),
        ({UNSEEN: 1, "a": 1}, {"new": 2}, [[1, 1, 0], [0, 0, 2]]),
    ],
)
def test_contingency_table_pools_unseen_and_drops_absent_categories(
    reference: dict[str, int], current: dict[str, int], table: list[list[int]]
) -> None:
    assert contingency_table(reference, current).tolist() == table


def test_unseen_bucket_is_named() -> None:
    assert UNSEEN == "<unseen>"


def test_hand_computed_example() -> None:
    # expected counts 40/60 in both rows; (10^2/40 + 10^2/60) * 2 = 8.333...
    result = chi2_test({"a": 50, "b": 50}, {"a": 30, "b": 70})

    assert result.statistic == pytest.approx(25 / 3, rel=1e-14)
    assert result.pvalue == pytest.approx(stats.chi2.sf(25 / 3, 1), rel=1e-12)
    assert result.dof == 1


def test_same_proportions_give_statistic_0_and_p_value_1() -> None:
    assert chi2_test({"a": 10, "b": 30}, {"a": 1, "b": 3}) == ChiSquareResult(0.0, 1.0, 1)


@pytest.mark.parametrize(
    ("reference", "current"),
    [({"a": 10}, {"a": 3}), ({"a": 10, "b": 0}, {"a": 3}), ({"a": 4}, {"a": 1, "z": 0})],
)
def test_one_category_left_is_degenerate(
    reference: dict[str, int], current: dict[str, int]
) -> None:
    assert chi2_test(reference, current) == ChiSquareResult(0.0, 1.0, 0)


def test_new_categories_alone_are_drift() -> None:
    result = chi2_test({"a": 500, "b": 500}, {"a": 450, "b": 450, "c": 100})

    assert result.dof == 2
    assert result.pvalue < 1e-20


@pytest.mark.parametrize(
    ("reference", "current", "error", "message"),
    [
        ({}, {"a": 1}, EmptyInputError, "reference: no values"),
        ({"a": 1}, {"a": 0}, EmptyInputError, "current: no values"),
        ({"a": 1}, {"a": -2, "b": 3}, InputError, "current: the count of 'a'"),
        ({"a": True}, {"a": 1}, InputError, "non-negative integer"),
    ],
)
def test_bad_counts_raise(
    reference: dict[str, int], current: dict[str, int], error: type[InputError], message: str
) -> None:
    with pytest.raises(error, match=message):
        chi2_test(reference, current)


def test_results_are_plain_python_numbers() -> None:
    result = chi2_test({"a": np.int64(5), "b": 5}, {"a": 1, "b": 9})

    assert (type(result.statistic), type(result.pvalue), type(result.dof)) == (float, float, int)
