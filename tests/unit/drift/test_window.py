"""Window specs, value conversion, per-feature buffers and routing rows to windows."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from flowops.drift.window import (
    FeatureBuffer,
    Window,
    Windows,
    WindowSpec,
    infer_kind,
    to_floats,
)
from flowops.errors import InputError


def _routes(windows: Windows, ts: list[float]) -> tuple[list[tuple[int, list[int]]], int]:
    """Which rows of the batch go to which window, as plain lists, and the late count."""
    segments, late = windows.route(np.array(ts, dtype=np.float64))
    rows = np.arange(len(ts))
    return [(s.index, rows[s.rows].tolist()) for s in segments], late


# -- WindowSpec -------------------------------------------------------------------------


def test_spec_count_size_becomes_an_int() -> None:
    spec = WindowSpec("count", 10.0)
    assert spec.size == 10
    assert isinstance(spec.size, int)


@pytest.mark.parametrize(
    ("kind", "size", "message"),
    [
        ("sliding", 10, "window kind"),
        ("count", 0, "positive"),
        ("time", -1.0, "positive"),
        ("time", math.nan, "positive"),
        ("time", math.inf, "finite"),
        ("count", True, "positive"),
        ("count", "10", "positive"),
        ("count", 2.5, "whole number"),
    ],
)
def test_spec_rejects_bad_settings(kind: Any, size: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        WindowSpec(kind, size)


@pytest.mark.parametrize("spec", [WindowSpec("count", 500), WindowSpec("time", 0.25)])
def test_spec_round_trips_through_json(spec: WindowSpec) -> None:
    assert WindowSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_time_bounds_are_multiples_of_the_size() -> None:
    assert WindowSpec("time", 60.0).bounds(3) == (180.0, 240.0)


# -- converting values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, 2, -3.5], [1.0, 2.0, -3.5]),
        ([None, 1.0], [math.nan, 1.0]),
        ([math.nan, math.inf, -math.inf], [math.nan, math.inf, -math.inf]),
        (["1.5", 2.0], [math.nan, 2.0]),  # text is not a number, even when it reads as one
        ([True, False, 1], [math.nan, math.nan, 1.0]),
        ([10**400, 7], [math.nan, 7.0]),  # beyond the float range
        ([np.float32(0.5), np.int64(3), np.bool_(True)], [0.5, 3.0, math.nan]),
        ([[1.0], {"a": 1}, object()], [math.nan] * 3),
        ([], []),
    ],
)
def test_to_floats(values: list[Any], expected: list[float]) -> None:
    result = to_floats(values)
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, np.array(expected, dtype=np.float64))


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([None, None, "a"], "categorical"),
        ([None, 0, "a"], "numeric"),
        ([math.nan, True, 2.5], "numeric"),
        ([None, math.nan], None),
        ([], None),
    ],
)
def test_infer_kind_takes_the_first_usable_value(values: list[Any], kind: str | None) -> None:
    assert infer_kind(values) == kind


# -- FeatureBuffer ---------------------------------------------------------------------


def test_buffer_converts_each_value_once_and_keeps_order() -> None:
    buffer = FeatureBuffer()
    buffer.raw.extend([1.0, None])
    assert buffer.take_numbers().tolist() == [1.0, pytest.approx(math.nan, nan_ok=True)]
    assert buffer.raw == []
    buffer.raw.extend([3.0])
    assert buffer.take_numbers().tolist() == [3.0]
    assert len(buffer) == 3
    np.testing.assert_array_equal(buffer.numbers(), [1.0, math.nan, 3.0])


def test_buffer_categories_keep_only_text() -> None:
    buffer = FeatureBuffer(["a", None, 3, "b", math.nan, "a"])
    assert buffer.categories() == ["a", "b", "a"]


def test_buffer_state_is_json_safe_and_exact() -> None:
    buffer = FeatureBuffer([0.1, math.inf, None])
    buffer.take_numbers()
    buffer.raw.extend([1 / 3, math.nan, "x", 10**30, 2**70, True, [1], np.float64(2.5), 5])
    state = json.loads(json.dumps(buffer.to_state(), allow_nan=False))
    restored = FeatureBuffer.from_state(state)
    assert restored.to_state() == buffer.to_state()
    assert restored.categories() == buffer.categories() == ["x"]
    before, after = buffer.numbers(), restored.numbers()
    np.testing.assert_array_equal(np.isfinite(after), np.isfinite(before))  # inf: unusable
    np.testing.assert_array_equal(after[np.isfinite(after)], before[np.isfinite(before)])


def test_buffer_state_does_not_convert_pending_values() -> None:
    buffer = FeatureBuffer([1.0, 2.0])
    buffer.to_state()
    assert buffer.raw == [1.0, 2.0]
    assert buffer.converted == []


# -- Window ----------------------------------------------------------------------------


def test_window_pads_absent_and_late_arriving_features() -> None:
    window = Window(index=0, first_row=10)
    window.append([1.0, 2.0], {"x": [1.0, 2.0]})
    window.append([3.0], {"y": ["a"]})
    assert window.features["x"].raw == [1.0, 2.0, None]
    assert window.features["y"].raw == [None, None, "a"]
    assert (window.rows, window.pending) == (3, 3)


def test_window_span_ignores_timestamps_that_are_not_finite() -> None:
    window = Window(index=0, first_row=0)
    window.append([5.0, math.nan, 2.0, 9.0], {})
    assert window.span() == (2.0, 9.0)
    assert Window(index=0, first_row=0).span() == (0.0, 0.0)


def test_window_state_round_trips_through_json() -> None:
    window = Window(index=4, first_row=100)
    window.append([1.0, math.nan], {"x": [0.5, None], "c": ["a", 7]})
    window.features["x"].take_numbers()
    window.pending = 1
    state = json.loads(json.dumps(window.to_state(), allow_nan=False))
    assert Window.from_state(state).to_state() == window.to_state()


# -- Windows: count --------------------------------------------------------------------


def test_count_windows_split_a_batch_that_straddles_boundaries() -> None:
    windows = Windows(WindowSpec("count", 4))
    windows.start(0).append([0.0] * 3, {})
    routes, late = _routes(windows, [1.0] * 6)
    assert routes == [(0, [0]), (1, [1, 2, 3, 4]), (2, [5])]
    assert late == 0


def test_count_windows_fill_and_number_in_order() -> None:
    windows = Windows(WindowSpec("count", 2))
    window = windows.start(0)
    window.append([7.0, 3.0], {})
    assert windows.full()
    assert windows.take() is window
    assert (windows.next_index, windows.next_row) == (1, 2)
    assert _routes(windows, [1.0, 2.0, 3.0])[0] == [(1, [0, 1]), (2, [2])]
    assert windows.bounds(window) == (3.0, 7.0)


def test_count_windows_never_expire() -> None:
    windows = Windows(WindowSpec("count", 2))
    windows.start(0).append([0.0], {})
    assert not windows.expired(1e12)


# -- Windows: time ---------------------------------------------------------------------


def test_time_windows_are_half_open_and_aligned_to_the_size() -> None:
    windows = Windows(WindowSpec("time", 10.0))
    routes, late = _routes(windows, [0.0, 9.999, 10.0, 19.99, 20.0])
    assert routes == [(0, [0, 1]), (1, [2, 3]), (2, [4])]
    assert late == 0


def test_time_windows_skip_empty_gaps() -> None:
    windows = Windows(WindowSpec("time", 10.0))
    assert _routes(windows, [1.0, 55.0, 58.0, 1000.0]) == (
        [(0, [0]), (5, [1, 2]), (100, [3])],
        0,
    )


def test_rows_of_earlier_windows_are_late_and_dropped() -> None:
    windows = Windows(WindowSpec("time", 10.0))
    windows.start(2).append([25.0], {})
    routes, late = _routes(windows, [19.0, 21.0, 31.0, 29.0, 32.0])
    assert routes == [(2, [1]), (3, [2, 4])]
    assert late == 2


def test_rows_without_a_finite_timestamp_are_late() -> None:
    windows = Windows(WindowSpec("time", 10.0))
    routes, late = _routes(windows, [math.nan, 5.0, math.inf, -math.inf, 6.0])
    assert routes == [(0, [1, 4])]
    assert late == 3


def test_a_closed_time_window_never_reopens() -> None:
    windows = Windows(WindowSpec("time", 10.0))
    windows.start(0).append([5.0], {})
    assert not windows.expired(9.999)
    assert windows.expired(10.0)
    windows.take()
    assert _routes(windows, [5.0, 15.0]) == ([(1, [1])], 1)


def test_the_open_window_takes_its_rows_in_any_order() -> None:
    windows = Windows(WindowSpec("time", 10.0))
    windows.start(1).append([15.0], {})
    assert _routes(windows, [19.0, 10.0]) == ([(1, [0, 1])], 0)
    assert _routes(windows, [12.5]) == ([(1, [0])], 0)


@pytest.mark.parametrize("size", [0.1, 0.3, 1 / 3, 7.0])
def test_time_boundaries_are_exact_in_floating_point(size: float) -> None:
    """A timestamp equal to ``k * size`` opens window k; the float just below it does not."""
    for k in range(1, 200):
        start = k * size
        for ts, expected in [(start, k), (float(np.nextafter(start, -np.inf)), k - 1)]:
            routes, _ = _routes(Windows(WindowSpec("time", size)), [ts])
            assert routes == [(expected, [0])], (k, ts)


def test_windows_state_round_trips_through_json() -> None:
    windows = Windows(WindowSpec("time", 10.0))
    windows.start(3).append([31.0], {"x": [1.0]})
    state = json.loads(json.dumps(windows.to_state(), allow_nan=False))
    restored = Windows.from_state(state)
    assert restored.to_state() == windows.to_state()
    assert Windows.from_state(Windows(WindowSpec("count", 5)).to_state()).next_index == 0
