"""Tumbling windows over one model's traffic, with a buffer per feature.

A :class:`WindowSpec` says how a model's rows are cut into windows:

* ``count``: a window closes as soon as it holds ``size`` rows; window ``i`` holds rows
  ``i * size`` to ``(i + 1) * size - 1`` of the model's stream, so a batch that straddles
  a boundary is split. A count window's bounds are its earliest and latest timestamps.
* ``time``: window ``i`` covers the event timestamps ``[i * size, (i + 1) * size)``
  seconds (aligned to multiples of ``size`` since the epoch). It closes when a row at or
  past its end arrives, or on ``advance(now)`` once ``now`` reaches its end. Windows
  nobody sent a row to are skipped: they never open, so they never close.

**Late rows.** A row whose timestamp falls in a window that has already closed (or in
an earlier window than a row before it) is *late*: it is dropped and counted, as is a
row without a finite timestamp. A closed window never reopens, so rows replayed after a
restore cannot close a window twice.

Values are buffered as they come (a list ``extend`` per feature and call, so that a
one-row call stays cheap) and converted to numbers only when a detector needs them.

>>> import numpy as np
>>> windows = Windows(WindowSpec("time", 10.0))
>>> segments, late = windows.route(np.array([3.0, 12.0, 11.0, 1.0, 35.0]))
>>> [(segment.index, segment.rows) for segment in segments], late
([(0, slice(0, 1, None)), (1, slice(1, 3, None)), (3, slice(4, 5, None))], 1)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray

from flowops.errors import InputError

__all__ = [
    "FeatureBuffer",
    "Kind",
    "Rows",
    "Segment",
    "Window",
    "WindowSpec",
    "Windows",
    "infer_kind",
    "time_indices",
    "to_floats",
]

Kind: TypeAlias = Literal["numeric", "categorical"]
"""A feature's kind: numbers (PSI, KS, ADWIN) or categories (PSI, chi-square)."""

Rows: TypeAlias = slice | NDArray[np.intp]
"""Rows of a batch: a slice when they are contiguous, else their positions."""

_PLAIN_NUMBERS = frozenset({float, int, type(None)})


