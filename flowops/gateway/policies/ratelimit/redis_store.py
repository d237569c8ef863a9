"""The Redis bucket store: one rate limit shared by every gateway process and replica.

:class:`RedisStore` keeps each bucket of :mod:`~flowops.gateway.policies.ratelimit.limiter`
as one Redis key, ``flowops:ratelimit:<route>:<caller>``, holding the bucket's theoretical arrival
time. A decision is one Lua script, run atomically by the server: it reads the key,
applies the same GCRA step as the memory store (``gcra``, line for line, on the same
IEEE doubles, so both stores decide alike), and writes the key back with an expiry at
the moment the bucket is full, when an absent key means the same thing.

redis-py is imported when the first store is built, not with this module's users: it
adds about 130 ms to start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import urlsplit

from flowops.gateway.policies.ratelimit.base import SLACK as _SLACK
from flowops.gateway.policies.ratelimit.base import (
    Clock,
    Decision,
    Limit,
    StoreStats,
    StoreUnavailableError,
    decision_for,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["KEY_PREFIX", "RedisStore"]

log = logging.getLogger("flowops.gateway")

KEY_PREFIX: Final = "flowops:ratelimit:"
"""Where the store's keys live: ``flowops:ratelimit:<route>:<caller>``."""

_ORIGIN: Final = 1_700_000_000
"""The server's clock counts from here (2023-11-14): seconds since 1970 are 2**30 and more,
where a double's steps are 0.24 µs, and each token's time would be rounded by as much; from
here they are 0.015 µs, and a decision errs by less than a millionth of the rate's time."""

_LUA: Final = """
-- GCRA (see flowops/gateway/policies/ratelimit/base.py): KEYS[1] holds the bucket's tat,
-- in seconds.
-- ARGV[1]: seconds per token; ARGV[2]: seconds to fill the bucket;
-- ARGV[3]: the time now in seconds, or '' for this server's clock, counted from ORIGIN.
-- Reply: 'a' (admitted) or 'r' (refused), then the seconds until the bucket is full.
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = (tonumber(t[1]) - ORIGIN) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[3])
end
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local base = tat
if now > tat then base = now end
local new = base + interval
if new - now > window + SLACK then
  return string.format('r%.17g', base - now)
end
local ahead = new - now
redis.call('SET', KEYS[1], string.format('%.17g', new), 'PX', math.ceil(ahead * 1000))
return string.format('a%.17g', ahead)
""".replace("SLACK", repr(_SLACK)).replace("ORIGIN", str(_ORIGIN))

_SHA: Final = hashlib.sha1(_LUA.encode()).hexdigest()  # the script's name in Redis
_BATCH: Final = 256  # decisions per pipeline at most
_ADMITTED: Final = ord("a")  # one string per reply: a fifth cheaper to parse than a list


@dataclass(frozen=True, slots=True)
class _Failure:
    """What a waiting request gets when its batch could not be decided."""

    reason: str
    retry_after: float


_Request: TypeAlias = "tuple[tuple[str, str, str, str], asyncio.Future[Any]]"
"""A queued decision: the script's key and arguments, and where its reply goes."""


