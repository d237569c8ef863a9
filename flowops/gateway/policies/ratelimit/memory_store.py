"""The memory store: buckets in this process's memory (``store: memory``)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Final

from flowops.gateway.policies.ratelimit.base import (
    Clock,
    Decision,
    Limit,
    StoreStats,
    decision_for,
    gcra,
)

__all__ = ["MemoryStore"]

_SWEEP: Final = 2
"""Full buckets the memory store drops per new bucket: more than one, so it keeps up."""


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
        allowed, after = gcra(tat, now, limit)
        if allowed:
            tats[bucket] = after
            tats.move_to_end(bucket)
        return decision_for(allowed, after - now, limit)

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
