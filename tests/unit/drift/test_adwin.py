"""ADWIN against river's: the same detections, fed one value at a time or in batches."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from river import drift as river_drift

from flowops.drift import ADWIN
from flowops.errors import InputError

PARAMS = [
    {},
    {"clock": 1},
    {"delta": 0.1, "clock": 7, "max_buckets": 2, "min_window_length": 3, "grace_period": 0},
    {"delta": 1e-5, "clock": 5, "max_buckets": 3, "grace_period": 100},
]


def _streams(seed: int) -> dict[str, NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    return {
        "abrupt": np.concatenate([rng.normal(0, 1, 3000), rng.normal(0.8, 1, 3000)]),
        "gradual": np.concatenate([rng.normal(0, 1, 2000), rng.normal(np.linspace(0, 2, 4000))]),
        "variance": np.concatenate([rng.normal(0, 1, 3000), rng.normal(0, 4, 3000)]),
        "binary": np.concatenate([rng.binomial(1, 0.2, 3000), rng.binomial(1, 0.5, 3000)]).astype(
            float
        ),
        "several": np.concatenate([rng.normal(2.0 * (k % 2), 1, 1500) for k in range(6)]),
        "none": rng.normal(5, 2, 6000),
        "offset": np.concatenate([rng.normal(1e6, 1, 3000), rng.normal(1e6 + 0.5, 1, 3000)]),
    }


CASES = [
    pytest.param(seed, name, params, id=f"{name}-seed{seed}-p{i}")
    for seed in range(3)
    for name in _streams(0)
    for i, params in enumerate(PARAMS)
]


class RiverRun:
    """River's detections, final width and estimation on a stream."""

    def __init__(self, values: NDArray[np.float64], params: dict[str, float]) -> None:
        river = river_drift.ADWIN(**params)
        self.indices = []
        for i, value in enumerate(values):
            river.update(float(value))
            if river.drift_detected:
                self.indices.append(i)
        self.width = river.width
        self.estimation = river.estimation


def _batched(adwin: ADWIN, values: NDArray[np.float64], sizes: list[int]) -> list[int]:
    found, start = [], 0
    for size in sizes:
        found += [start + int(i) for i in adwin.update_many(values[start : start + size])]
        start += size
    found += [start + int(i) for i in adwin.update_many(values[start:])]
    return found


def _assert_same_end(adwin: ADWIN, river: RiverRun) -> None:
    assert adwin.width == river.width
    assert math.isclose(adwin.estimation, river.estimation, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize(("seed", "name", "params"), CASES)
def test_one_at_a_time_matches_river(seed: int, name: str, params: dict[str, float]) -> None:
    values = _streams(seed)[name]
    river = RiverRun(values, params)
    adwin = ADWIN(**params)
    assert [i for i, v in enumerate(values) if adwin.update(v)] == river.indices
    _assert_same_end(adwin, river)


@pytest.mark.parametrize(("seed", "name", "params"), CASES)
def test_batches_match_river(seed: int, name: str, params: dict[str, float]) -> None:
    values = _streams(seed)[name]
    river = RiverRun(values, params)
    rng = np.random.default_rng(seed + 1000)
    for sizes in ([len(values)], rng.integers(1, 700, 40).tolist(), [1] * 70 + [31, 33, 64]):
        adwin = ADWIN(**params)
        assert _batched(adwin, values, sizes) == river.indices
        _assert_same_end(adwin, river)


def test_detections_are_found_where_the_stream_shifts() -> None:
    rng = np.random.default_rng(42)
    values = np.concatenate([rng.normal(0, 1, 2000), rng.normal(1, 1, 2000)])
    assert ADWIN().update_many(values).tolist() == [2047]
    assert ADWIN().update_many(rng.normal(0, 1, 4000)).tolist() == []


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shift=st.floats(0.0, 3.0),
    cut_points=st.lists(st.integers(0, 3000), max_size=12),
    clock=st.sampled_from([1, 4, 32]),
)
def test_any_batch_split_matches_river(
    seed: int, shift: float, cut_points: list[int], clock: int
) -> None:
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0, 1, 1500), rng.normal(shift, 1, 1500)])
    river = RiverRun(values, {"clock": clock})
    bounds = sorted(set(cut_points))
    sizes = np.diff([0, *bounds]).tolist()
    adwin = ADWIN(clock=clock)
    assert _batched(adwin, values, sizes) == river.indices
    _assert_same_end(adwin, river)


def test_mixing_update_and_update_many_matches_river() -> None:
    values = _streams(5)["several"]
    river = RiverRun(values, {})
    adwin, found = ADWIN(), []
    for start in range(0, len(values), 1000):
        chunk = values[start : start + 1000]
        found += [start + int(i) for i in adwin.update_many(chunk[:500])]
        found += [start + 500 + i for i, v in enumerate(chunk[500:]) if adwin.update(v)]
    assert found == river.indices
    _assert_same_end(adwin, river)


def test_update_many_returns_int_indices_and_counts_detections() -> None:
    adwin = ADWIN()
    found = adwin.update_many([0.0] * 500 + [10.0] * 12)
    assert found.dtype == np.int64
    assert found.tolist() == [511]
    assert adwin.n_detections == 1
    assert adwin.drift_detected  # the batch ended on the detection
    assert adwin.update_many([10.0]).tolist() == []
    assert not adwin.drift_detected


def test_empty_batch_changes_nothing() -> None:
    adwin = ADWIN()
    adwin.update_many(np.ones(100))
    assert adwin.update_many([]).tolist() == []
    assert adwin.width == 100


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(bad: float) -> None:
    with pytest.raises(InputError, match="finite"):
        ADWIN().update(bad)
    with pytest.raises(InputError, match="index 2"):
        ADWIN().update_many([1.0, 2.0, bad])
    warm = ADWIN()
    warm.update_many(np.arange(100.0))
    before = warm.to_state()
    with pytest.raises(InputError, match="index 0"):
        warm.update_many([bad, 1.0])
    assert warm.to_state() == before  # refused whole: nothing of the batch was taken


@pytest.mark.parametrize(
    "params", [{"delta": 0.0}, {"delta": 1.0}, {"clock": 0}, {"max_buckets": 0}]
)
def test_bad_parameters_are_refused(params: dict[str, float]) -> None:
    with pytest.raises(InputError):
        ADWIN(**params)  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), split=st.integers(0, 3000))
def test_state_round_trip_continues_exactly(seed: int, split: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0, 1, 1500), rng.normal(1.5, 1, 1500)])
    whole = ADWIN()
    expected = whole.update_many(values).tolist()
    first = ADWIN()
    found = first.update_many(values[:split]).tolist()
    state = json.loads(json.dumps(first.to_state()))
    second = ADWIN.from_state(state)
    found += [split + int(i) for i in second.update_many(values[split:])]
    assert found == expected
    assert second.width == whole.width
    assert math.isclose(second.estimation, whole.estimation, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("state", [{}, {"params": {}}, {"params": {"delta": 2.0}}])
def test_bad_state_is_refused(state: dict[str, object]) -> None:
    with pytest.raises(InputError):
        ADWIN.from_state(state)
