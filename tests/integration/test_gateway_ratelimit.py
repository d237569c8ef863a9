"""The Redis rate-limit store against a real ``redis-server`` (Debian's), on 127.0.0.1.

Each test starts a server of its own (it starts in a few milliseconds), so a test may
stop and restart it. Two ``RedisStore`` instances stand for two gateway processes: each
has its own connections, and only Redis is shared between them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from helpers import until
from redis.asyncio import Redis
from redis_server import RedisServer

from flowops.gateway.policies.ratelimit.base import Decision, Limit
from flowops.gateway.policies.ratelimit.limiter import RateLimiter
from flowops.gateway.policies.ratelimit.memory_store import MemoryStore
from flowops.gateway.policies.ratelimit.redis_store import KEY_PREFIX, RedisStore

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

RUN_SECONDS = 10.0  # the verification: limits hold to within 2% over 10 s


class FakeClock:
    def __init__(self, now: float = 1e8) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


@pytest_asyncio.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client, to look at the keys the stores write."""
    redis = Redis.from_url(redis_server.url)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_the_script_decides_exactly_as_the_memory_store(redis_server: RedisServer) -> None:
    """Same requests, same fake times: the same decisions, to the last bit.

    Redis expires a full bucket's key in real milliseconds, so the fake clock moves at
    least as far as the real one between two requests: a key Redis dropped is then a
    bucket the memory store sees full as well.
    """
    clock = FakeClock()
    redis, memory = RedisStore(redis_server.url, clock=clock), MemoryStore(clock=clock)
    limits = {"iris": Limit(5, 3), "wine": Limit(0.7, 1), "bulk": Limit(1000 / 3, 40)}
    rng = random.Random(7)
    before = time.monotonic()
    try:
        for _ in range(1500):
            step = rng.choice([0.0, 0.0, 0.001, 0.05, 0.3, 1 / 3, 2.0])
            now = time.monotonic()
            clock.now += max(step, now - before)
            before = now
            route = rng.choice(list(limits))
            bucket = f"{route}:id:caller-{rng.randrange(4)}"
            expected = memory.take_now(bucket, limits[route])
            assert await redis.take(bucket, limits[route]) == expected
    finally:
        await redis.close()


async def test_a_key_expires_when_its_bucket_is_full(
    redis_server: RedisServer, client: Redis
) -> None:
    store = RedisStore(redis_server.url)  # the server's clock
    limiter = RateLimiter("iris", Limit(10, 5), store)
    key = f"{KEY_PREFIX}iris:id:alice"
    try:
        assert (await limiter.acquire("id:alice")).remaining == 4
        assert 0 < await client.pttl(key) <= 101  # full again in 0.1 s (ms, rounded up)
        for _ in range(4):
            await limiter.acquire("id:alice")
        assert 400 < await client.pttl(key) <= 501
        refused = await limiter.acquire("id:alice")
    finally:
        await store.close()
    assert not refused.allowed
    assert 0 < refused.retry_after <= 0.1 + 1e-6
    assert await client.keys(f"{KEY_PREFIX}*") == [key.encode()]


async def test_two_processes_share_one_bucket(redis_server: RedisServer) -> None:
    clock = FakeClock()
    stores = [RedisStore(redis_server.url, clock=clock) for _ in range(2)]
    first, second = (RateLimiter("iris", Limit(2, 6), store) for store in stores)
    try:
        taken = [await limiter.acquire("id:alice") for limiter in [first, second] * 4]
        assert [d.allowed for d in taken] == [True] * 6 + [False] * 2
        clock.now += 1.0  # two tokens, whoever takes them
        assert (await second.acquire("id:alice")).allowed
        assert (await first.acquire("id:alice")).allowed
        assert not (await second.acquire("id:alice")).allowed
    finally:
        for store in stores:
            await store.close()


async def offer(
    limiter: RateLimiter, per_second: float, stop_at: float
) -> list[tuple[float, float, Decision]]:
    """Requests at ``per_second`` from 8 concurrent callers until ``stop_at``; each
    decision with the times it was asked for and came back."""
    decisions: list[tuple[float, float, Decision]] = []

    async def caller() -> None:
        while time.monotonic() < stop_at:
            asked = time.monotonic()
            decision = await limiter.acquire("id:alice")
            decisions.append((asked, time.monotonic(), decision))
            await asyncio.sleep(8 / per_second)

    await asyncio.gather(*(caller() for _ in range(8)))
    return decisions