class RedisStore:
    """Buckets in Redis, shared by every gateway process and replica that uses it.

    Each decision is one atomic Lua script (``EVALSHA``) that reads the bucket, decides
    and writes it back with an expiry at the moment it is full. Time is the Redis
    server's (``TIME``), so replicas agree whatever their clocks; a ``clock`` given here
    is used instead (tests pass a fake one; replicas passing ``time.time`` must keep
    their clocks in step).

    Decisions asked for while a batch is on its way wait for the next one: one
    pipeline carries all that waits (up to 256), one round trip after another. Once
    requests overlap, that halves the client's work per decision (measured on 2 busy
    cores, 50 requests at a time: 66-73 µs a decision, against 136-141 µs sent one by
    one); a request alone pays one extra loop iteration for it.

    A batch waits at most ``timeout`` seconds. When Redis fails it (refused, timed out,
    or refusing commands: loading, read-only, out of memory), :meth:`take` raises
    :class:`StoreUnavailableError`, the outage is logged once, and for
    ``retry_interval`` seconds decisions fail at once, without a network call; then one
    request tries Redis again, and so on until it answers (the client reconnects by
    itself). ``monotonic`` times that interval.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.25,
        retry_interval: float = 1.0,
        clock: Clock | None = None,
        prefix: str = KEY_PREFIX,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.target = _redact(url)
        self.stats = StoreStats()
        self._client = _connect(url, timeout)
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock
        self._prefix = prefix
        self._monotonic = monotonic
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._probing = False
        self._queue: list[_Request] = []
        self._sender: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"RedisStore({self.target})"

    async def take(self, bucket: str, limit: Limit) -> Decision:
        """Take a token from ``bucket``; raises :class:`StoreUnavailableError` when Redis
        does not answer in time, or is known to be down."""
        self._check_reachable()
        now = "" if self._clock is None else repr(self._clock())
        args = (self._prefix + bucket, repr(limit.interval), repr(limit.window), now)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, waiter))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all())
        reply = await waiter
        if isinstance(reply, _Failure):
            raise StoreUnavailableError(self.target, reply.reason, retry_after=reply.retry_after)
        return decision_for(reply[0] == _ADMITTED, float(reply[1:]), limit)

    async def close(self) -> None:
        """Fail what still waits, and close the connection pool."""
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        _settle(self._queue, _Failure("the store is closed", 0.0))
        self._queue = []
        await self._client.aclose()

    async def _send_all(self) -> None:
        """Send batches until nothing waits (started by the first request that waits)."""
        try:
            while self._queue:
                batch, self._queue = self._queue[:_BATCH], self._queue[_BATCH:]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[_Request]) -> None:
        if self._down_since is not None and not self._probing:  # went down meanwhile
            self.stats.errors += len(batch)
            _settle(batch, _Failure("unavailable", self._retry_interval))
            return
        try:
            async with asyncio.timeout(self._timeout):
                replies = await self._run([args for args, _ in batch])
        except asyncio.CancelledError:
            _settle(batch, _Failure("the store is closed", 0.0))
            raise
        except Exception as exc:
            if not _is_store_failure(exc):  # a bug, not an outage: the callers see it
                self._probing = False
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(exc)
                return
            _settle(batch, self._failed(exc, len(batch)))
            return
        self._answered()
        for (_, waiter), reply in zip(batch, replies, strict=True):
            if not waiter.done():
                waiter.set_result(reply)

    async def _run(self, calls: list[tuple[str, str, str, str]]) -> list[Any]:
        """One pipeline of script calls; after a Redis restart, load the script and
        send again the calls it refused. A command error raises: the store failed."""
        replies = await self._pipeline(calls)
        missing = [i for i, reply in enumerate(replies) if _is_no_script(reply)]
        if missing:
            await self._client.script_load(_LUA)
            again = await self._pipeline([calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _pipeline(self, calls: list[tuple[str, str, str, str]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for key, *args in calls:
            pipe.evalsha(_SHA, 1, key, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    def _check_reachable(self) -> None:
        """Fail at once during an outage, except for one request every retry interval."""
        if self._down_since is None:
            return
        wait = self._retry_at - self._monotonic()
        if wait > 0 or self._probing:
            self.stats.errors += 1
            raise StoreUnavailableError(self.target, "unavailable", retry_after=max(wait, 0.0))
        self._probing = True

    def _failed(self, exc: BaseException, count: int) -> _Failure:
        """Count ``count`` decisions not made; log the start of an outage."""
        now = self._monotonic()
        self._probing = False
        self._retry_at = now + self._retry_interval
        self.stats.errors += count
        reason = str(exc) or f"{type(exc).__name__} after {self._timeout} s"
        if self._down_since is None:
            self._down_since = now
            self.stats.outages += 1
            self.stats.available = False
            log.warning(
                "rate-limit store %s does not answer (%s); each route's on_store_error "
                "decides until it does (tried again every %s s)",
                self.target,
                reason,
                self._retry_interval,
            )
        return _Failure(reason, self._retry_interval)

    def _answered(self) -> None:
        if self._down_since is None:
            return
        log.warning(
            "rate-limit store %s answers again after %.1f s (%d decisions made without it)",
            self.target,
            self._monotonic() - self._down_since,
            self.stats.errors,
        )
        self._down_since = None
        self._probing = False
        self.stats.available = True


def _settle(batch: list[_Request], failure: _Failure) -> None:
    for _, waiter in batch:
        if not waiter.done():
            waiter.set_result(failure)


def _connect(url: str, timeout: float) -> Redis:
    """A client that fails fast: one immediate retry (for a pooled connection the server
    closed) instead of redis-py's ten with backoff."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )


def _is_no_script(reply: object) -> bool:
    from redis.exceptions import NoScriptError

    return isinstance(reply, NoScriptError)


def _is_store_failure(exc: Exception) -> bool:
    """Redis errors, socket errors and timeouts: the store failed, not the caller."""
    from redis.exceptions import RedisError

    return isinstance(exc, RedisError | OSError | TimeoutError)


def _redact(url: str) -> str:
    """The URL without its user name and password, fit for logs and metrics.

    >>> _redact("redis://:s3cret@cache.internal:6380/2")
    'redis://cache.internal:6380/2'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
