"""What every rate-limit store shares: a :class:`Limit`, the :class:`Decision` on one
request, the GCRA step that makes it (:func:`gcra`), and the :class:`BucketStore`
interface the stores (:mod:`.memory_store`, :mod:`.shared_store`, :mod:`.redis_store`)
implement and the limiter (:mod:`.limiter`) uses.

The stores import this module, never the limiter, so that the limiter may import them:
the algorithm itself is said in :mod:`flowops.gateway.policies.ratelimit.limiter`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeAlias

from flowops.errors import ServiceError

__all__ = [
    "SLACK",
    "BucketStore",
    "Clock",
    "Decision",
    "Limit",
    "StoreStats",
    "StoreUnavailableError",
    "decision_for",
    "gcra",
]

Clock: TypeAlias = Callable[[], float]
"""A function returning the time in seconds (``time.monotonic``, a test's fake clock)."""

SLACK: Final = 1e-6
"""Seconds a request may come early and still be admitted: absorbs float rounding (a
bucket of 3 at 3/s must admit 3), and never adds up, since ``tat`` itself stays exact."""


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` tokens a second into a bucket of ``burst`` tokens; a request takes one.

    >>> limit = Limit(rate=4, burst=10)
    >>> limit.interval, limit.window
    (0.25, 2.5)
    """

    rate: float
    burst: int
    interval: float = field(init=False, repr=False)
    """Seconds per token."""
    window: float = field(init=False, repr=False)
    """Seconds to fill an empty bucket."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate must be a positive number, got {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst}")
        object.__setattr__(self, "interval", 1.0 / self.rate)
        object.__setattr__(self, "window", self.burst / self.rate)

    def split(self, processes: int) -> Limit:
        """Each of ``processes`` processes' share, for memory stores that should add up
        to this limit. Right when callers spread requests over many connections (the
        kernel spreads connections, not requests); a caller on one connection gets a
        share only. The burst share is rounded down, and is at least 1.

        >>> Limit(rate=100, burst=50).split(4)
        Limit(rate=25.0, burst=12)
        """
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        return Limit(self.rate / processes, max(1, self.burst // processes))


@dataclass(slots=True)
class Decision:
    """What the limiter said about one request.

    ``limit`` is the burst, ``remaining`` the whole tokens left, ``reset_after`` the
    seconds until the bucket is full again, ``retry_after`` the seconds until a refused
    request would be admitted (0 when admitted). ``degraded`` marks a decision made by
    the ``on_store_error`` policy because the store did not answer; its other numbers
    then describe no bucket. Treat it as read-only (it is not frozen: that costs 2 µs
    a request).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float = 0.0
    degraded: bool = False


def gcra(tat: float, now: float, limit: Limit) -> tuple[bool, float]:
    """Admit a request at ``now`` or not; returns the verdict and the bucket's ``tat``
    after it. The Redis script is this function, line for line."""
    base = tat if tat > now else now
    new = base + limit.interval
    if new - now > limit.window + SLACK:
        return False, base
    return True, new


def decision_for(allowed: bool, ahead: float, limit: Limit) -> Decision:
    """The decision for a bucket that is ``ahead`` seconds from full after the request."""
    tokens = (limit.window - ahead + SLACK) * limit.rate
    remaining = min(limit.burst, max(0, math.floor(tokens)))
    retry_after = 0.0 if allowed else max(0.0, ahead + limit.interval - limit.window)
    return Decision(allowed, limit.burst, remaining, ahead, retry_after)


class StoreUnavailableError(ServiceError):
    """The rate-limit store did not answer; ``retry_after`` is the seconds until it is
    tried again. :class:`RateLimiter` turns it into its ``on_store_error`` decision."""

    def __init__(self, target: str, reason: str, *, retry_after: float) -> None:
        super().__init__(target, reason)
        self.retry_after = retry_after


class BucketStore(Protocol):
    """Where buckets live. ``bucket`` names one caller on one route."""

    async def take(self, bucket: str, limit: Limit) -> Decision:
        """Take a token from ``bucket`` if it has one; raises :class:`StoreUnavailableError`."""
        ...

    async def close(self) -> None:
        """Release connections; the store is not used after this."""
        ...


@dataclass
class StoreStats:
    """What a store's outages cost, for ``/metrics``.

    ``errors`` counts the decisions the store could not make (each was made by the
    route's ``on_store_error`` policy instead); ``outages`` the times it stopped
    answering; ``available`` is False during an outage.
    """

    errors: int = 0
    outages: int = 0
    available: bool = True
