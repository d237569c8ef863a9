"""flowops.gateway.policies.ratelimit.limiter: token arithmetic on a fake clock, the memory store's
eviction, the headers, the caller's key, the store-error policy and the settings.

The Redis store's script is checked against this arithmetic on a real redis-server in
tests/integration/test_gateway_ratelimit.py.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from multidict import CIMultiDict

from flowops.errors import ConfigError
from flowops.gateway.policies.ratelimit.base import Decision, Limit, StoreUnavailableError
from flowops.gateway.policies.ratelimit.limiter import (
    RateLimiter,
    RateLimiters,
    RateLimitSettings,
    rate_limit_headers,
)
from flowops.gateway.policies.ratelimit.memory_store import MemoryStore
from flowops.gateway.policies.ratelimit.redis_store import RedisStore

SERVER_TIME = 1e8  # the size of the Redis store's times (seconds since its origin)
EPOCH = 1_795_000_000.0  # seconds since 1970: a double's steps are 0.24 µs there


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(
    rate: float, burst: int, clock: FakeClock, *, route: str = "iris", **options: Any
) -> RateLimiter:
    return RateLimiter(route, Limit(rate, burst), MemoryStore(clock=clock), **options)


async def admitted(limiter: RateLimiter, key: str, tries: int) -> int:
    return sum([(await limiter.acquire(key)).allowed for _ in range(tries)])


LIMITS = [(10, 20), (3, 3), (0.5, 1), (1000, 7), (7, 1)]


@pytest.mark.asyncio
@pytest.mark.parametrize("now", [1000.0, SERVER_TIME])
@pytest.mark.parametrize(("rate", "burst"), LIMITS)
async def test_a_fresh_bucket_admits_its_burst_then_refuses(
    rate: float, burst: int, now: float
) -> None:
    clock = FakeClock(now)
    limit = limiter(rate, burst, clock)
    decisions = [await limit.acquire("id:alice") for _ in range(burst + 1)]
    assert [d.allowed for d in decisions] == [True] * burst + [False]
    assert [d.remaining for d in decisions] == [*range(burst - 1, -1, -1), 0]
    assert decisions[0].reset_after == pytest.approx(1 / rate, abs=1e-6)
    refused = decisions[-1]
    assert refused.limit == burst
    assert refused.retry_after == pytest.approx(1 / rate, abs=1e-6)
    assert refused.reset_after == pytest.approx(burst / rate, abs=1e-6)


@pytest.mark.asyncio
@pytest.mark.parametrize(("rate", "burst"), LIMITS)
async def test_float_steps_do_not_cost_a_token_even_at_epoch_sized_times(
    rate: float, burst: int
) -> None:
    clock = FakeClock(EPOCH)
    limit = limiter(rate, burst, clock)
    assert await admitted(limit, "id:alice", burst + 1) == burst
    clock.advance(1 / rate)
    assert await admitted(limit, "id:alice", 2) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(("rate", "burst"), LIMITS)
@pytest.mark.parametrize("intervals", [1, 2, 5])
async def test_the_bucket_refills_one_token_per_interval(
    rate: float, burst: int, intervals: int
) -> None:
    clock = FakeClock(SERVER_TIME)
    limit = limiter(rate, burst, clock)
    assert await admitted(limit, "id:alice", burst + 1) == burst
    clock.advance(intervals / rate)
    assert await admitted(limit, "id:alice", burst + 1) == min(intervals, burst)


@pytest.mark.asyncio
async def test_a_refused_request_says_when_to_come_back_and_takes_nothing() -> None:
    clock = FakeClock()
    limit = limiter(4, 2, clock)  # a token each 0.25 s
    await admitted(limit, "id:alice", 2)
    clock.advance(0.0625)
    refused = [await limit.acquire("id:alice") for _ in range(50)]
    assert not any(d.allowed for d in refused)
    assert all(d.retry_after == pytest.approx(0.1875) for d in refused)
    assert all(d.reset_after == pytest.approx(0.4375) for d in refused)
    clock.advance(0.1875)
    assert (await limit.acquire("id:alice")).allowed  # the refusals cost nothing


@pytest.mark.asyncio
async def test_a_long_idle_bucket_holds_no_more_than_its_burst() -> None:
    clock = FakeClock()
    limit = limiter(10, 5, clock)
    await admitted(limit, "id:alice", 5)
    clock.advance(1e6)
    assert await admitted(limit, "id:alice", 10) == 5


@pytest.mark.asyncio
@pytest.mark.parametrize(("rate", "burst"), [(10, 20), (3, 1), (250, 50)])
async def test_over_a_long_run_it_admits_burst_plus_rate_times_duration(
    rate: float, burst: int
) -> None:
    """Requests offered at three times the rate for 1000 s of fake time."""
    clock = FakeClock(SERVER_TIME)
    limit = limiter(rate, burst, clock)
    step, duration = 1 / (3 * rate), 1000.0
    count = 0
    for tick in range(int(duration / step) + 1):
        clock.now = SERVER_TIME + tick * step  # no sum of steps: its rounding would drift
        count += (await limit.acquire("id:alice")).allowed
    assert abs(count - (burst + rate * duration)) <= 1


@pytest.mark.asyncio
async def test_each_caller_and_each_route_has_its_own_bucket() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    iris = RateLimiter("iris", Limit(1, 2), store)
    wine = RateLimiter("wine", Limit(1, 2), store)
    assert await admitted(iris, "id:alice", 5) == 2
    assert await admitted(iris, "id:bob", 5) == 2
    assert await admitted(wine, "id:alice", 5) == 2
    assert len(store) == 3


@pytest.mark.asyncio
async def test_route_names_cannot_make_two_buckets_one() -> None:
    store = MemoryStore(clock=FakeClock())
    a_b = RateLimiter("a:b", Limit(1, 1), store)
    a = RateLimiter("a", Limit(1, 1), store)
    assert (await a_b.acquire("c")).allowed
    assert (await a.acquire("b:c")).allowed
    assert len(store) == 2


def test_full_buckets_are_dropped_as_new_callers_come() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    limit = Limit(10, 5)  # full again 0.1 s after one request
    for caller in range(1000):
        store.take_now(f"caller-{caller}", limit)
        clock.advance(0.01)
    assert len(store) <= 11  # the callers of the last 0.1 s, and one being swept
    assert store.forced_evictions == 0


def test_buckets_that_are_not_full_are_kept() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for caller in range(100):
        store.take_now(f"caller-{caller}", Limit(0.001, 5))  # full again after 1000 s
    assert len(store) == 100


def test_dropping_full_buckets_changes_no_decision() -> None:
    clock = FakeClock()
    swept, kept = MemoryStore(clock=clock), MemoryStore(clock=clock, max_buckets=10**6)
    kept._make_room = lambda now: None  # type: ignore[method-assign]  # never drops one
    limit = Limit(5, 3)
    for step in range(5000):
        caller = f"caller-{(step * 7919) % 97}"
        assert swept.take_now(caller, limit) == kept.take_now(caller, limit)
        clock.advance(0.013)
    assert len(swept) < len(kept)


def test_past_max_buckets_the_least_recent_bucket_goes_and_is_counted() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock, max_buckets=3)
    slow = Limit(0.001, 2)
    for caller in ["a", "b", "c", "d"]:
        store.take_now(caller, slow)
    assert (len(store), store.forced_evictions) == (3, 1)
    assert store.take_now("a", slow).remaining == 1  # "a" lost its state: a full bucket


@pytest.mark.parametrize(
    ("rate", "burst", "reason"),
    [
        (0, 1, "rate"),
        (-1, 1, "rate"),
        (math.inf, 1, "rate"),
        (math.nan, 1, "rate"),
        (1, 0, "burst"),
    ],
)
def test_a_limit_needs_a_positive_rate_and_a_burst(rate: float, burst: int, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Limit(rate, burst)


@pytest.mark.parametrize(
    ("processes", "share"),
    [(1, Limit(100, 50)), (2, Limit(50, 25)), (3, Limit(100 / 3, 16)), (64, Limit(100 / 64, 1))],
)
def test_a_limit_split_between_processes(processes: int, share: Limit) -> None:
    assert Limit(100, 50).split(processes) == share


def test_a_limit_splits_between_one_process_at_least() -> None:
    with pytest.raises(ValueError, match="processes"):
        Limit(1, 1).split(0)


@pytest.mark.parametrize(
    ("decision", "headers"),
    [
        (
            Decision(True, limit=20, remaining=19, reset_after=0.1),
            {"RateLimit-Limit": "20", "RateLimit-Remaining": "19", "RateLimit-Reset": "1"},
        ),
        (
            Decision(True, limit=5, remaining=3, reset_after=2.0000000001),
            {"RateLimit-Limit": "5", "RateLimit-Remaining": "3", "RateLimit-Reset": "2"},
        ),
        (
            Decision(True, limit=5, remaining=5, reset_after=0.0),
            {"RateLimit-Limit": "5", "RateLimit-Remaining": "5", "RateLimit-Reset": "0"},
        ),
        (
            Decision(False, limit=5, remaining=0, reset_after=10.0, retry_after=2.5),
            {
                "RateLimit-Limit": "5",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": "10",
                "Retry-After": "3",
            },
        ),
        (
            Decision(False, limit=5, remaining=0, reset_after=0.5, retry_after=0.001),
            {
                "RateLimit-Limit": "5",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": "1",
                "Retry-After": "1",
            },
        ),
        (Decision(True, limit=5, remaining=5, reset_after=0.0, degraded=True), {}),
        (
            Decision(False, 5, 0, reset_after=1.0, retry_after=0.0, degraded=True),
            {"Retry-After": "1"},
        ),
    ],
)
def test_headers(decision: Decision, headers: dict[str, str]) -> None:
    assert rate_limit_headers(decision) == headers


@pytest.mark.asyncio
async def test_headers_follow_the_bucket() -> None:
    clock = FakeClock()
    limit = limiter(2, 3, clock)
    first = await limit.acquire("id:alice")
    assert rate_limit_headers(first) == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "2",
        "RateLimit-Reset": "1",
    }
    await admitted(limit, "id:alice", 2)
    refused = rate_limit_headers(await limit.acquire("id:alice"))
    assert (refused["RateLimit-Remaining"], refused["Retry-After"]) == ("0", "1")
    assert refused["RateLimit-Reset"] == "2"  # 1.5 s to full, rounded up


@pytest.mark.parametrize(
    ("key", "identity", "address", "headers", "expected"),
    [
        ("api_key", "alice", "10.0.0.7", {}, "id:alice"),
        ("api_key", None, "10.0.0.7", {}, "ip:10.0.0.7"),
        ("api_key", "", "10.0.0.7", {}, "ip:10.0.0.7"),
        ("api_key", None, None, {}, "ip:unknown"),
        ("client", "alice", "10.0.0.7", {}, "ip:10.0.0.7"),
        ("header:X-Tenant", "alice", "10.0.0.7", {}, "ip:10.0.0.7"),
        ("header:X-Tenant", None, "10.0.0.7", {"X-Tenant": ""}, "ip:10.0.0.7"),
    ],
)
def test_the_callers_key(
    key: str, identity: str | None, address: str | None, headers: dict[str, str], expected: str
) -> None:
    limit = RateLimiter("iris", Limit(1, 1), MemoryStore(), key=key)
    assert limit.key_for(identity=identity, address=address, headers=headers) == expected


def test_a_header_key_is_a_digest_of_the_value_found_whatever_its_case() -> None:
    limit = RateLimiter("iris", Limit(1, 1), MemoryStore(), key="header:X-Tenant")
    acme = limit.key_for(
        identity=None, address="1.2.3.4", headers=CIMultiDict({"x-tenant": "acme"})
    )
    other = limit.key_for(identity=None, address="1.2.3.4", headers={"X-Tenant": "globex"})
    same = limit.key_for(identity="bob", address="5.6.7.8", headers={"X-Tenant": "acme"})
    assert acme.startswith("h:")
    assert "acme" not in acme  # the header may carry a credential
    assert acme == same != other


class DownStore:
    """A store that never answers, as a Redis store during an outage."""

    async def take(self, bucket: str, limit: Limit) -> Decision:
        raise StoreUnavailableError("redis://cache:6379/0", "refused", retry_after=2.5)

    async def close(self) -> None:
        pass


@pytest.mark.asyncio
async def test_when_the_store_is_down_allow_admits_and_counts() -> None:
    limit = RateLimiter("iris", Limit(1, 4), DownStore())
    decisions = [await limit.acquire("id:alice") for _ in range(10)]
    assert all(d.allowed and d.degraded for d in decisions)
    assert limit.degraded_total == 10
    assert rate_limit_headers(decisions[0]) == {}


@pytest.mark.asyncio
async def test_when_the_store_is_down_deny_refuses_until_it_is_tried_again() -> None:
    limit = RateLimiter("iris", Limit(1, 4), DownStore(), on_store_error="deny")
    decision = await limit.acquire("id:alice")
    assert (decision.allowed, decision.degraded, decision.retry_after) == (False, True, 2.5)
    assert rate_limit_headers(decision) == {"Retry-After": "3"}
    assert limit.degraded_total == 1


def test_settings_defaults() -> None:
    settings = RateLimitSettings.parse({"rate": 2.5})
    assert settings.limit() == Limit(2.5, 3)  # one second's tokens, rounded up
    assert (settings.key, settings.store, settings.on_store_error) == ("api_key", "memory", "allow")
    assert RateLimitSettings.parse({"rate": 0.1}).limit() == Limit(0.1, 1)
    assert RateLimitSettings.parse({"rate": 10, "burst": 50}).limit() == Limit(10, 50)


@pytest.mark.parametrize("key", ["api_key", "client", "header:X-Tenant", "header:x-api-key"])
def test_settings_accept_each_kind_of_key(key: str) -> None:
    assert RateLimitSettings.parse({"rate": 1, "key": key}).key == key


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({}, "rate_limit.rate"),
        ({"rate": 0}, "rate_limit.rate"),
        ({"rate": "fast"}, "rate_limit.rate"),
        ({"rate": float("inf")}, "rate_limit.rate"),
        ({"rate": 1, "burst": 0}, "rate_limit.burst"),
        ({"rate": 1, "burst": 1.5}, "rate_limit.burst"),
        ({"rate": 1, "key": "user"}, "rate_limit.key"),
        ({"rate": 1, "key": "header:"}, "rate_limit.key"),
        ({"rate": 1, "key": "header:X Tenant"}, "rate_limit.key"),
        ({"rate": 1, "store": "memcached"}, "rate_limit.store"),
        ({"rate": 1, "store": "redis"}, "rate_limit.redis_url"),
        ({"rate": 1, "store": "redis", "redis_url": "http://cache"}, "rate_limit.redis_url"),
        ({"rate": 1, "redis_timeout": 0}, "rate_limit.redis_timeout"),
        ({"rate": 1, "on_store_error": "retry"}, "rate_limit.on_store_error"),
        ({"rate": 1, "window": 60}, "rate_limit.window"),
    ],
)
def test_bad_settings_name_their_key(data: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RateLimitSettings.parse(data)
    assert caught.value.key == where


def test_bad_settings_under_a_route_name_the_route() -> None:
    with pytest.raises(ConfigError) as caught:
        RateLimitSettings.parse({"rate": -1}, key="gateway.routes.0.rate_limit")
    assert caught.value.key == "gateway.routes.0.rate_limit.rate"


def test_the_redis_password_stays_out_of_reprs_and_errors() -> None:
    url = "redis://:hunter2@cache.internal:6379/0"
    settings = RateLimitSettings.parse({"rate": 1, "store": "redis", "redis_url": url})
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == url
    assert "hunter2" not in repr(settings)
    with pytest.raises(ConfigError) as caught:
        RateLimitSettings.parse({"rate": 1, "redis_url": "http://:hunter2@cache"})
    assert "hunter2" not in str(caught.value)


@pytest.mark.asyncio
async def test_routes_share_one_memory_store_and_one_redis_store_per_url() -> None:
    limiters = RateLimiters()
    memory = RateLimitSettings.parse({"rate": 1})
    redis = RateLimitSettings.parse(
        {"rate": 1, "store": "redis", "redis_url": "redis://:pw@127.0.0.1:1/0"}
    )
    other = RateLimitSettings.parse(
        {"rate": 1, "store": "redis", "redis_url": "redis://127.0.0.1:1/1"}
    )
    iris, wine = limiters.limiter("iris", memory), limiters.limiter("wine", memory)
    shared_a, shared_b = limiters.limiter("a", redis), limiters.limiter("b", redis)
    separate = limiters.limiter("c", other)
    assert iris.store is wine.store
    assert isinstance(iris.store, MemoryStore)
    assert shared_a.store is shared_b.store is not separate.store
    assert isinstance(separate.store, RedisStore)
    assert len(limiters.stores()) == 3
    assert "pw" not in repr(shared_a)
    await limiters.close()
