"""What the proxy keeps: each route's live state (:class:`RouteState`, its
:class:`Variant` s) and what one request became (:class:`Exchange`), which the proxy, the
traffic events (:mod:`~flowops.gateway.traffic`) and the shadow copies
(:mod:`~flowops.gateway.shadow`, with a :class:`ShadowCopy` of the request) share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowops.gateway import split as splitting
from flowops.gateway.auth import ANONYMOUS, Identity
from flowops.gateway.callers import CallerKey
from flowops.gateway.config import RouteSettings
from flowops.gateway.policies.ratelimit.limiter import RateLimiter
from flowops.gateway.policies.retry import RetryPolicy
from flowops.gateway.target import Target
from flowops.gateway.upstreams import Pool

__all__ = ["Exchange", "RouteState", "ShadowCopy", "Variant"]


@dataclass
class Variant:
    """Upstreams that answer as one model version: a route's only ones, a side of an A/B
    split (``name`` set), or its shadow."""

    name: str | None
    version: str
    pool: Pool


@dataclass
class RouteState:
    """A route's settings with the live objects its policies need."""

    settings: RouteSettings
    split: splitting.Split[Variant]
    retry: RetryPolicy
    limiter: RateLimiter | None
    sticky: CallerKey | None = None
    shadow: Variant | None = None
    shadows_in_flight: int = 0

    @property
    def pools(self) -> list[Pool]:
        """Every pool of the route, its shadow's last."""
        pools = [variant.pool for variant in self.split.items]
        return pools if self.shadow is None else [*pools, self.shadow.pool]

    def available(self) -> bool:
        """Whether a request could be answered now (by any variant it may be sent to)."""
        return any(variant.pool.available() for variant in self.split.weighted())


@dataclass
class Exchange:
    """What one request became, for the access log, the metrics and the traffic event."""

    route: RouteState
    variant: Variant
    request_id: str
    started: float
    target: Target
    client: str
    identity: Identity = ANONYMOUS
    body: bytes = b""
    status: int = 0
    upstream: str | None = None
    tries: int = 0
    captured: bytearray | None = None
    response_type: str | None = None
    headers_at: float | None = None
    notes: list[str] = field(default_factory=list)
    forwarded: tuple[str, list[tuple[str, str]]] | None = None
    """The path and headers sent upstream (a shadow copy sends the same)."""


@dataclass(frozen=True, slots=True)
class ShadowCopy:
    """What a shadow copy needs of the request, kept past the request's handler."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    content_type: str | None
    request_id: str
