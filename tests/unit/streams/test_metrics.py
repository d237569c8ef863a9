"""``streams.metrics``: names, labels, and counters fed from monitor stats."""

from __future__ import annotations

import numpy as np

from flowops.drift import ModelMonitor, MonitorStats, WindowSpec
from streams.metrics import StatsDelta, StreamMetrics


def samples(metrics: StreamMetrics) -> dict[str, float]:
    found = {}
    for line in metrics.render().decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_every_metric_is_exposed_with_prometheus_names() -> None:
    metrics = StreamMetrics()
    metrics.events(3)
    metrics.rejected("bad_json", 2)
    metrics.alert("credit", "ks")
    metrics.lag("flowops.traffic", 1, 7)
    metrics.checkpoint(0.01)
    metrics.partitions("flowops.traffic", 4)
    metrics.unparsable("credit", 2)
    metrics.unparsable("credit", 1)
    got = samples(metrics)
    assert got["flowops_stream_events_total"] == 3
    assert got['flowops_stream_rejected_total{reason="bad_json"}'] == 2
    assert got['flowops_drift_alerts_total{model="credit",test="ks"}'] == 1
    assert got['flowops_stream_consumer_lag{partition="1",topic="flowops.traffic"}'] == 7
    assert got["flowops_stream_checkpoint_seconds_count"] == 1
    assert got['flowops_stream_partitions{topic="flowops.traffic"}'] == 4
    assert got['flowops_stream_unparsable_total{model="credit"}'] == 3
    metrics.forget_partition("flowops.traffic", 1)
    metrics.forget_partition("flowops.traffic", 1)  # twice is fine
    assert not any("consumer_lag{" in name for name in samples(metrics))


def test_monitor_stats_become_increments_from_their_baseline() -> None:
    monitor = ModelMonitor("credit", "1", WindowSpec("count", 100))
    rng = np.random.default_rng(0)
    monitor.add(np.arange(100.0), {"x": rng.normal(0, 1, 100)})
    delta = StatsDelta(monitor.stats)  # a restored monitor: what it counted is not ours
    values = [*rng.normal(0, 1, 99), None]
    monitor.add(np.arange(100.0, 200.0), {"x": values})
    metrics = StreamMetrics()
    metrics.monitor("credit", monitor.stats, delta)
    metrics.monitor("credit", monitor.stats, delta)  # nothing new the second time
    got = samples(metrics)
    assert got["flowops_stream_windows_closed_total"] == 1
    assert got['flowops_stream_excluded_values_total{feature="x",model="credit"}'] == 1
    assert 'flowops_drift_psi{feature="x",model="credit"}' in got
    assert 'flowops_drift_ks_pvalue{feature="x",model="credit"}' in got


def test_a_fresh_baseline_counts_nothing() -> None:
    stats = MonitorStats(windows_closed=4, excluded={"x": 2})
    assert StatsDelta(stats).take(stats) == (0, 0, {})


def test_late_rows_are_counted_by_model() -> None:
    monitor = ModelMonitor("credit", "1", WindowSpec("time", 10.0))
    delta = StatsDelta(monitor.stats)
    monitor.add(np.array([1.0, 12.0, 3.0, np.nan]), {"x": [1.0, 2.0, 3.0, 4.0]})
    metrics = StreamMetrics()
    assert metrics.monitor("credit", monitor.stats, delta) == 2  # 3.0 after 12.0, and NaN
    assert metrics.monitor("credit", monitor.stats, delta) == 0
    assert samples(metrics)['flowops_stream_late_rows_total{model="credit"}'] == 2


def test_requests_and_rejected_requests_are_counted_by_model() -> None:
    metrics = StreamMetrics()
    metrics.requests("credit", 10, 3)
    metrics.requests("credit", 5)
    metrics.requests("iris", 4, 4)
    got = samples(metrics)
    assert got['flowops_stream_requests_total{model="credit"}'] == 15
    assert got['flowops_stream_rejected_requests_total{model="credit"}'] == 3
    assert got['flowops_stream_rejected_requests_total{model="iris"}'] == 4
