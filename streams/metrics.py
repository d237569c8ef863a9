"""The stream worker's Prometheus metrics, served on its ``/metrics`` page.

Names follow Prometheus conventions: ``flowops_<thing>``, base units, ``_total`` on
counters. Each worker has its own registry, so two apps in one process (tests) do not
collide, and nothing lands in prometheus-client's global one.

============================================  =========  =================================
metric                                        type       labels
============================================  =========  =================================
``flowops_stream_events_total``               counter    (rows handed to the monitors)
``flowops_stream_rejected_total``             counter    reason (``bad_json``, ...)
``flowops_stream_requests_total``             counter    model (every traffic row)
``flowops_stream_rejected_requests_total``    counter    model (rows with a non-2xx status)
``flowops_stream_unparsable_total``           counter    model (rows with a parse_error)
``flowops_stream_excluded_values_total``      counter    model, feature (NaN, inf, None)
``flowops_stream_windows_closed_total``       counter
``flowops_drift_psi``                         gauge      model, feature (last window)
``flowops_drift_ks_pvalue``                   gauge      model, feature (last window)
``flowops_drift_alerts_total``                counter    model, test
``flowops_stream_consumer_lag``               gauge      topic, partition (messages)
``flowops_stream_partitions``                 gauge      topic (partitions this worker reads)
``flowops_stream_checkpoint_seconds``         histogram  (state written, offsets committed)
============================================  =========  =================================

>>> metrics = StreamMetrics()
>>> metrics.rejected("bad_json")
>>> b'flowops_stream_rejected_total{reason="bad_json"} 1.0' in metrics.render()
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from flowops.drift import MonitorStats

__all__ = ["CONTENT_TYPE", "LateLog", "StatsDelta", "StreamMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4"
"""The text exposition format Prometheus scrapes (aiohttp adds the charset)."""


class StatsDelta:
    """Turns a monitor's running :class:`MonitorStats` into increments for counters.

    A restored monitor brings the counts of the worker that saved it; the first
    :meth:`take` only sets the baseline, so a worker's counters count its own work.
    """

    __slots__ = ("_excluded", "_late", "_windows")

    def __init__(self, stats: MonitorStats) -> None:
        self._windows = stats.windows_closed
        self._late = stats.late
        self._excluded = dict(stats.excluded)

    def take(self, stats: MonitorStats) -> tuple[int, int, dict[str, int]]:
        """Windows closed, late rows and values excluded (by feature) since the last call."""
        windows, late = stats.windows_closed - self._windows, stats.late - self._late
        excluded = {
            feature: count - self._excluded.get(feature, 0)
            for feature, count in stats.excluded.items()
            if count != self._excluded.get(feature, 0)
        }
        self._windows, self._late = stats.windows_closed, stats.late
        self._excluded = dict(stats.excluded)
        return windows, late, excluded


class LateLog:
    """Late rows by model, told at most once every ``interval`` seconds (a row at a time
    would flood the log when a producer's clock is off).

    >>> late = LateLog(interval=60.0)
    >>> late.note("credit", 3, now=0.0), late.note("credit", 2, now=30.0)
    (None, None)
    >>> late.note("iris", 1, now=61.0)
    'late rows in the last 61 s, left out of every window: credit 5, iris 1'
    >>> late.note("credit", 0, now=200.0) is None
    True
    """

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._counts: dict[str, int] = {}
        self._since: float | None = None

    def note(self, model: str, rows: int, *, now: float) -> str | None:
        """Count ``rows`` late rows of ``model``; the line to log when one is due."""
        if rows:
            self._counts[model] = self._counts.get(model, 0) + rows
            if self._since is None:
                self._since = now
        if self._since is None or now - self._since < self.interval:
            return None
        told = ", ".join(f"{name} {count}" for name, count in sorted(self._counts.items()))
        line = f"late rows in the last {now - self._since:.0f} s, left out of every window: {told}"
        self._counts, self._since = {}, None
        return line


class StreamMetrics:
    """The worker's metrics in a registry of their own; :meth:`render` serves them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._events = Counter(
            "flowops_stream_events", "Traffic rows processed by the monitors.", registry=reg
        )
        self._rejected = Counter(
            "flowops_stream_rejected",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=reg,
        )
        self._requests = Counter(
            "flowops_stream_requests",
            "Traffic rows read, answered or not, by model (the error rates' denominator).",
            ["model"],
            registry=reg,
        )
        self._rejected_requests = Counter(
            "flowops_stream_rejected_requests",
            "Traffic rows left out of drift because the model server did not answer 2xx, by model.",
            ["model"],
            registry=reg,
        )
        self._unparsable = Counter(
            "flowops_stream_unparsable",
            "Traffic rows left out of drift because their request could not be read"
            " (they have a parse_error and no features), by model.",
            ["model"],
            registry=reg,
        )
        self._excluded = Counter(
            "flowops_stream_excluded_values",
            "Feature values left out of the tests (NaN, inf, missing or wrongly typed).",
            ["model", "feature"],
            registry=reg,
        )
        self._windows = Counter(
            "flowops_stream_windows_closed", "Windows closed and tested.", registry=reg
        )
        self._late = Counter(
            "flowops_stream_late_rows",
            "Rows left out of every window: their window had closed, or they have no time.",
            ["model"],
            registry=reg,
        )
        self._psi = Gauge(
            "flowops_drift_psi",
            "PSI of the last closed window against the reference.",
            ["model", "feature"],
            registry=reg,
        )
        self._ks = Gauge(
            "flowops_drift_ks_pvalue",
            "KS p-value of the last closed window against the reference.",
            ["model", "feature"],
            registry=reg,
        )
        self._alerts = Counter(
            "flowops_drift_alerts",
            "Drift alerts published, by test.",
            ["model", "test"],
            registry=reg,
        )
        self._lag = Gauge(
            "flowops_stream_consumer_lag",
            "Messages in the partition not yet processed (high watermark - position).",
            ["topic", "partition"],
            registry=reg,
        )
        self._partitions = Gauge(
            "flowops_stream_partitions",
            "Partitions of the topic assigned to this worker (0 while it waits for its group).",
            ["topic"],
            registry=reg,
        )
        self._checkpoint = Histogram(
            "flowops_stream_checkpoint_seconds",
            "Time to write the monitors' state and commit the offsets it covers.",
            registry=reg,
        )

    def events(self, rows: int) -> None:
        """Count processed traffic rows."""
        self._events.inc(rows)

    def rejected(self, reason: str, n: int = 1) -> None:
        """Count dead-lettered messages with their reason code."""
        self._rejected.labels(reason=reason).inc(n)

    def requests(self, model: str, rows: int, rejected: int = 0) -> None:
        """Count a model's requests, and those answered with a status outside 2xx."""
        self._requests.labels(model=model).inc(rows)
        if rejected:
            self._rejected_requests.labels(model=model).inc(rejected)

    def unparsable(self, model: str, rows: int) -> None:
        """Count rows left out because their request could not be read."""
        self._unparsable.labels(model=model).inc(rows)

    def alert(self, model: str, test: str) -> None:
        """Count a published alert."""
        self._alerts.labels(model=model, test=test).inc()

    def monitor(self, model: str, stats: MonitorStats, delta: StatsDelta) -> int:
        """Bring the model's gauges and counters up to date with its monitor's stats;
        returns the late rows counted now."""
        windows, late, excluded = delta.take(stats)
        if windows:
            self._windows.inc(windows)
        if late:
            self._late.labels(model=model).inc(late)
        for feature, count in excluded.items():
            self._excluded.labels(model=model, feature=feature).inc(count)
        _set_all(self._psi, model, stats.last_psi)
        _set_all(self._ks, model, stats.last_ks_pvalue)
        return late

    def windows_closed(self, count: int) -> None:
        """Count windows closed elsewhere than in a monitor (merged across partitions)."""
        self._windows.inc(count)

    def late(self, model: str, rows: int) -> None:
        """Count late rows of a model found elsewhere than in a monitor."""
        self._late.labels(model=model).inc(rows)

    def lag(self, topic: str, partition: int, messages: int) -> None:
        """Set the consumer lag of one partition."""
        self._lag.labels(topic=topic, partition=str(partition)).set(messages)

    def partitions(self, topic: str, count: int) -> None:
        """Set how many partitions of ``topic`` this worker reads."""
        self._partitions.labels(topic=topic).set(count)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the lag series of a partition this worker no longer reads."""
        with contextlib.suppress(KeyError):
            self._lag.remove(topic, str(partition))

    def checkpoint(self, seconds: float) -> None:
        """Record how long a checkpoint took."""
        self._checkpoint.observe(seconds)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


def _set_all(gauge: Gauge, model: str, values: Mapping[str, float]) -> None:
    for feature, value in values.items():
        gauge.labels(model=model, feature=feature).set(value)
