"""A route's pool of upstreams: which one gets the next request, and which are left out.

A :class:`Pool` holds one :class:`Upstream` per model server of a route and answers
:meth:`Pool.pick` with an available upstream, or None when there is none (the proxy then
answers 503 at once). An upstream is *available* when the active health checks have not
marked it down (:mod:`flowops.gateway.health`), the passive outlier detector has not
ejected it, and its circuit breaker (:mod:`flowops.gateway.policies.breaker`) lets requests through.

A balancing policy chooses among the available upstreams (``routes[].balancing``:
``round_robin``, ``weighted``, ``least_request``, ``ewma``), each in a module of
:mod:`flowops.gateway.policies.balancing`.

Each request is bracketed by a :class:`Lease` (:meth:`Pool.acquire`, or :meth:`Pool.pick`
then :meth:`Pool.started`) whose :meth:`Lease.finish` reports its :data:`Outcome`. That
keeps the in-flight counts, the latency averages, the breakers and the outlier detector
up to date. Outlier detection: ``consecutive_failures`` failures in a row (5xx
responses, connect errors, resets, timeouts) eject an upstream for
``base_ejection_time * n``, the ``n``-th ejection in a row, at most ``max_ejection_time``
(Envoy's rule); each ``base_ejection_time`` spent back in the pool forgives one past
ejection. An ejection ends by time alone, and the detector never ejects the last
available upstream, nor more than ``max_ejected_percent`` of the pool.

Everything that happens to an upstream (ejected, returned, marked healthy or unhealthy,
breaker opened, half-open or closed) is reported to one ``on_event`` callback as an
:class:`UpstreamEvent`, for logs and metrics; :meth:`Pool.snapshot` gives the state of
every upstream at any time (``/admin/upstreams``, gauges).

>>> pool = Pool("iris", ["http://127.0.0.1:9001", {"url": "http://127.0.0.1:9002", "weight": 3}],
...             balancing=BalancingSettings(policy="weighted"))
>>> [pool.pick().url[-4:] for _ in range(4)]
['9002', '9001', '9002', '9002']
>>> with pool.acquire() as lease:
...     lease.upstream.outstanding
...     lease.finish("ok", latency=0.012)
1
>>> [u.outstanding for u in pool.upstreams]
[0, 0]
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeAlias
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from flowops.errors import ConfigError
from flowops.gateway.http.tls import load_cert_chain
from flowops.gateway.policies.balancing.base import BalancingSettings
from flowops.gateway.policies.balancing.registry import balancer
from flowops.gateway.policies.breaker import BreakerSettings, BreakerState, CircuitBreaker

__all__ = [
    "FAILURES",
    "EventKind",
    "Lease",
    "Outcome",
    "OutlierSettings",
    "Pool",
    "Upstream",
    "UpstreamEvent",
    "UpstreamSettings",
    "UpstreamStatus",
    "UpstreamTlsSettings",
    "outcome_of_status",
]

Outcome: TypeAlias = Literal["ok", "http_error", "connect_error", "reset", "timeout", "cancelled"]
"""How one try at an upstream ended, as the proxy reports it to :meth:`Lease.finish`.

``ok``
    a response below 500 (a 4xx is the client's fault, not the upstream's).
``http_error``
    a 5xx response.
``connect_error``
    no connection could be made (refused, unreachable, DNS): nothing was sent.
``reset``
    the connection broke after the request was (maybe) sent.
``timeout``
    the per-try timeout ran out.
``cancelled``
    the client went away or the gateway gave up for its own reasons: no verdict.
