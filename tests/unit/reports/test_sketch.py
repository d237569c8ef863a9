"""The row-free sketches a report draws: shares on shared bins, statistics, the KS place."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowops.drift import Profile, ks_2samp
from flowops.drift.profile import CategoricalProfile, NumericProfile
from flowops.errors import EmptyInputError, InputError
from flowops.reports.sketch import (
    GRID_CELLS,
    CategoricalSketch,
    NumericSketch,
    sketch_columns,
    sketch_feature,
)


def _numeric(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> NumericSketch:
    profile = Profile.from_columns({"x": reference}, bins=bins, sample_size=reference.size)
    feature = profile.features["x"]
    assert isinstance(feature, NumericProfile)
    sketch = sketch_feature(feature, current)
    assert isinstance(sketch, NumericSketch)
    return sketch


@pytest.mark.parametrize("shift", [0.0, 0.3, 2.0])
def test_ks_place_gives_the_ks_statistic(shift: float) -> None:
    rng = np.random.default_rng(7)
    reference, current = rng.normal(size=3_000), rng.normal(shift, size=2_000)
    sketch = _numeric(reference, current)
    expected = ks_2samp(reference, current).statistic
    assert abs(sketch.ks_current - sketch.ks_reference) == pytest.approx(expected, abs=1e-12)
    _at_the_place(sketch, reference, current)


def _at_the_place(sketch: NumericSketch, reference: np.ndarray, current: np.ndarray) -> None:
    """The marked ECDF values are both sides' ECDFs at ks_at, or both left limits there."""
    at = (np.mean(reference <= sketch.ks_at), np.mean(current <= sketch.ks_at))
    left = (np.mean(reference < sketch.ks_at), np.mean(current < sketch.ks_at))
    marked = (sketch.ks_reference, sketch.ks_current)
    assert marked == pytest.approx(at) or marked == pytest.approx(left)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=40),
    st.lists(st.integers(0, 6), min_size=1, max_size=40),
)
def test_ks_place_with_ties_is_the_supremum(reference: list[int], current: list[int]) -> None:
    ref, cur = np.array(reference, dtype=np.float64), np.array(current, dtype=np.float64)
    sketch = _numeric(ref, cur, bins=2)
    points = np.concatenate((ref, cur))  # D by its definition, at every data point
    expected = np.max(np.abs((ref <= points[:, None]).mean(1) - (cur <= points[:, None]).mean(1)))
    assert abs(sketch.ks_current - sketch.ks_reference) == pytest.approx(expected, abs=1e-12)
    _at_the_place(sketch, ref, cur)


def test_shares_count_values_on_the_reference_bins_and_grid() -> None:
    rng = np.random.default_rng(1)
    reference, current = rng.exponential(size=5_000), rng.exponential(1.5, size=4_000)
    sketch = _numeric(reference, current)
    assert sum(sketch.current.grid_shares) == pytest.approx(1.0)
    assert len(sketch.grid) - 1 == len(sketch.current.grid_shares) <= GRID_CELLS
    assert sketch.grid[0] == min(reference.min(), current.min())
    assert sketch.grid[-1] == max(reference.max(), current.max())
    edges = np.asarray(sketch.grid)
    # a value on an edge counts to its right, as in the PSI bins
    expected = np.histogram(current, edges)[0] / current.size
    assert np.allclose(sketch.current.grid_shares, expected)
    inner = np.array([-np.inf, *sketch.bin_edges, np.inf])
    below = [np.count_nonzero(current < edge) for edge in inner]
    assert np.allclose(sketch.current.bin_shares, np.diff(below) / current.size)


def test_current_statistics_and_missing_share() -> None:
    current = np.array([1.0, 2.0, np.nan, 4.0, np.inf, 3.0])
    sketch = _numeric(np.arange(100, dtype=np.float64), current)
    side = sketch.current
    assert (side.n, side.excluded, side.missing_share) == (4, 2, pytest.approx(2 / 6))
    assert (side.mean, side.minimum, side.maximum) == (2.5, 1.0, 4.0)
    assert side.std == pytest.approx(np.std([1.0, 2.0, 3.0, 4.0]))
    assert side.quantiles[2] == 2.5  # the median


def test_discrete_data_keeps_every_value_in_a_cell() -> None:
    reference = np.repeat([0.0, 1.0, 5.0], [700, 200, 100])
    sketch = _numeric(reference, np.repeat([0.0, 5.0], [50, 50]))
    assert sum(sketch.reference.grid_shares) == pytest.approx(1.0)
    assert sketch.current.grid_shares[-1] == pytest.approx(0.5)  # 5.0, the maximum


def test_categorical_unseen_and_counts() -> None:
    profile = CategoricalProfile.from_values(["a"] * 6 + ["b"] * 3 + ["c"])
    sketch = sketch_feature(profile, ["a", "z", None, "z", "y", "a"])
    assert isinstance(sketch, CategoricalSketch)
    assert sketch.current.counts == {"a": 2, "z": 2, "y": 1}
    assert (sketch.current.n, sketch.current.excluded) == (5, 1)
    assert sketch.unseen == {"z": 2, "y": 1}


def test_sketch_columns_skips_features_the_data_lacks() -> None:
    profile = Profile.from_columns({"x": np.arange(10.0), "k": ["a", "b"]})
    sketches = sketch_columns(profile.features, {"x": np.arange(5.0)})
    assert list(sketches) == ["x"]


@pytest.mark.parametrize(
    "column",
    [["a", "z", None, "z"], np.array(["a", "z", "z"])],
    ids=["list", "string array"],
)
def test_category_counts_of_lists_and_string_arrays(column: Any) -> None:
    profile = CategoricalProfile.from_values(["a", "b"])
    sketch = sketch_feature(profile, column)
    assert isinstance(sketch, CategoricalSketch)
    assert sketch.current.counts == {"z": 2, "a": 1}


def test_a_number_in_a_categorical_column_is_an_input_error() -> None:
    profile = CategoricalProfile.from_values(["a", "b"])
    with pytest.raises(InputError, match="categorical values must be strings"):
        sketch_feature(profile, ["a", 3])  # type: ignore[list-item]


def test_no_finite_current_value_is_an_empty_input_error() -> None:
    with pytest.raises(EmptyInputError, match="no usable current values"):
        _numeric(np.arange(10.0), np.array([np.nan, np.inf]))
