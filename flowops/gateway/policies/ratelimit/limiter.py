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
- ``SharedStore`` (:mod:`~flowops.gateway.policies.ratelimit.shared_store`): buckets in
  memory shared by the worker processes of one gateway (made before they are forked),
  exact across them, without a network round trip. Other hosts' replicas do not see them.
- ``RedisStore`` (:mod:`~flowops.gateway.policies.ratelimit.redis_store`): shared by every
  process and replica that names the same Redis; one atomic script per decision, timed by the Redis
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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal
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
from flowops.gateway.callers import CallerKey
from flowops.gateway.policies.ratelimit.base import SLACK as _SLACK
from flowops.gateway.policies.ratelimit.base import (
    BucketStore,
    Decision,
    Limit,
    StoreUnavailableError,
)
from flowops.gateway.policies.ratelimit.memory_store import MemoryStore

if TYPE_CHECKING:
    from flowops.gateway.policies.ratelimit.redis_store import RedisStore
    from flowops.gateway.policies.ratelimit.shared_store import SharedStore, SharedTable

__all__ = ["RateLimitSettings", "RateLimiter", "RateLimiters", "rate_limit_headers"]


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
        from flowops.gateway.policies.ratelimit.redis_store import RedisStore

        url = settings.redis_url.get_secret_value()
        found = self._redis.get((url, settings.redis_timeout))
        if found is None:
            found = RedisStore(
                url, timeout=settings.redis_timeout, retry_interval=self._retry_interval
            )
            self._redis[url, settings.redis_timeout] = found
        return found

    def _shared_store(self) -> SharedStore:
        from flowops.gateway.policies.ratelimit.shared_store import SharedStore, SharedTable

        if self._shared is None:
            table = self._table or SharedTable(self._max_buckets)
            self._shared = SharedStore(table)
        return self._shared
