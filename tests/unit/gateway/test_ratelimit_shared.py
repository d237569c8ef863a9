"""flowops.gateway.policies.ratelimit.shared_store: the same decisions as the memory
store, a bounded table, and exact limits across forked processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.queues
import random

import pytest

from flowops.gateway.policies.ratelimit.base import Limit, StoreUnavailableError
from flowops.gateway.policies.ratelimit.limiter import RateLimiter
from flowops.gateway.policies.ratelimit.memory_store import MemoryStore
from flowops.gateway.policies.ratelimit.shared_store import PROBES, SharedStore, SharedTable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_decisions_match_the_memory_store_request_for_request() -> None:
    clock = Clock()
    shared = SharedStore(SharedTable(slots=1024), clock=clock)
    memory = MemoryStore(clock=clock)
    limit = Limit(rate=5, burst=3)
    rng = random.Random(7)
    pairs = []
    for _ in range(2000):
        clock.now += rng.choice([0.0, 0.0, 0.05, 0.1, 0.3, 1.0])
        bucket = f"iris:id:{rng.choice('abcde')}"
        pairs.append((shared.take_now(bucket, limit), memory.take_now(bucket, limit)))
    assert all(a == b for a, b in pairs)
    assert sum(a.allowed for a, _ in pairs) not in (0, len(pairs))  # both kinds happened


def test_full_buckets_free_their_slots_and_live_ones_are_evicted_last() -> None:
    clock = Clock()
    table = SharedTable(slots=PROBES)  # one probe window: every bucket competes
    store = SharedStore(table, clock=clock)
    limit = Limit(rate=1, burst=1)  # a bucket is full again 1 s after its request
    for n in range(PROBES):
        assert store.take_now(f"r:{n}", limit).allowed
    assert (table.used(), store.forced_evictions) == (PROBES, 0)
    assert not store.take_now("r:0", limit).allowed  # still there, still empty
    clock.now += 0.5
    assert store.take_now("r:new", limit).allowed  # no slot free: the nearest-full goes
    assert store.forced_evictions == 1
    clock.now += 2.0  # every bucket is full: any slot may be reused
    for n in range(PROBES, 2 * PROBES):
        assert store.take_now(f"r:{n}", limit).allowed
    assert (table.used(), store.forced_evictions) == (PROBES, 1)


def _spend(table: SharedTable, tries: int, admitted: multiprocessing.queues.Queue[int]) -> None:
    store = SharedStore(table)
    limit = Limit(rate=0.001, burst=500)
    admitted.put(sum(store.take_now("iris:id:alice", limit).allowed for _ in range(tries)))


def test_forked_processes_share_one_bucket_exactly() -> None:
    table = SharedTable(slots=1024)
    context = multiprocessing.get_context("fork")  # the children inherit the table
    admitted: multiprocessing.queues.Queue[int] = context.Queue()
    children = [context.Process(target=_spend, args=(table, 300, admitted)) for _ in range(4)]
    for child in children:
        child.start()
    counts = [admitted.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert [child.exitcode for child in children] == [0, 0, 0, 0]
    assert sum(counts) == 500  # 1,200 tries in 4 processes, one bucket of 500
    assert table.used() == 1


def test_a_held_lock_makes_the_decision_the_routes_fallback() -> None:
    table = SharedTable(slots=64)
    store = SharedStore(table)
    limiter = RateLimiter("iris", Limit(rate=1, burst=1), store, on_store_error="deny")
    assert table.lock.acquire()
    try:
        with pytest.raises(StoreUnavailableError, match="lock was held"):
            store.take_now("iris:id:alice", limiter.limit)
        decision = asyncio.run(limiter.acquire("id:alice"))
    finally:
        table.lock.release()
    assert (decision.allowed, decision.degraded, store.stats.errors) == (False, True, 2)
    assert asyncio.run(limiter.acquire("id:alice")).allowed  # the lock is back


def test_a_table_needs_one_probe_window() -> None:
    with pytest.raises(ValueError, match="slots must be at least"):
        SharedTable(slots=PROBES - 1)
