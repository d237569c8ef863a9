"""flowops.drift.reference: sorting, quantile bin edges, bin counts, stored parts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from flowops.drift.reference import Reference, as_sample, bin_counts, quantile_edges
from flowops.errors import EmptyInputError, InputError


def histogram(edges: NDArray[np.float64], values: NDArray[np.float64]) -> list[int]:
    """numpy's own count of ``values`` in ``(-inf, e1), [e1, e2), ..., [ek, +inf]``."""
    outer = np.concatenate([[-np.inf], edges, [np.inf]])
    counts: list[int] = np.histogram(values, outer)[0].tolist()
    return counts


@pytest.mark.parametrize("bins", [2, 4, 10, 20])
@pytest.mark.parametrize("seed", [0, 1])
def test_edges_are_the_reference_quantiles_for_continuous_data(bins: int, seed: int) -> None:
    values = np.random.default_rng(seed).lognormal(size=1_000)

    ref = Reference(values, bins=bins)

    expected = np.quantile(values, np.arange(1, bins) / bins)
    assert ref.edges.tolist() == expected.tolist()
    assert ref.counts.tolist() == histogram(ref.edges, values)
    assert ref.counts.sum() == ref.n == 1_000


def test_sorted_holds_the_sample_in_ascending_order() -> None:
    values = np.random.default_rng(3).normal(size=500)

    ref = Reference(values)

    assert ref.sorted.tolist() == sorted(values.tolist())
    assert not ref.is_sketch
    assert ref.expanded() is ref.sorted


@pytest.mark.parametrize(
    ("values", "bins", "edges", "counts"),
    [
        ([0, 0, 0, 0, 1, 1, 1, 1], 4, [0.5], [4, 4]),
        ([0, 0, 0, 1, 1], 10, [0.3999999999999999], [3, 2]),  # 60% quantile, linear
        ([0, 0, 0, 0, 10, 10], 4, [7.5], [4, 2]),  # the 25%, 50% quantile is the minimum
        ([5, 5, 5], 10, [], [3]),
        ([7], 10, [], [1]),
        (
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            10,
            [1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1],
            [1] * 10,
        ),
    ],
)
def test_discrete_data_drops_duplicate_and_empty_bin_edges(
    values: list[float], bins: int, edges: list[float], counts: list[int]
) -> None:
    ref = Reference(values, bins=bins)

    assert ref.edges.tolist() == pytest.approx(edges, rel=1e-15)
    assert ref.counts.tolist() == counts


@settings(max_examples=60, deadline=None, database=None)
@given(
    values=st.lists(st.integers(-3, 3) | st.floats(-5, 5), min_size=1, max_size=80),
    bins=st.integers(2, 12),
)
def test_every_bin_holds_reference_values(values: list[float], bins: int) -> None:
    ref = Reference(values, bins=bins)

    assert np.all(np.diff(ref.edges) > 0)
    assert len(ref.edges) <= bins - 1
    assert ref.counts.tolist() == histogram(ref.edges, np.array(values, dtype=float))
    assert np.all(ref.counts > 0)
    assert set(ref.edges.tolist()) <= set(np.quantile(values, np.arange(1, bins) / bins).tolist())


@pytest.mark.parametrize("bins", [10, 100])  # edge by edge, and a binary search per value
def test_bin_counts_match_numpy_histogram(bins: int) -> None:
    rng = np.random.default_rng(5)
    ref = Reference(rng.normal(size=5_000), bins=bins)
    current = np.concatenate([rng.normal(0.3, size=5_000), ref.edges])  # values on edges

    assert ref.bin_counts(current).tolist() == histogram(ref.edges, current)


def test_bin_counts_put_edge_values_in_the_bin_to_the_right() -> None:
    edges = np.array([1.0, 2.0])

    assert bin_counts(edges, np.array([1.0, 1.0, 2.0])).tolist() == [0, 2, 1]


