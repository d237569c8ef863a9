"""Stage 1 of merged windows: one traffic partition's rows reduced to window partials.

No I/O here. A :class:`PartitionReducer` takes the rows of the time-windowed models that
have a reference profile, as the partition's reader decodes them, and keeps one
:class:`~flowops.drift.partial.WindowPartial` a (model, version, window) until
:meth:`PartitionReducer.flush`, which turns them into one
:class:`~flowops.events.partials.Flush` a model: the partials of the offsets read since
the last flush, and the partition's watermark.

**The watermark** is the latest event time the partition has carried (or, once its reader
has caught up with the partition's end, the clock, whichever is later). Each flush
carries it, and the reader sends it on its own as well (to every merge partition):
the merge stage closes a window once every traffic partition is past its end plus
``streams.grace``, as Kafka Streams and Flink do with the least watermark of their
inputs. So a window holds every row of every partition that is less than ``grace``
out of order within its partition, however far the partitions are apart, and closes
with the same rows as it would were the traffic on one partition.

>>> import numpy as np
>>> from flowops.drift import Profile
>>> from flowops.drift.partial import Prepared
>>> prepared = Prepared.from_profile(Profile.from_columns({"x": np.arange(100.0)}))
>>> reducer = PartitionReducer(source=3, start=0)
>>> reducer.add(prepared, 10.0, "m", "1", np.array([1.0, 12.0, 15.0]), {"x": [1, 2, 3]})
0
>>> [flush] = reducer.flush(end=3)
>>> flush.source, flush.start, flush.end, flush.watermark
(3, 0, 3, 15.0)
>>> [(p.window, p.rows) for p in flush.partials]
[(0, 1), (1, 2)]
>>> reducer.flush(end=5), reducer.watermark  # no rows: only the watermark goes out
([], 15.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flowops.drift.partial import Prepared, WindowPartial, reduce_rows
from flowops.drift.window import time_indices
from flowops.events.partials import Flush

__all__ = ["PartitionReducer"]

Column = Sequence[object] | NDArray[Any]


class PartitionReducer:
    """One traffic partition's open partials, its watermark, and what it owes the merger."""

    def __init__(self, source: int, start: int | None = None) -> None:
        self.source = source
        self.start = start  # the first offset not yet flushed
        self.watermark = -math.inf
        self._open: dict[tuple[str, str, int, str], WindowPartial] = {}
        self._sizes: dict[str, float] = {}

    def add(
        self,
        prepared: Prepared,
        size: float,
        model: str,
        version: str,
        timestamps: NDArray[np.float64],
        columns: Mapping[str, Column],
    ) -> int:
        """Reduce rows of one model version; returns how many had no usable time."""
        index = time_indices(size, timestamps)
        timed = np.isfinite(index)
        self._sizes[model] = size
        if not timed.any():
            return int(timestamps.size)
        self.watermark = max(self.watermark, float(timestamps[timed].max()))
        first, last = int(index[timed].min()), int(index[timed].max())
        if first == last and timed.all():  # the common case: one window
            self._keep(reduce_rows(prepared, model, version, first, timestamps, columns))
        else:
            for window in np.unique(index[timed]).astype(np.int64).tolist():
                rows = np.flatnonzero(index == window)
                part = {name: _take(column, rows) for name, column in columns.items()}
                self._keep(reduce_rows(prepared, model, version, window, timestamps[rows], part))
        return int(timestamps.size - np.count_nonzero(timed))

    def requests(
        self,
        prepared: Prepared,
        size: float,
        model: str,
        version: str,
        timestamps: NDArray[np.float64],
        failed: NDArray[np.bool_],
    ) -> None:
        """Count requests of one model version, answered or not, in their windows' partials
        (the merged error rate): a window of failed requests only is still a window."""
        index = time_indices(size, timestamps)
        timed = np.isfinite(index)
        self._sizes[model] = size
        if not timed.any():
            return
        self.watermark = max(self.watermark, float(timestamps[timed].max()))
        windows, where = np.unique(index[timed].astype(np.int64), return_inverse=True)
        totals = np.bincount(where)
        errors = np.bincount(where, weights=failed[timed].astype(np.float64))
        for window, total, error in zip(windows.tolist(), totals, errors, strict=True):
            counted = WindowPartial(
                model, version, window, prepared.token, 0, math.inf, -math.inf,
                requests=int(total), failed=int(error),
            )  # fmt: skip
            self._keep(counted)

    def flush(self, end: int, *, clock: float | None = None) -> list[Flush]:
        """One flush a model with partials, of offsets ``[start, end)``; ``clock`` moves the
        watermark on (give it once the reader has caught up with the partition)."""
        if clock is not None:
            self.watermark = max(self.watermark, clock)
        start = end if self.start is None else self.start
        by_model: dict[str, list[WindowPartial]] = {}
        for (model, *_), partial in sorted(self._open.items()):
            by_model.setdefault(model, []).append(partial)
        flushes = [
            Flush(model, self.source, start, end, self.watermark, self._sizes[model], tuple(ps))
            for model, ps in by_model.items()
        ]
        self._open.clear()
        self.start = end
        return flushes

    def _keep(self, partial: WindowPartial) -> None:
        held = self._open.get(partial.key)
        self._open[partial.key] = partial if held is None else held.merge(partial)


def _take(column: Column, rows: NDArray[np.intp]) -> Column:
    if isinstance(column, np.ndarray):
        return column[rows]
    return [column[i] for i in rows.tolist()]
