"""flowops.drift.corrections: Bonferroni and Benjamini-Hochberg adjusted p-values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from flowops.drift.corrections import benjamini_hochberg, bonferroni
from flowops.errors import InputError

pvalues = st.lists(
    st.floats(0.0, 1.0) | st.sampled_from([0.0, 0.01, 0.05, 1.0]), min_size=1, max_size=50
)


@settings(max_examples=200, deadline=None, database=None)
@given(p=pvalues)
def test_benjamini_hochberg_equals_scipys_false_discovery_control(p: list[float]) -> None:
    expected = stats.false_discovery_control(p, method="bh")

    assert benjamini_hochberg(p).tolist() == np.asarray(expected, dtype=float).tolist()


@settings(max_examples=100, deadline=None, database=None)
@given(p=pvalues)
def test_adjusted_p_values_keep_order_and_bounds(p: list[float]) -> None:
    raw = np.array(p)
    for adjust in (bonferroni, benjamini_hochberg):
        adjusted = adjust(p)
        assert adjusted.shape == raw.shape
        assert np.all((raw <= adjusted) & (adjusted <= 1.0))
        order = np.argsort(raw, kind="stable")
        assert np.all(np.diff(adjusted[order]) >= 0)  # the ranking of the tests is kept
    assert np.all(benjamini_hochberg(p) <= bonferroni(p))


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        ([0.01, 0.04, 0.5], [0.03, 0.12, 1.0]),
        ([0.2], [0.2]),
        ([0.3, 0.4, 0.0], [0.9, 1.0, 0.0]),
    ],
)
def test_bonferroni_multiplies_by_the_number_of_tests(
    p: list[float], expected: list[float]
) -> None:
    assert bonferroni(p).tolist() == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        ([0.01, 0.04, 0.5], [0.03, 0.06, 0.5]),
        ([0.04, 0.01, 0.03], [0.04, 0.03, 0.04]),  # the step-up minimum, in the given order
        ([0.01, 0.02, 0.03, 0.04], [0.04] * 4),
        ([0.9, 0.8], [0.9, 0.9]),
        ([0.7], [0.7]),
    ],
)
def test_benjamini_hochberg_examples(p: list[float], expected: list[float]) -> None:
    assert benjamini_hochberg(p).tolist() == pytest.approx(expected, rel=1e-15)


def test_no_p_values_give_no_adjusted_ones() -> None:
    assert bonferroni([]).tolist() == []
    assert benjamini_hochberg([]).tolist() == []


@pytest.mark.parametrize(
    ("p", "message"),
    [
        ([0.5, 1.5], r"lie in \[0, 1\]"),
        ([-0.1], r"lie in \[0, 1\]"),
        ([float("nan")], r"lie in \[0, 1\]"),
        ([[0.1, 0.2]], "1-D"),
        (["x"], "must be numbers"),
    ],
)
@pytest.mark.parametrize("adjust", [bonferroni, benjamini_hochberg])
def test_bad_p_values_raise(p: Any, message: str, adjust: Any) -> None:
    with pytest.raises(InputError, match=message):
        adjust(p)