"""

FAILURES: Final[frozenset[Outcome]] = frozenset({"http_error", "connect_error", "reset", "timeout"})
"""Outcomes that count against an upstream (outlier detection and breaker)."""

EventKind: TypeAlias = Literal[
    "ejected",
    "returned",
    "healthy",
    "unhealthy",
    "breaker_open",
    "breaker_half_open",
    "breaker_closed",
]

_RECOVERIES: Final[frozenset[EventKind]] = frozenset({"returned", "healthy", "breaker_closed"})

_BREAKER_EVENTS: Final[dict[BreakerState, EventKind]] = {
    "open": "breaker_open",
    "half_open": "breaker_half_open",
    "closed": "breaker_closed",
}
_UNMEASURED_PENALTY: Final = 1e6  # seconds: an unmeasured busy upstream looks very slow
_LATENCY_OUTCOMES: Final[frozenset[Outcome]] = frozenset({"ok", "timeout"})


def outcome_of_status(status: int) -> Outcome:
    """The outcome of a try that got a response with ``status``.

    >>> outcome_of_status(200), outcome_of_status(404), outcome_of_status(503)
    ('ok', 'ok', 'http_error')
    """
    return "http_error" if status >= 500 else "ok"


class UpstreamTlsSettings(BaseModel):
    """How the gateway checks an ``https`` upstream and proves itself to it (mTLS)."""

    model_config = ConfigDict(extra="forbid")

    ca_file: Path | None = Field(
        None,
        description="PEM CA bundle the upstream's certificate must chain to; none: the system's",
    )
    cert_file: Path | None = Field(None, description="PEM client certificate (mTLS)")
    key_file: Path | None = Field(None, description="its PEM private key")
    check_hostname: bool = Field(True, description="the certificate must name the URL's host")

    @model_validator(mode="after")
    def _cert_with_key(self) -> UpstreamTlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give cert_file and key_file together (a client certificate)")
        return self

    @property
    def files(self) -> list[Path]:
        """The files it reads (re-read when they change)."""
        return [p for p in (self.ca_file, self.cert_file, self.key_file) if p is not None]

    def context(self, key: str) -> ssl.SSLContext:
        """The client-side TLS context (TLS 1.2 at least, the certificate verified);
        a file that cannot be read or used is a ConfigError naming ``key``'s field."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{key}.ca_file", f"cannot use {self.ca_file}: {exc}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.check_hostname
        if self.cert_file is not None:
            load_cert_chain(context, self.cert_file, self.key_file, key)
        return context


class UpstreamSettings(BaseModel):
    """One model server of a route: a URL, or a mapping with the URL and a weight."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="http(s)://host:port[/path] of the model server")
    weight: int = Field(1, ge=1, le=1000, description="share of traffic for `weighted`")
    idle_timeout: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="seconds an idle connection to it is kept; none: gateway.upstream_pool's",
    )
    tls: UpstreamTlsSettings | None = Field(None, description="CA, client certificate (https)")

    @model_validator(mode="before")
    @classmethod
    def _url_alone(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected http://host[:port] or https://host[:port]")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials do not belong in an upstream URL (they would be logged)")
        if parts.query or parts.fragment:
            raise ValueError("an upstream URL takes no query or fragment")
        if port == 0:
            raise ValueError("port 0 is not a port to connect to")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _tls_for_https(self) -> UpstreamSettings:
        if self.tls is not None and not self.url.startswith("https://"):
            raise ValueError("tls applies to https:// upstreams")
        return self


class OutlierSettings(BaseModel):
    """Passive outlier detection: eject upstreams whose requests keep failing."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: never eject on failures")
    consecutive_failures: int = Field(
        5, ge=1, le=10_000, description="failures in a row (5xx, connect errors, timeouts)"
    )
    base_ejection_time: float = Field(
        30.0, gt=0, le=86_400, description="seconds of the first ejection; the n-th lasts n times"
    )
    max_ejection_time: float = Field(
        300.0, gt=0, le=86_400, description="seconds an ejection lasts at most"
    )
    max_ejected_percent: int = Field(
        50, ge=0, le=100, description="share of the pool that may be ejected at once"
    )

    @field_validator("max_ejection_time")
    @classmethod
    def _not_below_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("base_ejection_time")
        if base is not None and value < base:
            raise ValueError(f"must be at least base_ejection_time ({base})")
        return value


@dataclass(frozen=True, slots=True)
class UpstreamEvent:
    """A change of an upstream's state, for the log and the metrics."""

    route: str
    upstream: str
    kind: EventKind
    detail: str = ""

    @property
    def level(self) -> int:
        """The log level it deserves: INFO for an upstream that is fine again (healthy,
        returned, breaker closed), WARNING for one that is not.

        >>> UpstreamEvent("iris", "http://a:1", "healthy").level == logging.INFO
        True
        """
        return logging.INFO if self.kind in _RECOVERIES else logging.WARNING


@dataclass(frozen=True, slots=True)
class UpstreamStatus:
    """What :meth:`Pool.snapshot` says about one upstream."""

    url: str
    weight: int
    available: bool
    healthy: bool | None
    ejected_for: float
    ejections: int
    breaker: BreakerState
    outstanding: int
    latency_ewma: float | None


