"""flowops.drift.ks: the two-sample KS test against scipy.stats.ks_2samp."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats

from flowops.drift.ks import EXACT_MAX_N, KSResult, kolmogorov_sf, ks_2samp, ks_statistic
from flowops.drift.reference import Reference
from flowops.errors import EmptyInputError, InputError

# Continuous values, and small integers for ties within and across the samples.
continuous = st.lists(st.floats(-1e6, 1e6, allow_subnormal=False), min_size=1, max_size=40)
tied = st.lists(st.integers(-4, 4).map(float), min_size=1, max_size=40)
samples = continuous | tied


def scipy_asymptotic(reference: NDArray[np.float64], current: NDArray[np.float64]) -> KSResult:
    result = stats.ks_2samp(reference, current, method="asymp")
    return KSResult(float(result.statistic), float(result.pvalue))


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
@settings(max_examples=100, deadline=None, database=None)
@given(reference=samples, current=samples)
def test_small_samples_equal_scipy_exactly(reference: list[float], current: list[float]) -> None:
    expected = stats.ks_2samp(reference, current)

    for ref in (reference, Reference(reference)):
        result = ks_2samp(ref, current)
        assert result.statistic == expected.statistic
        assert result.pvalue == expected.pvalue


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # scipy's p, n1 = n2 = 1
@settings(max_examples=100, deadline=None, database=None)
@given(reference=samples, current=samples)
def test_statistic_is_bit_equal_to_scipys(reference: list[float], current: list[float]) -> None:
    ref, cur = np.sort(reference), np.sort(current)

    assert ks_statistic(ref, cur) == scipy_asymptotic(ref, cur).statistic


@pytest.mark.parametrize(
    ("n_reference", "n_current", "shift", "decimals"),
    [
        (20_000, 500, 0.0, None),
        (20_000, 500, 0.2, None),
        (12_000, 12_000, 0.0, None),
        (12_000, 12_000, 0.05, None),
        (15_000, 3_000, 0.1, 1),  # rounded values: ties within and across samples
        (30_000, 1, 0.0, None),
        (10_001, 40, 1.0, 2),
    ],
)
def test_large_samples_match_scipys_asymptotic_test(
    n_reference: int, n_current: int, shift: float, decimals: int | None
) -> None:
    rng = np.random.default_rng(n_reference + n_current)
    reference, current = rng.normal(size=n_reference), rng.normal(shift, size=n_current)
    if decimals is not None:
        reference, current = reference.round(decimals), current.round(decimals)
    expected = scipy_asymptotic(reference, current)
    assert stats.ks_2samp(reference, current).pvalue == expected.pvalue  # scipy's auto

    for ref in (reference, Reference(reference)):
        result = ks_2samp(ref, current)
        assert result.statistic == expected.statistic
        assert result.pvalue == pytest.approx(expected.pvalue, rel=0.01)


@pytest.mark.parametrize("n", [1000, 1500, 3000, 10_000, 20_000])
def test_kolmogorov_sf_is_within_1_percent_of_kstwo(n: int) -> None:
    # d from where nothing is significant to where p is about 1e-12
    d = np.linspace(0.1, 3.7, 15) / math.sqrt(n)
    expected = stats.kstwo.sf(d, n)

    result = np.array([kolmogorov_sf(float(x), n) for x in d])

    assert expected.min() > 1e-12
    assert np.max(np.abs(result / expected - 1)) < 0.01


@pytest.mark.parametrize("n", [1, 2, 10, 140, 999])
def test_kolmogorov_sf_is_kstwo_below_1000(n: int) -> None:
    for d in (0.0, 0.5 / n, 0.3 / math.sqrt(n), 1.0 / math.sqrt(n), 0.9, 1.0):
        assert kolmogorov_sf(d, n) == stats.kstwo.sf(d, n)


@pytest.mark.parametrize("n", [1000, 40_000])
def test_kolmogorov_sf_uses_scipys_smirnov_tail_exactly(n: int) -> None:
    d = 2.0 / math.sqrt(n)  # n d^2 = 4 >= 2.2: kstwo.sf is 2 * smirnov(n, d)

    assert kolmogorov_sf(d, n) == stats.kstwo.sf(d, n)


@pytest.mark.parametrize(("n", "k"), [(50_000, 1_000), (200_000, 5_000), (8_000, 500)])
def test_sketch_reference_is_within_half_a_step_of_the_full_data(n: int, k: int) -> None:
    rng = np.random.default_rng(k)
    full = np.sort(rng.gamma(2.0, size=n))
    sketch = full[((2 * np.arange(k) + 1) * n) // (2 * k)]
    reference = Reference.from_parts(sketch, n=n, edges=[], counts=[n])
    current = rng.gamma(2.0, size=2_000) * 1.05

    result, exact = ks_2samp(reference, current), ks_2samp(full, current)

    assert abs(result.statistic - exact.statistic) <= 1 / (2 * k) + 1 / n
    assert result.pvalue == pytest.approx(exact.pvalue, rel=0.5)


def test_sketch_p_value_uses_the_true_reference_size() -> None:
    rng = np.random.default_rng(11)
    sketch = np.sort(rng.normal(size=1_000))
    current = rng.normal(0.05, size=20_000)

    small = ks_2samp(Reference.from_parts(sketch, n=1_000, edges=[], counts=[1_000]), current)
    large = ks_2samp(Reference.from_parts(sketch, n=10**6, edges=[], counts=[10**6]), current)

    assert small.statistic == large.statistic
    en = round(10**6 * 20_000 / (10**6 + 20_000))
    assert large.pvalue == kolmogorov_sf(large.statistic, en)
    assert large.pvalue < small.pvalue


def test_scipys_failed_exact_computation_falls_back_silently() -> None:
    reference, current = [0.0] * 5, [0.0, 0.0, 0.0, 0.0, 1.0]
    with pytest.warns(RuntimeWarning, match="Exact calculation unsuccessful"):
        expected = stats.ks_2samp(reference, current)

    assert ks_2samp(reference, current) == (expected.statistic, expected.pvalue)


def test_exact_regime_ends_at_10000_values() -> None:
    assert EXACT_MAX_N == 10_000
    reference = np.random.default_rng(2).normal(size=EXACT_MAX_N)
    current = reference[:300] + 0.01

    result = ks_2samp(Reference(reference), current)

    expected = stats.ks_2samp(reference, current)
    assert result == (expected.statistic, expected.pvalue)
    assert ks_2samp(Reference(np.append(reference, 0.0)), current).pvalue != expected.pvalue


@pytest.mark.parametrize("shift", [0.3, -0.3])
def test_a_shift_gives_a_tiny_p_value(shift: float) -> None:
    rng = np.random.default_rng(4)
    reference = Reference(rng.normal(size=50_000))

    result = ks_2samp(reference, rng.normal(shift, size=5_000))

    assert result.pvalue < 1e-20
    assert result.statistic == pytest.approx(0.118, abs=0.02)


def test_results_are_plain_floats() -> None:
    result = ks_2samp(np.arange(20_000.0), np.arange(5.0))

    assert type(result.statistic) is float
    assert type(result.pvalue) is float


@pytest.mark.parametrize(
    ("current", "error"),
    [([], EmptyInputError), ([1.0, float("nan")], InputError), ([float("inf")], InputError)],
)
def test_bad_current_samples_raise(current: list[float], error: type[InputError]) -> None:
    with pytest.raises(error, match="current"):
        ks_2samp([1.0, 2.0], current)


def test_empty_reference_raises() -> None:
    with pytest.raises(EmptyInputError, match="reference"):
        ks_2samp([], [1.0])


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.1])
def test_fast_method_is_scipys_exact_test_where_the_verdict_is_close(shift: float) -> None:
    rng = np.random.default_rng(11)
    reference, current = rng.normal(size=10_000), rng.normal(shift, size=5_000)
    exact = stats.ks_2samp(reference, current)
    assert exact.pvalue > 1e-6
    fast = ks_2samp(Reference(reference), current, method="fast")
    assert fast == ks_2samp(reference, current) == (exact.statistic, exact.pvalue)


@pytest.mark.parametrize(("shift", "size"), [(0.5, 5_000), (1.0, 1_000), (0.3, 9_999)])
def test_fast_method_takes_the_asymptotic_p_value_far_below_any_alpha(
    shift: float, size: int
) -> None:
    rng = np.random.default_rng(12)
    reference, current = rng.normal(size=10_000), rng.normal(shift, size=size)
    fast = ks_2samp(reference, current, method="fast")
    asymptotic = scipy_asymptotic(reference, current)
    exact = stats.ks_2samp(reference, current)
    assert fast.statistic == asymptotic.statistic  # exact rounds D to a multiple of 1/lcm
    assert fast.statistic == pytest.approx(exact.statistic, abs=1e-12)
    assert fast.pvalue == pytest.approx(asymptotic.pvalue, rel=0.01)
    assert fast.pvalue < 1e-6
    assert exact.pvalue < 1e-6  # the same verdict at any alpha


def test_an_unknown_method_raises() -> None:
    with pytest.raises(InputError, match="KS method must be 'auto' or 'fast', got 'exact'"):
        ks_2samp([1.0, 2.0], [3.0], method="exact")  # type: ignore[arg-type]
