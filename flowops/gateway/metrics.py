"""The gateway's Prometheus metrics, served on its ``/metrics`` page.

Counters and histograms are updated on the request path; the state of upstreams and
of the traffic publisher is read when Prometheus scrapes, and every second with several
workers (:meth:`GatewayMetrics.watch`, :meth:`GatewayMetrics.refresh`), so a request
pays nothing for it.

**Several workers.** Given a directory the worker processes share (``across``), every
value lives in a small memory-mapped file per worker there (prometheus_client's
multiprocess mode) and :meth:`GatewayMetrics.render` adds them up, so a scrape of the
shared port describes the whole gateway, whichever worker answers it: counters and
histograms are summed, as are the in-flight tries and the publisher's queue; an
upstream counts as available or healthy only where every worker says so (the lowest
value), and a breaker state is 1 when any worker's breaker is in it (the highest).

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
``flowops_gateway_variant_weight``            gauge      route, variant (now: configured, or
                                                         as set at run time; 0: set aside)
============================================  =========  ==================================

>>> metrics = GatewayMetrics()
>>> metrics.request("iris", 200, "http://127.0.0.1:9001", 0.004)
>>> b'status="200"' in metrics.render()
True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from flowops.gateway.upstreams import Pool, UpstreamEvent

__all__ = ["GatewayMetrics", "PublisherStats", "VariantWeightsNow"]

VariantWeightsNow = Callable[[], list[tuple[str, str, float]]]
"""``(route, variant, weight)`` of every split route now."""

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
    """The gateway's metrics in a registry of its own; :meth:`render` serves them.

    ``across``: the directory a gateway's workers share, to serve all of them at once
    (see the module docstring). It switches this *process's* prometheus_client to its
    multiprocess mode, so it is for a worker process of its own only.
    """

    def __init__(self, across: str | Path | None = None) -> None:
        if across is not None:
            _write_values_to(across)
        reg = CollectorRegistry(auto_describe=True)
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
        self._state = _State(reg)
        self._children: dict[tuple[str, int, str | None], tuple[Counter, Histogram]] = {}
        if across is None:
            self.registry = reg
        else:
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=str(across))  # type: ignore[no-untyped-call]

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

    def watch(
        self,
        pools: Sequence[Pool],
        publisher: PublisherStats | None,
        weights: VariantWeightsNow | None = None,
    ) -> None:
        """Read these pools, this publisher and the variants' weights at each
        :meth:`refresh`."""
        self._state.pools = list(pools)
        self._state.publisher = publisher
        self._state.weights = weights

    def refresh(self) -> None:
        """Write the watched pools' and publisher's state now (done by :meth:`render`;
        the gateway also calls it every second when workers share the metrics)."""
        self._state.refresh()

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        self.refresh()
        return generate_latest(self.registry)


def _write_values_to(directory: str | Path) -> None:
    """Make this process's metric values memory-mapped files in ``directory``."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    pid = os.getpid()  # the worker's, for its life: not asked again at every update
    values.ValueClass = values.MultiProcessValue(lambda: pid)  # type: ignore[no-untyped-call]


class _State:
    """Upstream and publisher state, as gauges and counters written at each refresh."""

    def __init__(self, reg: CollectorRegistry) -> None:
        self.pools: list[Pool] = []
        self.publisher: PublisherStats | None = None
        self.weights: VariantWeightsNow | None = None
        self.variant_weight = Gauge(
            "flowops_gateway_variant_weight",
            "A split route's variant's weight now (0: set aside by an operator or the policy).",
            ["route", "variant"],
            registry=reg,
            multiprocess_mode="max",  # every worker reads the one shared board
        )
        labels = ["route", "upstream"]
        self.available = Gauge(
            "flowops_gateway_upstream_available",
            "1 if requests may go there now.",
            labels,
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.healthy = Gauge(
            "flowops_gateway_upstream_healthy",
            "1 unless active checks failed.",
            labels,
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.outstanding = Gauge(
            "flowops_gateway_upstream_outstanding",
            "Tries in flight.",
            labels,
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.breaker = Gauge(
            "flowops_gateway_breaker_state",
            "1 for the circuit breaker's current state.",
            [*labels, "state"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.depth = Gauge(
            "flowops_gateway_publish_queue_depth",
            "Traffic events waiting to be sent.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.sent = Counter(
            "flowops_gateway_published", "Traffic events sent to Kafka.", registry=reg
        )
        self.dropped = Counter(
            "flowops_gateway_publish_dropped",
            "Traffic events dropped because the queue was full.",
            registry=reg,
        )
        self._counted = (0, 0)  # the publisher's sent and dropped at the last refresh

    def refresh(self) -> None:
        for pool in self.pools:
            for status in pool.snapshot():
                key = (pool.route, status.url)
                self.available.labels(*key).set(float(status.available))
                self.healthy.labels(*key).set(float(status.healthy is not False))
                self.outstanding.labels(*key).set(float(status.outstanding))
                for state in _BREAKER_STATES:
                    self.breaker.labels(*key, state).set(float(status.breaker == state))
        if self.weights is not None:
            for route, variant, weight in self.weights():
                self.variant_weight.labels(route, variant).set(weight)
        publisher = self.publisher
        if publisher is None:
            return
        self.depth.set(float(publisher.queue_depth))
        sent, dropped = publisher.sent, publisher.dropped
        self.sent.inc(sent - self._counted[0])
        self.dropped.inc(dropped - self._counted[1])
        self._counted = (sent, dropped)