class Upstream:
    """One model server of a pool and what the pool knows about it.

    ``healthy`` is the active health checks' verdict: None until the first check (or
    when there are none), which counts as healthy.
    """

    __slots__ = (
        "_cost",
        "_measured",
        "_returned_at",
        "_stamp",
        "breaker",
        "consecutive_failures",
        "current_weight",
        "ejected_until",
        "ejections",
        "healthy",
        "outstanding",
        "url",
        "weight",
    )

    def __init__(self, url: str, weight: int = 1, *, breaker: CircuitBreaker | None = None) -> None:
        self.url = url
        self.weight = weight
        self.breaker = breaker or CircuitBreaker()
        self.outstanding = 0
        self.healthy: bool | None = None
        self.consecutive_failures = 0
        self.ejections = 0
        self.ejected_until: float | None = None
        self._returned_at = 0.0
        self.current_weight = 0
        """The ``weighted`` policy's running score."""
        self._cost = 0.0
        self._stamp = 0.0
        self._measured = False

    def latency(self, now: float, decay: float) -> float | None:
        """The latency estimate at ``now`` (seconds), None before the first measurement."""
        if not self._measured:
            return None
        return self._cost * math.exp(-max(now - self._stamp, 0.0) / decay)

    def observe(self, latency: float, now: float, decay: float) -> None:
        """Fold one response time into the peak-EWMA: a slower one replaces the average."""
        w = math.exp(-max(now - self._stamp, 0.0) / decay) if self._measured else 0.0
        decayed = self._cost * w
        self._cost = latency if latency > decayed else decayed + latency * (1.0 - w)
        self._stamp = now
        self._measured = True

    def load(self, now: float, decay: float) -> float:
        """The ``ewma`` policy's cost: latency * (outstanding + 1) (seconds)."""
        latency = self.latency(now, decay)
        if latency is None:
            return _UNMEASURED_PENALTY + self.outstanding if self.outstanding else 0.0
        return latency * (self.outstanding + 1)

    def __repr__(self) -> str:
        return f"<Upstream {self.url} weight={self.weight} outstanding={self.outstanding}>"


class Lease:
    """One try at one upstream, from :meth:`Pool.started` to :meth:`finish`.

    As a context manager it finishes as ``cancelled`` when the block ends without
    :meth:`finish` (an exception, a cancelled task): the request no longer counts as in
    flight and no verdict is recorded.
    """

    __slots__ = ("_epoch", "_pool", "finished", "started_at", "upstream")

    def __init__(self, pool: Pool, upstream: Upstream, started_at: float, epoch: int) -> None:
        self._pool = pool
        self._epoch = epoch
        self.upstream = upstream
        self.started_at = started_at
        self.finished = False

    def finish(self, outcome: Outcome, latency: float | None = None) -> None:
        """Report how the try ended; ``latency`` defaults to the time since it started.

        Pass the time to the response headers when the body streams on for long. A
        second call does nothing.
        """
        if self.finished:
            return
        self.finished = True
        self._pool._finished(self, outcome, latency, self._epoch)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish("cancelled")