@dataclass(frozen=True)
class WindowSpec:
    """How a model's rows are cut into tumbling windows: ``size`` rows or seconds.

    >>> WindowSpec("count", 10_000).to_dict()
    {'kind': 'count', 'size': 10000}
    >>> WindowSpec("count", 2.5)
    Traceback (most recent call last):
    ...
    flowops.errors.InputError: a count window's size must be a whole number of rows, got 2.5
    """

    kind: Literal["count", "time"]
    size: float

    def __post_init__(self) -> None:
        if self.kind not in ("count", "time"):
            raise InputError(f"window kind must be 'count' or 'time', got {self.kind!r}")
        size = self.size
        if isinstance(size, bool) or not isinstance(size, int | float) or not size > 0:
            raise InputError(f"window size must be a positive number, got {size!r}")
        if not math.isfinite(size):
            raise InputError(f"window size must be finite, got {size!r}")
        if self.kind == "count":
            if size != int(size):
                raise InputError(
                    f"a count window's size must be a whole number of rows, got {size}"
                )
            object.__setattr__(self, "size", int(size))

    def bounds(self, index: int) -> tuple[float, float]:
        """Start and end of time window ``index``: ``index * size``, ``(index + 1) * size``."""
        return index * self.size, (index + 1) * self.size

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready builtins."""
        return {"kind": self.kind, "size": self.size}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowSpec:
        """The spec :meth:`to_dict` gave."""
        return cls(data["kind"], data["size"])


@dataclass(frozen=True)
class Segment:
    """Rows of a batch that go to one window."""

    index: int
    rows: Rows


def to_floats(values: Sequence[object]) -> NDArray[np.float64]:
    """Values as floats; ``None``, text, booleans and anything else not a number become NaN.

    >>> to_floats([1, 2.5, None, "3", True, float("inf")]).tolist()
    [1.0, 2.5, nan, nan, nan, inf]
    """
    if set(map(type, values)) <= _PLAIN_NUMBERS:
        try:
            return np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond the float range
            pass
    return np.array([_float(value) for value in values], dtype=np.float64)


def _float(value: object) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.nan


def infer_kind(values: Sequence[object]) -> Kind | None:
    """The kind of the first usable value: text is categorical, a number numeric.

    >>> infer_kind([None, "a", 1.0]), infer_kind([None, 2]), infer_kind([None])
    ('categorical', 'numeric', None)
    """
    for value in values:
        if isinstance(value, str):
            return "categorical"
        if not math.isnan(_float(value)):
            return "numeric"
    return None


class FeatureBuffer:
    """One feature's values in the open window.

    ``raw`` holds values as they came; :meth:`take_numbers` converts them to floats (NaN
    for anything unusable) and keeps the result in ``converted``, so a numeric value is
    converted once whether a streaming detector or the window close asks first.
    """

    __slots__ = ("converted", "raw")

    def __init__(self, raw: list[object] | None = None) -> None:
        self.raw: list[object] = [] if raw is None else raw
        self.converted: list[NDArray[np.float64]] = []

    def __len__(self) -> int:
        return len(self.raw) + sum(part.size for part in self.converted)

    def take_numbers(self) -> NDArray[np.float64]:
        """Convert the values not yet converted; returns them (NaN for unusable ones)."""
        new = to_floats(self.raw)
        self.raw = []
        if new.size:
            self.converted.append(new)
        return new

    def numbers(self) -> NDArray[np.float64]:
        """Every value of the window as floats, NaN for unusable ones."""
        self.take_numbers()
        if len(self.converted) != 1:
            self.converted = [np.concatenate([np.empty(0), *self.converted])]
        return self.converted[0]

    def categories(self) -> list[str]:
        """The window's text values, in order (anything else is unusable)."""
        return [value for value in self.raw if isinstance(value, str)]

    def to_state(self) -> dict[str, Any]:
        """JSON-safe and exact: NaN and inf become ``None``, which is as unusable."""
        converted = np.concatenate(self.converted).tolist() if self.converted else []
        return {"converted": [_json_float(v) for v in converted], "raw": _json_values(self.raw)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> FeatureBuffer:
        """The buffer :meth:`to_state` described."""
        buffer = cls(list(state["raw"]))
        if state["converted"]:
            buffer.converted = [np.array(state["converted"], dtype=np.float64)]
        return buffer


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _json_values(values: list[object]) -> list[object]:
    """Raw values as JSON-safe ones that a window treats the same way."""
    if set(map(type, values)) <= {str, type(None)}:
        return list(values)
    return [_json_value(value) for value in values]


def _json_value(value: object) -> object:
    """Text, None and booleans as they are; numbers as ints or finite floats; else None."""
    if value is None or type(value) in (str, bool):
        return value
    if isinstance(value, str):
        return str(value)
    number = _float(value)
    if not math.isfinite(number):
        return None
    return value if type(value) is int and abs(value) < 2**63 else number


class Window:
    """The open window: its index, rows, timestamps and one buffer per feature.

    ``first_row`` is the running index (over the model's kept rows) of its first row;
    ``pending`` counts the rows not yet handed to streaming detectors.
    """

    __slots__ = ("features", "first_row", "index", "pending", "rows", "timestamps")

    def __init__(self, index: int, first_row: int) -> None:
        self.index = index
        self.first_row = first_row
        self.rows = 0
        self.pending = 0
        self.timestamps: list[float] = []
        self.features: dict[str, FeatureBuffer] = {}

    def buffer(self, name: str) -> FeatureBuffer:
        """The feature's buffer, created with one missing value per row so far."""
        buffer = self.features.get(name)
        if buffer is None:
            buffer = self.features[name] = FeatureBuffer([None] * self.rows)
        return buffer

    def append(self, timestamps: list[float], columns: Mapping[str, Sequence[object]]) -> None:
        """Add rows: their timestamps and one column per feature; absent features get None."""
        n = len(timestamps)
        for name, column in columns.items():
            self.buffer(name).raw.extend(column)
        if len(columns) != len(self.features):
            for name, buffer in self.features.items():
                if name not in columns:
                    buffer.raw.extend([None] * n)
        self.timestamps.extend(timestamps)
        self.rows += n
        self.pending += n

    def span(self) -> tuple[float, float]:
        """Earliest and latest finite timestamp of the window's rows (0.0 when none)."""
        stamps = np.array(self.timestamps, dtype=np.float64)
        stamps = stamps[np.isfinite(stamps)]
        if not stamps.size:
            return 0.0, 0.0
        return float(stamps.min()), float(stamps.max())

    def to_state(self) -> dict[str, Any]:
        """The window as JSON-safe data; :meth:`from_state` restores it exactly."""
        return {
            "index": self.index,
            "first_row": self.first_row,
            "rows": self.rows,
            "pending": self.pending,
            "timestamps": [_json_float(t) for t in self.timestamps],
            "features": {name: buffer.to_state() for name, buffer in self.features.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Window:
        """The window :meth:`to_state` described."""
        window = cls(int(state["index"]), int(state["first_row"]))
        window.rows, window.pending = int(state["rows"]), int(state["pending"])
        window.timestamps = [math.nan if t is None else float(t) for t in state["timestamps"]]
        window.features = {
            str(name): FeatureBuffer.from_state(data) for name, data in state["features"].items()
        }
        return window


class Windows:
    """The windowing of one model: the open window and where the next one starts.

    :meth:`route` says which rows of a batch go to which window; the caller closes the
    open window before filling one with another index (:meth:`take`), and closes a count
    window as soon as it is :meth:`full`.
    """

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.open: Window | None = None
        self.next_index: int | None = 0 if spec.kind == "count" else None
        self.next_row = 0

    def route(self, timestamps: NDArray[np.float64]) -> tuple[list[Segment], int]:
        """The batch's rows per window, in window order, and how many rows are late."""
        if self.spec.kind == "count":
            return self._route_count(timestamps.size), 0
        return self._route_time(timestamps)

    def start(self, index: int) -> Window:
        """The open window with ``index``, opening it when none is open."""
        if self.open is None:
            self.open = Window(index, self.next_row)
        return self.open

    def take(self) -> Window:
        """Close the open window: it is returned and later rows go to later windows."""
        window = self.open
        assert window is not None, "no open window to close"
        self.open = None
        self.next_index = window.index + 1
        self.next_row = window.first_row + window.rows
        return window

    def full(self) -> bool:
        """Whether the open window is a count window holding ``size`` rows."""
        return (
            self.spec.kind == "count"
            and self.open is not None
            and (self.open.rows >= self.spec.size)
        )

    def expired(self, now: float) -> bool:
        """Whether the open window is a time window that ends at or before ``now``."""
        if self.spec.kind != "time" or self.open is None:
            return False
        return now >= self.spec.bounds(self.open.index)[1]

    def bounds(self, window: Window) -> tuple[float, float]:
        """The window's bounds: its time span, or its earliest and latest timestamps."""
        if self.spec.kind == "time":
            return self.spec.bounds(window.index)
        return window.span()

    def _route_count(self, n: int) -> list[Segment]:
        size = int(self.spec.size)
        index = self.open.index if self.open is not None else self.next_index
        assert index is not None
        room = size - (self.open.rows if self.open is not None else 0)
        segments, start = [], 0
        while start < n:
            stop = min(n, start + room)
            segments.append(Segment(index, slice(start, stop)))
            start, index, room = stop, index + 1, size
        return segments

    def _route_time(self, ts: NDArray[np.float64]) -> tuple[list[Segment], int]:
        if self.open is not None and ts.size:
            start, end = self.spec.bounds(self.open.index)
            if ts.size == 1:
                low = high = float(ts[0])
            else:
                low, high = float(ts.min()), float(ts.max())
            if start <= low and high < end:  # the common case: all rows in the open window
                return [Segment(self.open.index, slice(0, ts.size))], 0
        index = self._time_index(ts)
        floor = self.open.index if self.open is not None else self.next_index
        running = np.maximum.accumulate(np.maximum(index, -np.inf if floor is None else floor))
        kept = np.flatnonzero((index == running) & np.isfinite(index))
        return _segments(running[kept], kept), ts.size - kept.size

    def _time_index(self, ts: NDArray[np.float64]) -> NDArray[np.float64]:
        return time_indices(float(self.spec.size), ts)

    def to_state(self) -> dict[str, Any]:
        """The windowing as JSON-safe data; :meth:`from_state` restores it exactly."""
        return {
            "spec": self.spec.to_dict(),
            "open": None if self.open is None else self.open.to_state(),
            "next_index": self.next_index,
            "next_row": self.next_row,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Windows:
        """The windowing :meth:`to_state` described."""
        windows = cls(WindowSpec.from_dict(state["spec"]))
        windows.open = None if state["open"] is None else Window.from_state(state["open"])
        next_index = state["next_index"]
        windows.next_index = None if next_index is None else int(next_index)
        windows.next_row = int(state["next_row"])
        return windows


def time_indices(size: float, ts: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each time's window index as a float, exact at the boundaries; -inf without time.

    >>> time_indices(10.0, np.array([0.0, 9.999, 10.0, -0.5, np.nan])).tolist()
    [0.0, 0.0, 1.0, -1.0, -inf]
    """
    with np.errstate(invalid="ignore"):
        index = np.floor(ts / size)
        index = np.where(ts < index * size, index - 1, index)
        index = np.where(ts >= (index + 1) * size, index + 1, index)
    index[~np.isfinite(ts)] = -np.inf
    return index


def _segments(windows: NDArray[np.float64], positions: NDArray[np.intp]) -> list[Segment]:
    """Group kept rows (their window indices non-decreasing) into one segment per window."""
    cuts = np.flatnonzero(np.diff(windows)) + 1
    starts, stops = [0, *cuts.tolist()], [*cuts.tolist(), positions.size]
    segments = []
    for start, stop in zip(starts, stops, strict=True):
        if start == stop:
            continue
        rows = positions[start:stop]
        first, last = int(rows[0]), int(rows[-1])
        contiguous = last - first == stop - start - 1
        segments.append(
            Segment(int(windows[start]), slice(first, last + 1) if contiguous else rows)
        )
    return segments
