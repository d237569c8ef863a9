"""The gateway's Prometheus metrics, served on its ``/metrics`` page.

Counters and histograms are updated on the request path; the state of upstreams and
of the traffic publisher is read when Prometheus scrapes (:meth:`GatewayMetrics.watch`),
so a request pays nothing for it.

============================================  =========  ==================================
metric                                        type       labels
============================================  =========  ==================================
``flowops_gateway_requests_total``            counter    route, status, upstream
``flowops_gateway_request_duration_seconds``  histogram  route
``flowops_gateway_retries_total``             counter    route, outcome (of the failed try)
``flowops_gateway_auth_failures_total``       counter    route, code
``flowops_gateway_rate_limited_total``        counter    route
``flowops_gateway_upstream_events_total``     counter    route, upstream, kind
``flowops_gateway_shadow_requests_total``     counter    route, outcome (2xx, 5xx, timeout,
                                                         skipped, no_upstream, ...)
``flowops_gateway_upstream_available``        gauge      route, upstream (1 or 0)
``flowops_gateway_upstream_healthy``          gauge      route, upstream (active checks)
``flowops_gateway_upstream_outstanding``      gauge      route, upstream
``flowops_gateway_breaker_state``             gauge      route, upstream, state (1 for its
                                                         state: closed, open, half_open)
``flowops_gateway_publish_queue_depth``       gauge      (traffic events waiting)
``flowops_gateway_published_total``           counter    (events sent to Kafka)
``flowops_gateway_publish_dropped_total``     counter    (events dropped: queue full)
============================================  =========  ==================================

>>> metrics = GatewayMetrics()
>>> metrics.request("iris", 200, "http://127.0.0.1:9001", 0.004)
>>> b'status="200"' in metrics.render()
True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowops.gateway.upstreams import Pool, UpstreamEvent

__all__ = ["GatewayMetrics", "PublisherStats"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BREAKER_STATES = ("closed", "open", "half_open")


class PublisherStats(Protocol):
    """What ``/metrics`` reads of the traffic publisher."""

    @property
    def queue_depth(self) -> int: ...
    @property
    def sent(self) -> int: ...
    @property
    def dropped(self) -> int: ...


class GatewayMetrics:
    """The gateway's metrics in a registry of its own; :meth:`render` serves them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._requests = Counter(
            "flowops_gateway_requests",
            "Requests answered, by route, status and the upstream that answered.",
            ["route", "status", "upstream"],
            registry=reg,
        )
        self._duration = Histogram(
            "flowops_gateway_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["route"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self._retries = Counter(
            "flowops_gateway_retries",
            "Tries sent again, by the outcome of the failed try.",
            ["route", "outcome"],
            registry=reg,
        )
        self._auth = Counter(
            "flowops_gateway_auth_failures",
            "Requests refused by authentication (401) or authorisation (403).",
            ["route", "code"],
            registry=reg,
        )
        self._limited = Counter(
            "flowops_gateway_rate_limited",
            "Requests refused by a rate limit (429).",
            ["route"],
            registry=reg,
        )
        self._events = Counter(
            "flowops_gateway_upstream_events",
            "Upstream state changes: ejected, returned, healthy, unhealthy, breaker_*.",
            ["route", "upstream", "kind"],
            registry=reg,
        )
        self._shadow = Counter(
            "flowops_gateway_shadow_requests",
            "Copies sent to a route's shadow, by outcome (skipped: too many under way).",
            ["route", "outcome"],
            registry=reg,
        )
        self._state = _StateCollector()
        reg.register(self._state)
        self._children: dict[tuple[str, int, str | None], tuple[Counter, Histogram]] = {}

    def request(self, route: str, status: int, upstream: str | None, seconds: float) -> None:
        """Count an answered request and its duration."""
        key = (route, status, upstream)
        children = self._children.get(key)
        if children is None:  # labels() costs a lock and a dict a call: once per key
            children = self._children[key] = (
                self._requests.labels(route, str(status), upstream or ""),
                self._duration.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def retry(self, route: str, outcome: str) -> None:
        """Count a retry."""
        self._retries.labels(route, outcome).inc()

    def auth_failure(self, route: str, code: str) -> None:
        """Count a 401 or 403."""
        self._auth.labels(route, code).inc()

    def rate_limited(self, route: str) -> None:
        """Count a 429."""
        self._limited.labels(route).inc()

    def shadow(self, route: str, outcome: str) -> None:
        """Count a copy sent to a shadow (or skipped)."""
        self._shadow.labels(route, outcome).inc()

    def upstream_event(self, event: UpstreamEvent) -> None:
        """Count an upstream's change of state."""
        self._events.labels(event.route, event.upstream, event.kind).inc()

    def watch(self, pools: Sequence[Pool], publisher: PublisherStats | None) -> None:
        """Read these pools and this publisher at each scrape."""
        self._state.pools = list(pools)
        self._state.publisher = publisher

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Upstream and publisher state, read at scrape time."""

    def __init__(self) -> None:
        self.pools: list[Pool] = []
        self.publisher: PublisherStats | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        labels = ["route", "upstream"]
        available = GaugeMetricFamily(
            "flowops_gateway_upstream_available", "1 if requests may go there now.", labels=labels
        )
        healthy = GaugeMetricFamily(
            "flowops_gateway_upstream_healthy", "1 unless active checks failed.", labels=labels
        )
        outstanding = GaugeMetricFamily(
            "flowops_gateway_upstream_outstanding", "Tries in flight.", labels=labels
        )
        breaker = GaugeMetricFamily(
            "flowops_gateway_breaker_state",
            "1 for the circuit breaker's current state.",
            labels=[*labels, "state"],
        )
        for pool in self.pools:
            for status in pool.snapshot():
                key = [pool.route, status.url]
                available.add_metric(key, float(status.available))
                healthy.add_metric(key, float(status.healthy is not False))
                outstanding.add_metric(key, float(status.outstanding))
                for state in _BREAKER_STATES:
                    breaker.add_metric([*key, state], float(status.breaker == state))
        yield from (available, healthy, outstanding, breaker)
        yield from _publisher_metrics(self.publisher)


def _publisher_metrics(publisher: PublisherStats | None) -> Iterator[Metric]:
    if publisher is None:
        return
    depth = GaugeMetricFamily(
        "flowops_gateway_publish_queue_depth", "Traffic events waiting to be sent."
    )
    depth.add_metric([], float(publisher.queue_depth))
    sent = CounterMetricFamily("flowops_gateway_published", "Traffic events sent to Kafka.")
    sent.add_metric([], float(publisher.sent))
    dropped = CounterMetricFamily(
        "flowops_gateway_publish_dropped", "Traffic events dropped because the queue was full."
    )
    dropped.add_metric([], float(publisher.dropped))
    yield from (depth, sent, dropped)
