"""Stage 2 of merged windows: flushes of every traffic partition merged into whole windows.

No I/O here. A :class:`Merger` holds what one merge partition knows: the watermark of
every traffic partition (:meth:`Merger.watermark`, and the one each flush carries) and a
:class:`ModelMerger` a model. It

* **drops replays**: a flush of a model that starts below the offset merged up to for its
  partition covers rows held already (a reader that restarted read them again; its
  flushes repeat the earlier ones offset for offset, see ``docs/streaming.md``);
* **merges** each partial into its window (model version, window index);
* **closes** a window once every traffic partition's watermark is at or past its end plus
  ``grace`` (the least watermark of all, as Kafka Streams and Flink close windows), in
  window order, as a :class:`MergedWindow`; a partition not heard from yet holds every
  window open (a reader that has caught up sends the clock, so an idle partition does not);
* **tests the error rate** of each window it closes (its requests and failed ones, from
  every partition) against the last windows of its version
  (:class:`~flowops.drift.error_rate.ErrorRate`, kept in the state): a jump is
  :attr:`MergedWindow.jump`;
* **counts late rows**: rows of a window that has closed, or of one below the latest
  closed window of its version, are counted in ``late_rows`` and not merged anywhere, so
  no window closes twice and no row lands in a wrong window. Rows of an older window
  that never opened (a backfill, a producer whose clock is behind) open it, and it
  closes at once with the rows of that flush, as the stream worker's per-partition
  windows always did.

A window's partials must share their reference (the profile they were reduced on); rows
reduced on another one (a profile changed while the window was open) are counted in
``mismatched_rows`` and left out. A model's state (:meth:`ModelMerger.to_state`) is bytes,
for a Faust table's changelog; watermarks are not kept: readers send them all the time.

>>> import numpy as np
>>> from flowops.drift import Profile
>>> from flowops.drift.partial import Prepared, reduce_rows
>>> prepared = Prepared.from_profile(Profile.from_columns({"x": np.arange(100.0)}))
>>> def flush(source, start, end, watermark, *times):
...     ts = np.array(times, dtype=np.float64)
...     partials = (reduce_rows(prepared, "m", "1", 0, ts, {"x": ts}),) if times else ()
...     return Flush("m", source, start, end, watermark, 10.0, partials)
>>> merger = Merger(partitions=2, grace=1.0)
>>> merger.add(flush(0, 0, 2, 12.0, 1.0, 4.0))  # partition 1 not heard from yet
[]
>>> merger.add(flush(1, 0, 1, 9.0, 9.0)), merger.watermark(1, 10.5)
([], [])
>>> [(w.window, w.partial.rows) for w in merger.watermark(1, 11.0)]
[(0, 3)]
>>> merger.add(flush(1, 1, 2, 11.5, 9.5)), merger.models["m"].late_rows  # 0 has closed
([], 1)
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from flowops.drift.error_rate import ErrorRate, ErrorRateJump
from flowops.drift.partial import WindowPartial
from flowops.drift.rules import ErrorRateLevels
from flowops.events.partials import Flush, decode_partial, encode_partial

__all__ = ["MergedWindow", "Merger", "ModelMerger"]

_STATE_FORMAT = 1


@dataclass(frozen=True)
class MergedWindow:
    """A closed window: its bounds, all its rows' counts, the partitions that carried them."""

    model: str
    version: str
    window: int
    start: float
    end: float
    partial: WindowPartial
    sources: tuple[int, ...]
    jump: ErrorRateJump | None = None  # the window's error rate jumped above its level


@dataclass
class _Open:
    partial: WindowPartial
    size: float
    sources: set[int] = field(default_factory=set)

    @property
    def end(self) -> float:
        return (self.partial.window + 1) * self.size


