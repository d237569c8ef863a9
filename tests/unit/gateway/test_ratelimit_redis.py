"""flowops.gateway.policies.ratelimit.redis_store without a Redis: what the store does
when nothing, or something silent, listens where Redis should be (its outage
bookkeeping), and its URL in logs. The store against a real redis-server:
tests/integration/test_gateway_ratelimit.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from flowops.broker import free_port
from flowops.gateway.policies.ratelimit.base import Limit, StoreUnavailableError
from flowops.gateway.policies.ratelimit.limiter import RateLimiter
from flowops.gateway.policies.ratelimit.redis_store import RedisStore, _redact

LIMIT = Limit(10, 5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A port of 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"redis://:secret@127.0.0.1:{sock.getsockname()[1]}/0"


@pytest_asyncio.fixture
async def silent_url() -> AsyncIterator[str]:
    """A server that accepts connections and never answers, as a hung Redis would."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    port = free_port()
    server = await asyncio.start_server(hang, "127.0.0.1", port)
    async with server:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.mark.asyncio
async def test_an_outage_is_logged_once_counted_and_retried_every_interval(
    refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    store = RedisStore(refused_url, retry_interval=2.0, monotonic=clock)
    caplog.set_level(logging.WARNING, logger="flowops.gateway")
    try:
        with pytest.raises(StoreUnavailableError) as first:
            await store.take("iris:id:alice", LIMIT)
        assert first.value.retry_after == 2.0
        waits = []
        for _ in range(10):
            clock.now += 0.1
            with pytest.raises(StoreUnavailableError) as caught:
                await store.take("iris:id:alice", LIMIT)
            waits.append(round(caught.value.retry_after, 6))
        assert waits == [round(2.0 - 0.1 * i, 6) for i in range(1, 11)]  # no new attempt
        clock.now += 1.0  # past the interval: one request tries again, and fails
        with pytest.raises(StoreUnavailableError) as again:
            await store.take("iris:id:alice", LIMIT)
        assert again.value.retry_after == 2.0
    finally:
        await store.close()
    assert (store.stats.errors, store.stats.outages, store.stats.available) == (12, 1, False)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "does not answer" in messages[0]
    assert "secret" not in messages[0]


@pytest.mark.asyncio
async def test_the_limiters_policy_decides_while_the_store_is_down(refused_url: str) -> None:
    store = RedisStore(refused_url)
    allow = RateLimiter("iris", LIMIT, store)
    deny = RateLimiter("wine", LIMIT, store, on_store_error="deny")
    try:
        allowed = [await allow.acquire("id:alice") for _ in range(3)]
        denied = [await deny.acquire("id:alice") for _ in range(3)]
    finally:
        await store.close()
    assert all(d.allowed and d.degraded for d in allowed)
    assert not any(d.allowed for d in denied)
    assert all(d.degraded for d in denied)
    assert (allow.degraded_total, deny.degraded_total, store.stats.errors) == (3, 3, 6)


@pytest.mark.asyncio
async def test_a_silent_redis_times_out_into_the_policy(silent_url: str) -> None:
    store = RedisStore(silent_url, timeout=0.05)
    try:
        with pytest.raises(StoreUnavailableError, match="TimeoutError"):
            await store.take("iris:id:alice", LIMIT)
    finally:
        await store.close()
    assert (store.stats.outages, store.stats.available) == (1, False)


@pytest.mark.asyncio
async def test_requests_that_overlap_share_the_outage(refused_url: str) -> None:
    store = RedisStore(refused_url)
    try:
        results = await asyncio.gather(
            *(store.take(f"iris:id:{n}", LIMIT) for n in range(20)), return_exceptions=True
        )
    finally:
        await store.close()
    assert all(isinstance(result, StoreUnavailableError) for result in results)
    assert (store.stats.errors, store.stats.outages) == (20, 1)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6380/2", "redis://cache:6380/2"),
        ("rediss://user:s3cret@cache.example/0", "rediss://cache.example/0"),
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ("unix:///run/redis.sock?password=s3cret", "unix:///run/redis.sock"),
    ],
)
def test_urls_in_logs_lose_their_credentials(url: str, shown: str) -> None:
    assert _redact(url) == shown
