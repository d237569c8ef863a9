"""Rate limiting: a token bucket per route and caller, in memory, shared memory or Redis.

Each route with a ``rate_limit`` gets a :class:`RateLimiter`. A caller's bucket holds up
to ``burst`` tokens and refills at ``rate`` tokens a second; a request takes one token or
is refused with ``429``, ``Retry-After`` and the ``RateLimit-*`` headers
(:func:`rate_limit_headers`). The caller is whoever the auth layer says it is (an API
key's name, a JWT subject), or its address when the route is not authenticated.

The bucket is kept as one number, its *theoretical arrival time* (``tat``): the moment
it will be full again. This is GCRA, the generic cell rate algorithm, which admits
exactly the requests a token bucket admits::

    interval = 1 / rate                 seconds per token
    window   = burst / rate             seconds to fill an empty bucket
    new      = max(tat, now) + interval
    allowed  = new - now <= window      then tat = new; otherwise tat is unchanged
    tokens   = (window - (tat - now)) * rate

One number per bucket makes a Redis decision one short Lua script (read, compare, write
with an expiry at the moment the bucket is full, after which the key is as good as
absent), and lets the memory store drop any bucket whose ``tat`` has passed.

Three stores sit behind one interface (:class:`BucketStore`):

- :class:`MemoryStore`: exact, O(1) per decision, bounded memory. It limits **per
  process**: when the gateway runs N worker processes on one port (``SO_REUSEPORT``),
  each keeps its own buckets, so a caller whose connections land on several processes
  gets up to N times the rate. :meth:`Limit.split` divides a limit between processes
  for callers that spread their connections; a caller on one keep-alive connection then
  gets a share only, which is why it is not applied by default.
- ``SharedStore`` (:mod:`flowops.gateway.ratelimit_shared`): buckets in memory shared by
  the worker processes of one gateway (made before they are forked), exact across them,
  without a network round trip. Other hosts' replicas do not see them.
- ``RedisStore`` (:mod:`flowops.gateway.ratelimit_redis`): shared by every process and
  replica that names the same Redis; one atomic script per decision, timed by the Redis
  server's clock so that replicas agree. When Redis does not answer, each route's
  ``on_store_error`` decides (``allow`` by default), the store says so in the log once
  per outage, counts the decisions it could not make (:class:`StoreStats`), and tries
  Redis again every ``retry_interval`` seconds.

>>> import asyncio
>>> clock = iter([0.0, 0.0, 0.0, 0.5]).__next__
>>> limiter = RateLimiter("iris", Limit(rate=2, burst=2), MemoryStore(clock=clock))
>>> [asyncio.run(limiter.acquire("id:alice")).allowed for _ in range(4)]
[True, True, False, True]
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeAlias
from urllib.parse import quote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from flowops.config import section
from flowops.errors import ServiceError
from flowops.gateway.callers import CallerKey

if TYPE_CHECKING:
    from flowops.gateway.ratelimit_redis import RedisStore
    from flowops.gateway.ratelimit_shared import SharedStore, SharedTable

__all__ = [
    "BucketStore",
    "Decision",
    "Limit",
    "MemoryStore",
    "RateLimitSettings",
    "RateLimiter",
    "RateLimiters",
    "StoreStats",
    "StoreUnavailableError",
    "rate_limit_headers",
]

Clock: TypeAlias = Callable[[], float]
"""A function returning the time in seconds (``time.monotonic``, a test's fake clock)."""

_SLACK: Final = 1e-6
"""Seconds a request may come early and still be admitted: absorbs float rounding (a
bucket of 3 at 3/s must admit 3), and never adds up, since ``tat`` itself stays exact."""

_SWEEP: Final = 2
"""Full buckets the memory store drops per new bucket: more than one, so it keeps up."""


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


def _gcra(tat: float, now: float, limit: Limit) -> tuple[bool, float]:
    """Admit a request at ``now`` or not; returns the verdict and the bucket's ``tat``
    after it. The Redis script is this function, line for line."""
    base = tat if tat > now else now
    new = base + limit.interval
    if new - now > limit.window + _SLACK:
        return False, base
    return True, new


def _decision(allowed: bool, ahead: float, limit: Limit) -> Decision:
    """The decision for a bucket that is ``ahead`` seconds from full after the request."""
    tokens = (limit.window - ahead + _SLACK) * limit.rate
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


class MemoryStore:
    """Buckets in this process's memory: exact, O(1), bounded. Limits **per process**.

    Buckets are kept in the order they were last drawn from. A bucket whose ``tat`` has
    passed is full, exactly as an absent one, so each new bucket first drops up to two
    such buckets from the front: memory follows the callers seen within the longest
    ``window`` of the routes that share the store.
    ``max_buckets`` bounds it against a flood of new callers: past it, the least
    recently drawn bucket is dropped even if not full (its caller gets a full bucket
    back, so the limit is lenient for it only), counted in ``forced_evictions``.
    """

    def __init__(self, *, max_buckets: int = 100_000, clock: Clock = time.monotonic) -> None:
        if max_buckets < 1:
            raise ValueError(f"max_buckets must be at least 1, got {max_buckets}")
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._max_buckets = max_buckets
        self._clock = clock
        self.forced_evictions = 0
        self.stats = StoreStats()

    def __len__(self) -> int:
        return len(self._tats)

    def __repr__(self) -> str:
        return f"MemoryStore({len(self)} buckets, max {self._max_buckets})"

    async def take(self, bucket: str, limit: Limit) -> Decision:
        """Take a token from ``bucket`` (see :meth:`take_now`)."""
        return self.take_now(bucket, limit)

    def take_now(self, bucket: str, limit: Limit) -> Decision:
        """The decision, without a coroutine: the memory store never waits."""
        now = self._clock()
        tats = self._tats
        tat = tats.get(bucket)
        if tat is None:
            self._make_room(now)
            tat = now
        allowed, after = _gcra(tat, now, limit)
        if allowed:
            tats[bucket] = after
            tats.move_to_end(bucket)
        return _decision(allowed, after - now, limit)

    async def close(self) -> None:
        """Forget every bucket."""
        self._tats.clear()

    def _make_room(self, now: float) -> None:
        tats = self._tats
        for _ in range(_SWEEP):
            if not tats or next(iter(tats.values())) > now:
                break
            tats.popitem(last=False)
        if len(tats) >= self._max_buckets:
            tats.popitem(last=False)
            self.forced_evictions += 1


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


class RateLimiter:
    """One route's limit: a bucket per caller, in ``store`` (shared between routes).

    ``key`` says who the caller is (see :meth:`key_for`); ``on_store_error`` what to do
    when the store does not answer: ``allow`` the request (the default: a down Redis
    does not take the models down) or ``deny`` it. Decisions made so are ``degraded``
    and counted in ``degraded_total``.
    """

    def __init__(
        self,
        route: str,
        limit: Limit,
        store: BucketStore,
        *,
        key: str = "api_key",
        on_store_error: Literal["allow", "deny"] = "allow",
    ) -> None:
        self.route = route
        self.limit = limit
        self.store = store
        self.on_store_error = on_store_error
        self.degraded_total = 0
        self._caller = CallerKey.parse(key)
        self._prefix = quote(route, safe="") + ":"

    def __repr__(self) -> str:
        return f"RateLimiter({self.route!r}, {self.limit}, {self.store!r})"

    @classmethod
    def from_settings(
        cls, route: str, settings: RateLimitSettings, store: BucketStore
    ) -> RateLimiter:
        """The limiter ``settings`` describe, keeping its buckets in ``store``."""
        return cls(
            route,
            settings.limit(),
            store,
            key=settings.key,
            on_store_error=settings.on_store_error,
        )

    async def acquire(self, key: str) -> Decision:
        """Take a token for caller ``key`` (from :meth:`key_for`)."""
        try:
            return await self.store.take(self._prefix + key, self.limit)
        except StoreUnavailableError as exc:
            self.degraded_total += 1
            return self._fallback(exc.retry_after)

    def key_for(
        self, *, identity: str | None, address: str | None, headers: Mapping[str, str]
    ) -> str:
        """The caller's key, by the route's ``key`` setting (see :mod:`~flowops.gateway.callers`).

        >>> limiter = RateLimiter("iris", Limit(1, 1), MemoryStore())
        >>> limiter.key_for(identity="alice", address="10.0.0.7", headers={})
        'id:alice'
        >>> limiter.key_for(identity=None, address="10.0.0.7", headers={})
        'ip:10.0.0.7'
        """
        return self._caller.of(identity=identity, address=address, headers=headers)

    def _fallback(self, retry_after: float) -> Decision:
        burst = self.limit.burst
        if self.on_store_error == "allow":
            return Decision(True, burst, burst, 0.0, degraded=True)
        return Decision(False, burst, 0, retry_after, retry_after, degraded=True)


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """The response headers of a decision: ``RateLimit-Limit``, ``RateLimit-Remaining``
    and ``RateLimit-Reset`` (IETF draft, whole seconds until the bucket is full), and
    ``Retry-After`` (whole seconds, at least 1) when refused. A degraded decision
    describes no bucket, so it gets ``Retry-After`` alone, when refused.

    >>> refused = Decision(False, limit=10, remaining=0, reset_after=4.5, retry_after=0.25)
    >>> for name, value in rate_limit_headers(refused).items():
    ...     print(f"{name}: {value}")
    RateLimit-Limit: 10
    RateLimit-Remaining: 0
    RateLimit-Reset: 5
    Retry-After: 1
    """
    headers: dict[str, str] = {}
    if not decision.degraded:
        headers["RateLimit-Limit"] = str(decision.limit)
        headers["RateLimit-Remaining"] = str(decision.remaining)
        headers["RateLimit-Reset"] = str(_whole_seconds(decision.reset_after))
    if not decision.allowed:
        headers["Retry-After"] = str(max(1, _whole_seconds(decision.retry_after)))
    return headers


def _whole_seconds(seconds: float) -> int:
    """Rounded up, ignoring float dust: 2.0000000001 s is 2 s."""
    return max(0, math.ceil(seconds - _SLACK))


class RateLimitSettings(BaseModel):
    """A route's rate limit (``routes[].rate_limit``); none means no limit.

    >>> settings = RateLimitSettings.parse({"rate": 5, "key": "header:X-Tenant"})
    >>> settings.limit(), settings.store
    (Limit(rate=5.0, burst=5), 'memory')
    >>> RateLimitSettings.parse({"rate": 5, "store": "redis"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flowops.errors.ConfigError: config: rate_limit.redis_url: Value error, store is redis: ...
    """

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(
        gt=0, le=100_000, allow_inf_nan=False, description="tokens a second: the sustained rate"
    )
    burst: int | None = Field(
        None, ge=1, le=10_000_000, description="bucket capacity; default: one second's tokens"
    )
    key: str = Field(
        "api_key",
        description="the caller: api_key (auth's identity, else the client address), "
        "client (its address), or header:<name> (that header's value, else the address)",
    )
    store: Literal["memory", "shared", "redis"] = Field(
        "memory",
        description="memory: per gateway process; shared: by the gateway's worker processes "
        "(one host); redis: by all processes and replicas",
    )
    redis_url: SecretStr | None = Field(
        None,
        validate_default=True,
        description="redis://[:password@]host:port/db (rediss:// for TLS, unix:// for a socket)",
    )
    redis_timeout: float = Field(
        0.25, gt=0, le=60, description="seconds a decision waits for Redis before on_store_error"
    )
    on_store_error: Literal["allow", "deny"] = Field(
        "allow", description="when Redis does not answer: admit requests, or refuse them (503)"
    )

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, key: str = "rate_limit") -> RateLimitSettings:
        """Validate ``data``; a bad value is a :class:`ConfigError` naming ``key.<field>``."""
        return section(cls, data, key)

    def limit(self) -> Limit:
        """The token bucket: ``rate``, and ``burst`` or one second's tokens (at least 1)."""
        burst = self.burst if self.burst is not None else max(1, math.ceil(self.rate))
        return Limit(self.rate, burst)

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        CallerKey.parse(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            if info.data.get("store") == "redis":
                raise ValueError("store is redis: set redis_url (redis://host:port/db)")
            return None
        scheme = value.get_secret_value().partition("://")[0]
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return value


class RateLimiters:
    """Builds each route's limiter from its settings, with one store per kind and URL:
    routes share the memory store (one ``max_buckets`` bound), the shared-memory store
    (``shared``: the table the gateway made before forking its workers, else one of this
    process's own) and one Redis client per URL. :meth:`close` closes them all.
    """

    def __init__(
        self,
        *,
        max_buckets: int = 100_000,
        retry_interval: float = 1.0,
        shared: SharedTable | None = None,
    ) -> None:
        self._max_buckets = max_buckets
        self._retry_interval = retry_interval
        self._table = shared
        self._memory: MemoryStore | None = None
        self._shared: SharedStore | None = None
        self._redis: dict[tuple[str, float], RedisStore] = {}

    def limiter(self, route: str, settings: RateLimitSettings) -> RateLimiter:
        """The limiter of ``route``."""
        return RateLimiter.from_settings(route, settings, self._store(settings))

    def stores(self) -> list[MemoryStore | SharedStore | RedisStore]:
        """Every store built so far."""
        local = [store for store in (self._memory, self._shared) if store is not None]
        return [*local, *self._redis.values()]

    async def close(self) -> None:
        """Close every store."""
        for store in self.stores():
            await store.close()

    def _store(self, settings: RateLimitSettings) -> MemoryStore | SharedStore | RedisStore:
        if settings.store == "shared":
            return self._shared_store()
        if settings.store == "memory" or settings.redis_url is None:
            if self._memory is None:
                self._memory = MemoryStore(max_buckets=self._max_buckets)
            return self._memory
        from flowops.gateway.ratelimit_redis import RedisStore

        url = settings.redis_url.get_secret_value()
        found = self._redis.get((url, settings.redis_timeout))
        if found is None:
            found = RedisStore(
                url, timeout=settings.redis_timeout, retry_interval=self._retry_interval
            )
            self._redis[url, settings.redis_timeout] = found
        return found

    def _shared_store(self) -> SharedStore:
        from flowops.gateway.ratelimit_shared import SharedStore, SharedTable

        if self._shared is None:
            table = self._table or SharedTable(self._max_buckets)
            self._shared = SharedStore(table)
        return self._shared