class ModelMerger:
    """The open windows of one model and what each partition has sent (see the module)."""

    def __init__(
        self, model: str, *, grace: float, error_rate: ErrorRateLevels | None = None
    ) -> None:
        self.model = model
        self.grace = float(grace)
        self.error_rate = error_rate or ErrorRateLevels()  # the configuration's, not saved
        self.merged_to: dict[int, int] = {}  # partition -> first offset not merged
        self.closed_to: dict[str, int] = {}  # version -> latest closed window index
        self.late_rows = 0
        self.mismatched_rows = 0
        self.replays = 0
        self._open: dict[tuple[str, int], _Open] = {}
        self.rates: dict[str, ErrorRate] = {}  # version -> its merged windows' error rate

    @property
    def open_windows(self) -> list[tuple[str, int]]:
        """The (version, window) pairs open, in order."""
        return sorted(self._open)

    def add(self, flush: Flush) -> None:
        """Merge a flush's partials, unless it is a replay."""
        if flush.start < self.merged_to.get(flush.source, 0):
            self.replays += 1
            return
        self.merged_to[flush.source] = flush.end
        for partial in flush.partials:
            self._merge(partial, flush.size, flush.source)

    def _merge(self, partial: WindowPartial, size: float, source: int) -> None:
        key = (partial.version, partial.window)
        held = self._open.get(key)
        if held is None:
            if partial.window <= self.closed_to.get(partial.version, -math.inf):
                self.late_rows += partial.rows
                return
            held = self._open[key] = _Open(partial, size)
        elif held.partial.reference != partial.reference:
            self.mismatched_rows += partial.rows
            return
        else:
            held.partial = held.partial.merge(partial)
        held.sources.add(source)

    def close(self, low: float) -> list[MergedWindow]:
        """Close the windows whose end plus grace is at or below ``low``, in order."""
        ready = [key for key, held in sorted(self._open.items()) if held.end + self.grace <= low]
        return [self._take(version, window) for version, window in ready]

    def _take(self, version: str, window: int) -> MergedWindow:
        held = self._open.pop((version, window))
        self.closed_to[version] = max(self.closed_to.get(version, window), window)
        sources = tuple(sorted(held.sources))
        start = window * held.size
        partial = held.partial
        rate = self.rates.get(version)
        if rate is None:
            rate = self.rates[version] = ErrorRate(self.error_rate)
        jump = rate.close(window, start, held.end, total=partial.requests, errors=partial.failed)
        return MergedWindow(self.model, version, window, start, held.end, partial, sources, jump)

    def to_state(self) -> bytes:
        """The merger as bytes; :meth:`from_state` restores it exactly."""
        windows = [
            [
                held.size,
                sorted(held.sources),
                base64.b64encode(encode_partial(held.partial)).decode(),
            ]
            for _, held in sorted(self._open.items())
        ]
        return orjson.dumps(
            {
                "format": _STATE_FORMAT,
                "model": self.model,
                "grace": self.grace,
                "merged_to": sorted(self.merged_to.items()),
                "closed_to": self.closed_to,
                "counts": [self.late_rows, self.mismatched_rows, self.replays],
                "windows": windows,
                "rates": {version: rate.to_state() for version, rate in self.rates.items()},
            }
        )

    @classmethod
    def from_state(cls, data: bytes, *, error_rate: ErrorRateLevels | None = None) -> ModelMerger:
        """The merger :meth:`to_state` wrote, judging error rates by ``error_rate`` (the
        levels are the configuration's, not part of the state)."""
        state: dict[str, Any] = orjson.loads(data)
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"unsupported merger state format {state.get('format')!r}")
        merger = cls(state["model"], grace=state["grace"], error_rate=error_rate)
        merger.merged_to = {int(p): int(end) for p, end in state["merged_to"]}
        merger.closed_to = {str(v): int(i) for v, i in state["closed_to"].items()}
        merger.late_rows, merger.mismatched_rows, merger.replays = state["counts"]
        for version, rate in state.get("rates", {}).items():  # none in older states
            merger.rates[str(version)] = ErrorRate(merger.error_rate)
            merger.rates[str(version)].load_state(rate)
        for size, sources, encoded in state["windows"]:
            partial = decode_partial(base64.b64decode(encoded))
            merger._open[partial.version, partial.window] = _Open(partial, size, set(sources))
        return merger


class Merger:
    """The watermarks of all ``partitions`` traffic partitions and a merger a model."""

    def __init__(
        self, partitions: int = 0, *, grace: float, error_rate: ErrorRateLevels | None = None
    ) -> None:
        self.partitions = partitions  # of the traffic topic; a watermark may tell more
        self.grace = float(grace)
        self.error_rate = error_rate or ErrorRateLevels()
        self.watermarks: dict[int, float] = {}
        self.models: dict[str, ModelMerger] = {}

    @property
    def low(self) -> float:
        """The least watermark of all traffic partitions (-inf until each is heard)."""
        if not self.partitions or len(self.watermarks) < self.partitions:
            return -math.inf
        return min(self.watermarks.values())

    def add(self, flush: Flush) -> list[MergedWindow]:
        """Take a flush: its partials, then its watermark; the windows that close."""
        model = self.models.get(flush.model)
        if model is None:
            model = self.models[flush.model] = ModelMerger(
                flush.model, grace=self.grace, error_rate=self.error_rate
            )
        model.add(flush)
        return self.watermark(flush.source, flush.watermark)

    def watermark(self, source: int, watermark: float, partitions: int = 0) -> list[MergedWindow]:
        """A partition's watermark (it never goes back), and perhaps how many traffic
        partitions there are; the windows that close."""
        self.partitions = max(self.partitions, partitions)
        self.watermarks[source] = max(self.watermarks.get(source, -math.inf), watermark)
        low = self.low
        if low == -math.inf:
            return []
        return [window for model in self.models.values() for window in model.close(low)]
