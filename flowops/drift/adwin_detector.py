"""ADWIN on a monitor's numeric features: one detector per feature, a finding per change.

Each chunk of a feature's finite values goes to its :class:`~flowops.drift.adwin.ADWIN`
through one ``update_many``. A change point's finding has ``statistic = |mean(W0) -
mean(W1)|``, where ``W1`` is what ADWIN keeps of its window at the change and ``W0``
what it drops (``n_reference`` and ``n_current`` are their sizes), ``pvalue = None``,
``threshold = delta``, severity ``"warning"``, ``window_index`` the running row index of
the value where the change was detected, and as window bounds that row's timestamp.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from flowops.drift.adwin import ADWIN
from flowops.drift.finding import Chunk, ClosedWindow, Finding

__all__ = ["AdwinDetector"]


class _Change(NamedTuple):
    position: int  # in the chunk
    statistic: float
    dropped: int
    kept: int


class AdwinDetector:
    """One ADWIN per numeric feature, fed each chunk with one ``update_many``."""

    def __init__(self, model: str, version: str, delta: float) -> None:
        ADWIN(delta)  # checks delta
        self.model, self.version, self.delta = model, version, float(delta)
        self.adwins: dict[str, ADWIN] = {}

    def observe(self, chunk: Chunk) -> list[Finding]:
        """A finding per change point in the chunk."""
        adwin = self.adwins.get(chunk.feature) or ADWIN(self.delta)
        adwin, changes = _changes(adwin, chunk.values)
        self.adwins[chunk.feature] = adwin
        return [self._finding(chunk, change) for change in changes]

    def close(self, window: ClosedWindow) -> list[Finding]:
        """ADWIN looks at values only."""
        return []

    def _finding(self, chunk: Chunk, change: _Change) -> Finding:
        stamp = float(chunk.timestamps[change.position])
        stamp = stamp if math.isfinite(stamp) else 0.0
        return Finding(
            model=self.model,
            version=self.version,
            feature=chunk.feature,
            test="adwin",
            statistic=change.statistic,
            pvalue=None,
            threshold=self.delta,
            window_index=int(chunk.rows[change.position]),
            window_start=stamp,
            window_end=stamp,
            n_reference=change.dropped,
            n_current=change.kept,
            severity="warning",
            reference=chunk.reference,
        )

    def to_state(self) -> dict[str, Any]:
        """Every feature's ADWIN state."""
        return {name: adwin.to_state() for name, adwin in self.adwins.items()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take the ADWINs :meth:`to_state` described."""
        self.adwins = {str(name): ADWIN.from_state(data) for name, data in state.items()}


def _changes(adwin: ADWIN, values: NDArray[np.float64]) -> tuple[ADWIN, list[_Change]]:
    """Feed ``values``; the detector after them and every change point with its statistic.

    ADWIN reports where a change was found, not what it cut: at a change the values are
    fed again from the state before, up to the change point, to read what ADWIN kept.
    ADWIN gives the same detections however its input is split, so this changes nothing.
    """
    changes, start = [], 0
    while start < values.size:
        before = adwin.to_state()
        hits = adwin.update_many(values[start:])
        if not hits.size:
            break
        adwin = ADWIN.from_state(before)
        stop = start + int(hits[0]) + 1
        changes.append(_cut(adwin, values[start:stop], stop - 1))
        start = stop
    return adwin, changes


def _cut(adwin: ADWIN, piece: NDArray[np.float64], position: int) -> _Change:
    """Feed ``piece``, whose last value is a change point; the means ADWIN cut apart."""
    n, total = (0, 0.0) if adwin.drift_detected else (adwin.width, adwin.estimation * adwin.width)
    adwin.update_many(piece)
    n, total = n + piece.size, total + float(piece.sum())
    kept, kept_total = adwin.width, adwin.estimation * adwin.width
    dropped = n - kept
    if not (dropped and kept):
        return _Change(position, 0.0, dropped, kept)
    gap = abs((total - kept_total) / dropped - kept_total / kept)
    return _Change(position, gap, dropped, kept)
