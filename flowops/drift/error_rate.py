"""A jump in a model's error rate against its recent level, window by window.

A request that the model server rejected (a status outside 2xx) or whose body could not
be read is no data for drift, but a rising share of them is news of its own: clients
sending what the model cannot take, or a model version failing. :class:`ErrorRate`
keeps the error counts of a model's last ``history`` windows and tests each closing
window against them with a one-sided two-proportion z-test (is this window's rate
higher than the pooled rate of the windows before?). As the window tests do, it needs
both significance and size: a jump is reported when the p-value is below ``alpha`` and
the rate rose by at least ``min_increase`` (5 percentage points by default; 0.1% more
errors at a million requests is certain and harmless), and it is ``"critical"`` from
``critical_increase`` (20 points: a fifth more of the calls failing) on. The levels are
an :class:`~flowops.drift.rules.ErrorRateLevels` (the ``drift.error_rate`` settings,
through :func:`~flowops.drift.rules.rules_from_settings`).

The window that jumped joins the history like any other, so a rate that stays high
becomes the new level after ``history`` windows and stops alerting; the alert is for the
change. Windows with fewer than ``min_requests`` requests are neither tested nor kept.

In the stream, :class:`ErrorRateWindows` cuts a model version's requests into the
monitor's windows (by event time, or by count) and turns each jump into a
:class:`~flowops.drift.finding.Finding` with ``test: "error_rate"`` and ``feature:
"requests"``.

>>> rates = ErrorRate(ErrorRateLevels(history=3))
>>> [rates.close(i, float(i), float(i + 1), total=1_000, errors=10) for i in range(3)]
[None, None, None]
>>> jump = rates.close(3, 3.0, 4.0, total=1_000, errors=310)
>>> round(jump.jump, 2), jump.severity, jump.pvalue < 1e-12, jump.n_baseline
(0.3, 'critical', True, 3000)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from flowops.drift.finding import Finding
from flowops.drift.rules import ErrorRateLevels, Severity
from flowops.drift.window import WindowSpec
from flowops.errors import InputError

__all__ = [
    "FEATURE",
    "TEST",
    "ErrorRate",
    "ErrorRateJump",
    "ErrorRateWindows",
    "error_counts",
    "jump_finding",
]

TEST: Final = "error_rate"
"""The test name an error-rate alert carries."""
FEATURE: Final = "requests"
"""The feature an error-rate alert names: the requests, not any one input."""


@dataclass(frozen=True)
class ErrorRateJump:
    """One window whose error rate jumped above its recent level."""

    window_index: int
    window_start: float
    window_end: float
    rate: float  # the window's share of failed requests
    baseline_rate: float  # the pooled share over the windows before it
    jump: float  # rate - baseline_rate
    pvalue: float  # one-sided two-proportion z-test
    n_current: int  # the window's requests
    n_baseline: int  # the requests of the windows before it
    severity: Severity


class ErrorRate:
    """A model's error rate, window by window, against its last ``levels.history`` windows."""

    def __init__(self, levels: ErrorRateLevels | None = None) -> None:
        self._levels = levels or ErrorRateLevels()
        self._windows: deque[tuple[int, int]] = deque(maxlen=self._levels.history)

    @property
    def levels(self) -> ErrorRateLevels:
        """The test's levels. Setting them keeps the remembered windows (the newest
        ``history`` of them): a worker restored from saved state takes the levels of the
        configuration it restarts under, as it takes its drift rules."""
        return self._levels

    @levels.setter
    def levels(self, levels: ErrorRateLevels) -> None:
        self._levels = levels
        self._windows = deque(self._windows, maxlen=levels.history)

    def close(
        self, index: int, start: float, end: float, *, total: int, errors: int
    ) -> ErrorRateJump | None:
        """Test a closed window's ``errors`` of ``total`` requests, then remember it."""
        if not 0 <= errors <= total:
            raise InputError(f"errors must lie in [0, total], got {errors} of {total}")
        if total < self._levels.min_requests:
            return None
        found = self._test(index, start, end, total, errors)
        self._windows.append((total, errors))
        return found

    def _test(
        self, index: int, start: float, end: float, total: int, errors: int
    ) -> ErrorRateJump | None:
        base_total = sum(n for n, _ in self._windows)
        if base_total == 0:
            return None
        base_errors = sum(e for _, e in self._windows)
        rate, base = errors / total, base_errors / base_total
        jump = rate - base
        levels = self._levels
        if jump < levels.min_increase:
            return None
        pvalue = _one_sided_pvalue(errors, total, base_errors, base_total)
        if pvalue >= levels.alpha:
            return None
        severity: Severity = "critical" if jump >= levels.critical_increase else "warning"
        return ErrorRateJump(
            index, start, end, rate, base, jump, pvalue, total, base_total, severity
        )

    def to_state(self) -> dict[str, Any]:
        """The remembered windows, JSON-safe."""
        return {"windows": [list(window) for window in self._windows]}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take the windows :meth:`to_state` gave."""
        self._windows.clear()
        self._windows.extend((int(n), int(e)) for n, e in state["windows"])


class ErrorRateWindows:
    """One model version's requests cut into windows, each closed into an :class:`ErrorRate`.

    Windows follow ``spec``: time windows by event time (window ``i`` is ``[i size, (i
    + 1) size)``), closed when a request of a later window arrives or when
    :meth:`advance` passes their end; count windows of ``size`` requests. A request of a
    window already closed is left out (counted in ``late``). A jump is a
    :class:`~flowops.drift.finding.Finding` of ``partition`` (the traffic partition whose
    requests these are: its windows are the partition's, so two partitions' window 4 have
    different alert ids), with the window's error rate as its statistic.

    >>> windows = ErrorRateWindows("m", "1", WindowSpec("count", 200))
    >>> windows.add(np.zeros(600), np.arange(600) % 50 == 0)
    []
    >>> found = windows.add(np.zeros(200), np.arange(200) < 80)
    >>> [(f.test, f.feature, f.window_index) for f in found]
    [('error_rate', 'requests', 3)]
    """

    def __init__(
        self,
        model: str,
        version: str,
        spec: WindowSpec,
        *,
        rate: ErrorRate | None = None,
        partition: int | None = None,
    ) -> None:
        self.model, self.version, self.spec = model, version, spec
        self.rate = rate or ErrorRate()
        self.partition = partition
        self.late = 0
        self._open: dict[int, list[int]] = {}  # window index -> [requests, errors]
        self._closed_to = -1  # windows up to this index are closed
        self._count = 0  # requests seen (count windows)

    def add(self, timestamps: NDArray[np.float64], failed: NDArray[np.bool_]) -> list[Finding]:
        """Count requests (their event times, and which failed); the windows' jumps."""
        if self.spec.kind == "count":
            index = (self._count + np.arange(timestamps.size)) // int(self.spec.size)
            self._count += int(timestamps.size)
        else:
            usable = np.isfinite(timestamps)
            self.late += int(timestamps.size - usable.sum())
            index = np.floor(timestamps[usable] / self.spec.size).astype(np.int64)
            failed = failed[usable]
        on_time = index > self._closed_to
        self.late += int(on_time.size - on_time.sum())
        for i, total, errors in _tally(index[on_time], failed[on_time]):
            held = self._open.setdefault(i, [0, 0])
            held[0] += total
            held[1] += errors
        if not self._open:
            return []
        newest = max(self._open)
        full = self.spec.kind == "count" and self._open[newest][0] >= self.spec.size
        return self._close_to(newest if full else newest - 1)

    def advance(self, now: float) -> list[Finding]:
        """Close the time windows that end at or before ``now``."""
        if self.spec.kind != "time" or not self._open or not math.isfinite(now):
            return []
        return self._close_to(math.floor(now / self.spec.size) - 1)

    def _close_to(self, last: int) -> list[Finding]:
        findings = []
        for index in sorted(i for i in self._open if i <= last):
            total, errors = self._open.pop(index)
            start, end = self._bounds(index)
            jump = self.rate.close(index, start, end, total=total, errors=errors)
            if jump is not None:
                findings.append(self._finding(jump))
        self._closed_to = max(self._closed_to, last)
        return findings

    def _bounds(self, index: int) -> tuple[float, float]:
        if self.spec.kind == "time":
            return self.spec.bounds(index)
        return float(index * self.spec.size), float((index + 1) * self.spec.size)

    def _finding(self, jump: ErrorRateJump) -> Finding:
        return jump_finding(
            jump,
            self.model,
            self.version,
            threshold=self.rate.levels.alpha,
            partition=self.partition,
        )

    def to_state(self) -> dict[str, Any]:
        """The open windows and the rate's history, JSON-safe."""
        return {
            "open": [[index, *counts] for index, counts in sorted(self._open.items())],
            "closed_to": self._closed_to,
            "count": self._count,
            "late": self.late,
            "rate": self.rate.to_state(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take the state :meth:`to_state` gave."""
        self._open = {int(i): [int(n), int(e)] for i, n, e in state["open"]}
        self._closed_to, self._count = int(state["closed_to"]), int(state["count"])
        self.late = int(state["late"])
        self.rate.load_state(state["rate"])


def jump_finding(
    jump: ErrorRateJump,
    model: str,
    version: str,
    *,
    threshold: float,
    partition: int | None = None,
) -> Finding:
    """The alert of a jump: ``test: "error_rate"``, ``feature: "requests"``, the window's
    rate as the statistic, the baseline's requests as ``n_reference``; ``partition`` for
    windows kept per traffic partition, None for windows merged across partitions.

    >>> jump = ErrorRateJump(4, 40.0, 50.0, 0.3, 0.01, 0.29, 1e-9, 500, 2_000, "critical")
    >>> finding = jump_finding(jump, "m", "1", threshold=0.001)
    >>> finding.test, finding.feature, finding.statistic, finding.partition
    ('error_rate', 'requests', 0.3, None)
    """
    return Finding(
        model=model,
        version=version,
        feature=FEATURE,
        test=TEST,
        statistic=jump.rate,
        pvalue=jump.pvalue,
        threshold=threshold,
        window_index=jump.window_index,
        window_start=jump.window_start,
        window_end=jump.window_end,
        n_reference=jump.n_baseline,
        n_current=jump.n_current,
        severity=jump.severity,
        reference="first_window",
        partition=partition,
    )


def _tally(index: NDArray[np.int64], failed: NDArray[np.bool_]) -> list[tuple[int, int, int]]:
    """(window, requests, errors) for each window index present."""
    if not index.size:
        return []
    first = int(index[0])
    if first == index[-1] and (index == first).all():  # the common case: one window
        return [(first, int(index.size), int(np.count_nonzero(failed)))]
    windows, where = np.unique(index, return_inverse=True)
    totals = np.bincount(where)
    errors = np.bincount(where, weights=failed.astype(np.float64)).astype(np.int64)
    return list(zip(windows.tolist(), totals.tolist(), errors.tolist(), strict=True))


def error_counts(status: Any, parse_errors: Any = None) -> tuple[int, int]:
    """Requests and failed ones among status codes (and parse errors): not 2xx, or unread.

    >>> import numpy as np
    >>> error_counts(np.array([200, 201, 400, 503]), [None, "not JSON", None, None])
    (4, 3)
    """
    codes = np.asarray(status)
    failed = (codes < 200) | (codes >= 300)
    if parse_errors is not None:
        failed |= np.array([error is not None for error in parse_errors], dtype=bool)
    return int(codes.size), int(failed.sum())


def _one_sided_pvalue(errors: int, total: int, base_errors: int, base_total: int) -> float:
    """P(a rate this much higher | one common rate), by the pooled two-proportion z-test."""
    pooled = (errors + base_errors) / (total + base_total)
    if pooled in (0.0, 1.0):
        return 1.0
    spread = math.sqrt(pooled * (1 - pooled) * (1 / total + 1 / base_total))
    z = (errors / total - base_errors / base_total) / spread
    return 0.5 * math.erfc(z / math.sqrt(2))