@pytest.mark.slow
async def test_two_processes_hold_the_limit_to_2_percent_over_10_s(
    redis_server: RedisServer,
) -> None:
    """Two stores offer three times the rate between them, on the server's clock.

    The server judged each request between its asking and its answer, so the time over
    which it admitted lies between (last asked - first answered) and (last answered -
    first asked): the admissions must lie between those two, 2% looser each way (a loaded
    machine widens the gap, not the rule).
    """
    rate, burst = 100.0, 20
    stores = [RedisStore(redis_server.url) for _ in range(2)]
    limiters = [RateLimiter("iris", Limit(rate, burst), store) for store in stores]
    start = time.monotonic()
    try:
        runs = await asyncio.gather(
            *(offer(limiter, 1.5 * rate, start + RUN_SECONDS) for limiter in limiters)
        )
    finally:
        for store in stores:
            await store.close()
    asked = [at for run in runs for at, _, _ in run]
    answered = [at for run in runs for _, at, _ in run]
    decisions = [decision for run in runs for _, _, decision in run]
    admitted = sum(decision.allowed for decision in decisions)
    fewest = burst + rate * (max(asked) - min(answered))
    most = burst + rate * (max(answered) - min(asked))
    assert not any(decision.degraded for decision in decisions)
    assert len(decisions) > 1.2 * most  # offered faster than the rate
    assert all(sum(d.allowed for _, _, d in run) > 0.2 * admitted for run in runs)  # both
    assert 0.98 * fewest <= admitted <= 1.02 * most, (admitted, fewest, most)


async def test_redis_stopped_mid_run_allow_admits_and_the_limit_returns_with_it(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Two processes under load lose Redis, decide by ``allow``, and limit again once
    it is back (the restarted server has lost the script; the store loads it again)."""
    caplog.set_level(logging.WARNING, logger="flowops.gateway")
    stores = [RedisStore(redis_server.url, retry_interval=0.05) for _ in range(2)]
    limiters = [RateLimiter("iris", Limit(50, 5), store) for store in stores]
    decisions: list[Decision] = []
    running = True

    async def load(limiter: RateLimiter) -> None:
        while running:
            decisions.append(await limiter.acquire("id:alice"))
            await asyncio.sleep(0.002)

    async def run_of(predicate: str) -> int:
        """Wait until the last decisions are all of one kind; how many were made by then."""

        def held() -> int:
            recent = decisions[-20:]
            same = len(recent) == 20 and all(_kind(d) == predicate for d in recent)
            return len(decisions) if same else 0

        found: int = await until(held, f"a run of {predicate} decisions", interval=0.01)
        return found

    tasks = [asyncio.create_task(load(limiter)) for limiter in limiters]
    try:
        await run_of("limited")
        redis_server.stop()
        down = await run_of("degraded")
        redis_server.start()
        back = await run_of("limited")
    finally:
        running = False
        await asyncio.gather(*tasks)
        for store in stores:
            await store.close()
    during = decisions[down - 20 : down]
    assert all(d.allowed and d.degraded for d in during)
    assert all(not d.degraded for d in decisions[back - 20 : back])
    assert any(not d.allowed for d in decisions[back - 20 : back])  # limited again
    assert [store.stats.outages for store in stores] == [1, 1]
    assert all(store.stats.available for store in stores)
    messages = [record.getMessage() for record in caplog.records]
    assert sum("does not answer" in message for message in messages) == 2  # once a store
    assert sum("answers again" in message for message in messages) == 2


def _kind(decision: Decision) -> str:
    """A decision the bucket made (admitted or refused) or the policy made."""
    return "degraded" if decision.degraded else "limited"


async def test_redis_stopped_deny_refuses_until_it_returns(redis_server: RedisServer) -> None:
    clock = FakeClock(0.0)  # times the retry interval
    store = RedisStore(redis_server.url, retry_interval=1.0, monotonic=clock)
    limiter = RateLimiter("iris", Limit(10, 2), store, on_store_error="deny")
    try:
        assert (await limiter.acquire("id:alice")).allowed
        redis_server.stop()
        refused = [await limiter.acquire("id:alice") for _ in range(5)]
        redis_server.start()
        still = await limiter.acquire("id:alice")  # not tried again before the interval
        clock.now += 1.0
        back = await limiter.acquire("id:alice")
    finally:
        await store.close()
    assert all(not d.allowed and d.degraded for d in refused)
    assert (still.allowed, still.degraded) == (False, True)
    assert (back.allowed, back.degraded, back.remaining) == (True, False, 1)  # a new bucket
    assert (limiter.degraded_total, store.stats.errors, store.stats.outages) == (6, 6, 1)