def test_arrays_are_read_only() -> None:
    ref = Reference([3.0, 1.0, 2.0])

    for array in (ref.sorted, ref.edges, ref.counts):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0


def test_from_parts_keeps_a_sketch_and_the_true_size() -> None:
    ref = Reference.from_parts([1.0, 5.0, 9.0], n=100, edges=[5.0], counts=[49, 51])

    assert (ref.n, ref.sorted.tolist(), ref.edges.tolist(), ref.counts.tolist()) == (
        100,
        [1.0, 5.0, 9.0],
        [5.0],
        [49, 51],
    )
    assert ref.is_sketch
    assert ref.counts.dtype == np.int64


def test_from_parts_does_not_freeze_the_callers_array() -> None:
    sample = np.array([1.0, 2.0, 3.0])

    Reference.from_parts(sample, n=3, edges=[], counts=[3])
    sample[0] = 0.0  # still writeable

    assert sample[0] == 0.0


@pytest.mark.parametrize(("n", "k"), [(10, 3), (100, 7), (10_000, 1_000), (5, 4)])
def test_expanded_sketch_has_n_values_and_the_sketch_distribution(n: int, k: int) -> None:
    sketch = np.sort(np.random.default_rng(n).normal(size=k))
    ref = Reference.from_parts(sketch, n=n, edges=[], counts=[n])

    expanded = ref.expanded()

    assert expanded.size == n
    assert np.all(np.diff(expanded) >= 0)
    assert set(expanded.tolist()) == set(sketch.tolist())
    # each stored value stands for n / k values, rounded
    assert np.all(np.abs(np.unique(expanded, return_counts=True)[1] - n / k) < 1)


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({"sorted_sample": [2.0, 1.0]}, "not sorted"),
        ({"n": 1}, "more than n=1"),
        ({"n": 2.0}, "n must be an integer"),
        ({"edges": [2.0, 2.0], "counts": [1, 1, 1]}, "strictly increasing"),
        ({"edges": [float("nan")], "counts": [1, 2]}, "finite"),
        ({"counts": [3]}, "one more entry than edges"),
        ({"counts": [1.0, 2.0]}, "integers"),
        ({"counts": [4, -1]}, "non-negative and sum to n=3"),
        ({"counts": [1, 1]}, "sum to n=3"),
        ({"sorted_sample": [1.0, float("inf")]}, "NaN or inf"),
    ],
)
def test_from_parts_rejects_parts_of_no_one_sample(parts: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "sorted_sample": [1.0, 2.0],
        "n": 3,
        "edges": [1.5],
        "counts": [1, 2],
        **parts,
    }

    with pytest.raises(InputError, match=message):
        Reference.from_parts(arguments.pop("sorted_sample"), **arguments)


@pytest.mark.parametrize("bins", [1, 0, -3, 2.5, True, "10"])
def test_bins_must_be_an_integer_of_at_least_2(bins: Any) -> None:
    with pytest.raises(InputError, match="bins must be an integer of at least 2"):
        Reference([1.0, 2.0], bins=bins)


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [
        ([], EmptyInputError, "reference: no values"),
        ([1.0, float("nan")], InputError, "NaN or inf"),
        ([1.0, float("-inf")], InputError, "NaN or inf"),
        ([[1.0, 2.0]], InputError, "1-D"),
        (["a", "b"], InputError, "not numbers"),
    ],
)
def test_bad_samples_raise_input_errors(values: Any, error: type[InputError], message: str) -> None:
    with pytest.raises(error, match=message):
        Reference(values)


def test_as_sample_accepts_integers_and_keeps_float_arrays() -> None:
    floats = np.array([1.5, 2.5])

    assert as_sample([1, 2]).dtype == np.float64
    assert as_sample(floats) is floats


def test_quantile_edges_of_a_constant_sample_are_empty() -> None:
    assert quantile_edges(np.full(10, 4.0), 10).size == 0
