"""GatewayMetrics in one process: the state read at each scrape, counters that follow the
publisher's own. (Several workers adding theirs up: tests/integration/test_gateway_workers.py,
with real worker processes, as the multiprocess mode changes the whole process.)"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from flowops.gateway.metrics import GatewayMetrics
from flowops.gateway.upstreams import Pool


@dataclass
class Publisher:
    queue_depth: int = 0
    sent: int = 0
    dropped: int = 0


def samples(metrics: GatewayMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_the_publishers_counts_are_what_it_says_at_each_scrape() -> None:
    metrics, publisher = GatewayMetrics(), Publisher()
    metrics.watch([], publisher)
    publisher.sent, publisher.dropped, publisher.queue_depth = 120, 3, 7
    first = samples(metrics)
    publisher.sent, publisher.dropped, publisher.queue_depth = 500, 3, 0
    second = samples(metrics)
    assert first["flowops_gateway_published_total", ()] == 120
    assert first["flowops_gateway_publish_dropped_total", ()] == 3
    assert first["flowops_gateway_publish_queue_depth", ()] == 7
    assert second["flowops_gateway_published_total", ()] == 500
    assert second["flowops_gateway_publish_dropped_total", ()] == 3
    assert second["flowops_gateway_publish_queue_depth", ()] == 0


def test_upstream_state_is_read_at_the_scrape() -> None:
    metrics = GatewayMetrics()
    pool = Pool("iris", ["http://127.0.0.1:9001", "http://127.0.0.1:9002"])
    metrics.watch([pool], None)
    lease = pool.acquire()
    assert lease is not None
    during = samples(metrics)
    lease.finish("ok")
    after = samples(metrics)
    key = (("route", "iris"), ("upstream", lease.upstream.url))
    assert during["flowops_gateway_upstream_outstanding", key] == 1
    assert after["flowops_gateway_upstream_outstanding", key] == 0
    assert during["flowops_gateway_upstream_available", key] == 1
    closed = tuple(sorted((*key, ("state", "closed"))))
    assert during["flowops_gateway_breaker_state", closed] == 1
