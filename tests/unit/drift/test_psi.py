"""flowops.drift.psi: PSI over quantile bins and categories, and its p-value."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from flowops.drift.chisq import UNSEEN
from flowops.drift.psi import SMOOTHING, PSIResult, categorical_psi, psi, psi_test
from flowops.drift.reference import Reference
from flowops.errors import EmptyInputError, InputError


def expected_psi(reference: list[int], current: list[int]) -> float:
    """PSI written out from its definition, with half a count added to every bin."""
    M, N, B = sum(reference), sum(current), len(reference)
    total = 0.0
    for r, c in zip(reference, current, strict=True):
        p, q = (r + 0.5) / (M + B / 2), (c + 0.5) / (N + B / 2)
        total += (q - p) * math.log(q / p)
    return total


def expected_pvalue(statistic: float, M: int, N: int, bins: int) -> float:
    return float(stats.chi2.sf(statistic / (1 / M + 1 / N), bins - 1))


@pytest.mark.parametrize(
    ("reference", "current", "bins", "counts"),
    [
        ([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], 2, ([2, 2], [0, 4])),
        ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], 2, ([2, 2], [2, 2])),
        (list(range(10)), [0.0, 0.5, 9.0, 9.5, 100.0], 5, ([2] * 5, [2, 0, 0, 0, 3])),
        ([0, 0, 0, 0, 1, 1, 1, 1], [1, 1, 1], 10, ([4, 4], [0, 3])),  # discrete: 2 bins
    ],
)
def test_psi_follows_its_definition(
    reference: list[float], current: list[float], bins: int, counts: tuple[list[int], list[int]]
) -> None:
    result = psi_test(reference, current, bins=bins)

    statistic = expected_psi(*counts)
    assert result.statistic == pytest.approx(statistic, rel=1e-12, abs=1e-15)
    assert result.bins == len(counts[0])
    pvalue = expected_pvalue(statistic, len(reference), len(current), result.bins)
    assert result.pvalue == pytest.approx(pvalue, rel=1e-9)
    assert psi(reference, current, bins=bins) == result.statistic


def test_identical_samples_give_0_and_p_value_1() -> None:
    values = np.random.default_rng(0).normal(size=1_000)

    assert psi_test(values, values) == PSIResult(0.0, 1.0, 10)


def test_an_empty_bin_keeps_psi_finite_and_moderate() -> None:
    reference = np.random.default_rng(1).uniform(size=10_000)

    result = psi_test(reference, np.full(1_000, 0.55))  # 9 of 10 bins empty

    assert SMOOTHING == 0.5
    assert math.isfinite(result.statistic)
    assert result.statistic == pytest.approx(
        expected_psi([1_000] * 10, [0] * 4 + [1_000] + [0] * 5), rel=1e-12
    )
    assert result.statistic < 10


@settings(max_examples=40, deadline=None, database=None)
@given(
    reference=st.lists(st.floats(-100, 100), min_size=1, max_size=200),
    current=st.lists(st.floats(-100, 100), min_size=1, max_size=200),
    bins=st.integers(2, 20),
)
def test_prepared_and_raw_references_agree(
    reference: list[float], current: list[float], bins: int
) -> None:
    prepared = Reference(reference, bins=bins)
    result = psi_test(reference, current, bins=bins)

    assert psi_test(prepared, current) == result
    assert psi_test(prepared, current, bins=3) == result  # a Reference brings its own bins
    assert result.statistic >= 0.0
    assert 0.0 <= result.pvalue <= 1.0
    assert result.bins == prepared.counts.size


def test_no_drift_p_values_are_roughly_uniform() -> None:
    rng = np.random.default_rng(2024)
    pvalues = np.array(
        [psi_test(rng.normal(size=1_000), rng.normal(size=1_000)).pvalue for _ in range(300)]
    )

    assert 0.02 <= np.mean(pvalues < 0.05) <= 0.09
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01


def test_no_drift_99th_percentile_at_10000_rows_is_about_0_004() -> None:
    rng = np.random.default_rng(99)
    values = [psi(rng.normal(size=10_000), rng.normal(size=10_000)) for _ in range(600)]

    # (1/M + 1/N) * chi2(9).ppf(0.99) = 2e-4 * 21.67 = 0.0043
    assert 0.0036 <= np.quantile(values, 0.99) <= 0.0052


@pytest.mark.parametrize(("shift", "scale"), [(0.1, 1.0), (0.0, 1.2)])
def test_a_real_shift_gives_a_tiny_p_value(shift: float, scale: float) -> None:
    rng = np.random.default_rng(7)
    reference = Reference(rng.normal(size=20_000))

    result = psi_test(reference, rng.normal(shift, scale, size=20_000))

    assert result.pvalue < 1e-8
    assert result.statistic > 0.004


def test_small_shift_at_few_rows_is_not_significant() -> None:
    # PSI 0.02 looks like "some drift" to rules of thumb; at 200 rows it is noise
    rng = np.random.default_rng(8)
    result = psi_test(rng.normal(size=200), rng.normal(0.05, size=200), bins=10)

    assert result.pvalue > 0.05


@pytest.mark.parametrize(
    ("reference", "current", "counts"),
    [
        ({"a": 50, "b": 50}, {"a": 30, "b": 70}, ([50, 50], [30, 70])),
        ({"a": 50, "b": 50}, {"a": 40, "b": 40, "c": 10, "d": 10}, ([50, 50, 0], [40, 40, 20])),
        ({"a": 5, "gone": 0, "b": 5}, {"a": 3, "b": 3, "gone": 0}, ([5, 5], [3, 3])),
        ({"a": 5, "b": 0}, {"a": 3, "b": 2}, ([5, 0], [3, 2])),  # b: unseen in the reference
        ({UNSEEN: 4, "a": 4}, {UNSEEN: 2, "x": 6}, ([4, 4, 0], [2, 0, 6])),
    ],
)
def test_categorical_psi_pools_unseen_categories(
    reference: dict[str, int], current: dict[str, int], counts: tuple[list[int], list[int]]
) -> None:
    result = categorical_psi(reference, current)

    statistic = expected_psi(*counts)
    assert result.statistic == pytest.approx(statistic, rel=1e-12, abs=1e-15)
    assert result.bins == len(counts[0])
    M, N = sum(counts[0]), sum(counts[1])
    assert result.pvalue == pytest.approx(expected_pvalue(statistic, M, N, result.bins))


def test_categorical_psi_of_one_category_is_0_with_p_value_1() -> None:
    assert categorical_psi({"a": 10}, {"a": 3}) == PSIResult(0.0, 1.0, 1)


@pytest.mark.parametrize(
    ("reference", "current", "error", "message"),
    [
        ({"a": 0}, {"a": 1}, EmptyInputError, "reference: no values"),
        ({"a": 1}, {}, EmptyInputError, "current: no values"),
        ({"a": -1, "b": 3}, {"a": 1}, InputError, "'a' must be a non-negative integer"),
        ({"a": 1.5}, {"a": 1}, InputError, "non-negative integer"),
    ],
)
def test_bad_category_counts_raise(
    reference: dict[str, int], current: dict[str, int], error: type[InputError], message: str
) -> None:
    with pytest.raises(error, match=message):
        categorical_psi(reference, current)


@pytest.mark.parametrize(
    ("current", "error"), [([], EmptyInputError), ([0.0, float("nan")], InputError)]
)
def test_bad_current_samples_raise(current: list[float], error: type[InputError]) -> None:
    with pytest.raises(error, match="current"):
        psi([1.0, 2.0, 3.0], current)