class Pool:
    """The upstreams of one route, a balancing policy, outlier detection and breakers.

    ``clock`` (monotonic seconds) and ``rng`` are injected so tests control time and
    the random choices; ``on_event`` receives every :class:`UpstreamEvent`.
    """

    def __init__(
        self,
        route: str,
        upstreams: Sequence[UpstreamSettings | str | dict[str, Any]],
        *,
        balancing: BalancingSettings | None = None,
        outlier: OutlierSettings | None = None,
        breaker: BreakerSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_event: Callable[[UpstreamEvent], None] | None = None,
    ) -> None:
        if not upstreams:
            raise ValueError(f"route {route!r}: a pool needs at least one upstream")
        self.route = route
        self.balancing = balancing or BalancingSettings()
        self.outlier = outlier or OutlierSettings()
        self._breaker_settings = breaker or BreakerSettings()
        self._clock = clock
        self._on_event = on_event
        self._balancer = balancer(self.balancing, rng or random.Random())
        self.upstreams: tuple[Upstream, ...] = tuple(self._upstream(entry) for entry in upstreams)

    def _upstream(self, entry: UpstreamSettings | str | dict[str, Any]) -> Upstream:
        settings = (
            entry if isinstance(entry, UpstreamSettings) else UpstreamSettings.model_validate(entry)
        )
        url = settings.url

        def transition(old: BreakerState, new: BreakerState) -> None:
            self._emit(url, _BREAKER_EVENTS[new], f"was {old}")

        breaker = CircuitBreaker(
            self._breaker_settings, clock=self._clock, on_transition=transition
        )
        return Upstream(url, settings.weight, breaker=breaker)

    def pick(self, exclude: Collection[Upstream] = ()) -> Upstream | None:
        """The upstream for the next try, or None when none is available.

        ``exclude`` holds the upstreams this request already tried: another available
        upstream is preferred, and one of them is chosen again only when nothing else
        is available. Call :meth:`started` right after, with no ``await`` between, or
        use :meth:`acquire`, which does both.
        """
        now = self._clock()
        available = [u for u in self.upstreams if self._is_available(u, now)]
        if not available:
            return None
        fresh = [u for u in available if u not in exclude] if exclude else available
        candidates = fresh or available
        if len(candidates) == 1:
            return candidates[0]
        return self._balancer.choose(candidates, now)

    def started(self, upstream: Upstream) -> Lease:
        """Count a try at ``upstream`` as in flight; finish the lease when it ends."""
        upstream.outstanding += 1
        return Lease(self, upstream, self._clock(), upstream.breaker.admit())

    def acquire(self, exclude: Collection[Upstream] = ()) -> Lease | None:
        """:meth:`pick` and :meth:`started` in one call; None when nothing is available."""
        upstream = self.pick(exclude)
        return None if upstream is None else self.started(upstream)

    def set_health(self, upstream: Upstream, healthy: bool, detail: str = "") -> None:
        """The active health checks' verdict; reported as an event when it changes."""
        if upstream.healthy is healthy:
            return
        upstream.healthy = healthy
        self._emit(upstream.url, "healthy" if healthy else "unhealthy", detail)

    def available(self) -> list[Upstream]:
        """The upstreams a request could go to now."""
        now = self._clock()
        return [u for u in self.upstreams if self._is_available(u, now)]

    def snapshot(self) -> list[UpstreamStatus]:
        """The state of every upstream now, in configuration order."""
        now = self._clock()
        return [self._status(u, now) for u in self.upstreams]

    def _status(self, u: Upstream, now: float) -> UpstreamStatus:
        ejected_for = max(u.ejected_until - now, 0.0) if u.ejected_until is not None else 0.0
        return UpstreamStatus(
            url=u.url,
            weight=u.weight,
            available=self._is_available(u, now),
            healthy=u.healthy,
            ejected_for=ejected_for,
            ejections=u.ejections,
            breaker=u.breaker.state,
            outstanding=u.outstanding,
            latency_ewma=u.latency(now, self.balancing.ewma_decay),
        )

    def _is_available(self, upstream: Upstream, now: float) -> bool:
        return (
            upstream.healthy is not False
            and not self._is_ejected(upstream, now)
            and upstream.breaker.allows()
        )

    def _is_ejected(self, upstream: Upstream, now: float) -> bool:
        """Whether ``upstream`` is ejected; an ejection whose time is up ends here."""
        until = upstream.ejected_until
        if until is None:
            return False
        if now < until:
            return True
        upstream.ejected_until = None
        upstream._returned_at = until
        self._emit(upstream.url, "returned", f"after ejection {upstream.ejections}")
        return False

    def _finished(self, lease: Lease, outcome: Outcome, latency: float | None, epoch: int) -> None:
        upstream = lease.upstream
        upstream.outstanding -= 1
        now = self._clock()
        if outcome in _LATENCY_OUTCOMES:
            took = now - lease.started_at if latency is None else latency
            upstream.observe(took, now, self.balancing.ewma_decay)
        if outcome == "cancelled":
            upstream.breaker.release(epoch)
            return
        failed = outcome in FAILURES
        upstream.breaker.record(epoch, success=not failed)
        self._count_for_outliers(upstream, failed, outcome, now)

    def _count_for_outliers(
        self, upstream: Upstream, failed: bool, outcome: Outcome, now: float
    ) -> None:
        if not failed:
            upstream.consecutive_failures = 0
            return
        upstream.consecutive_failures += 1
        settings = self.outlier
        if settings.enabled and upstream.consecutive_failures >= settings.consecutive_failures:
            self._eject(upstream, now, outcome)

    def _eject(self, upstream: Upstream, now: float, outcome: Outcome) -> None:
        """Eject ``upstream`` unless it is out already or the pool cannot spare it."""
        if self._is_ejected(upstream, now) or not self._can_spare(upstream, now):
            return
        settings = self.outlier
        if upstream.ejections:
            forgiven = int((now - upstream._returned_at) // settings.base_ejection_time)
            upstream.ejections = max(upstream.ejections - forgiven, 0)
        upstream.ejections += 1
        duration = min(settings.base_ejection_time * upstream.ejections, settings.max_ejection_time)
        upstream.ejected_until = now + duration
        failures, upstream.consecutive_failures = upstream.consecutive_failures, 0
        detail = f"{failures} failures in a row, last {outcome}; out for {duration:g} s"
        self._emit(upstream.url, "ejected", detail)

    def _can_spare(self, upstream: Upstream, now: float) -> bool:
        """Never the last available upstream, nor more than ``max_ejected_percent``."""
        others_up = any(
            u is not upstream and u.healthy is not False and not self._is_ejected(u, now)
            for u in self.upstreams
        )
        ejected = 1 + sum(self._is_ejected(u, now) for u in self.upstreams)
        return others_up and ejected * 100 <= self.outlier.max_ejected_percent * len(self.upstreams)

    def _emit(self, url: str, kind: EventKind, detail: str) -> None:
        if self._on_event is not None:
            self._on_event(UpstreamEvent(self.route, url, kind, detail))

    def __repr__(self) -> str:
        return f"<Pool {self.route} {self.balancing.policy} upstreams={len(self.upstreams)}>"
