"""Rate-limit buckets in memory shared by a gateway's worker processes (``store: shared``).

``workers: N`` forks N processes onto one port, and the kernel spreads connections over
them: buckets kept per process (``store: memory``) would give a caller up to N times its
rate, and Redis (``store: redis``) costs a network round trip a request, a fifth of a
worker's throughput (bench/RESULTS.md). On one host the workers can share the buckets
themselves: :class:`SharedTable` is an anonymous shared ``mmap`` made before the fork,
which every worker inherits, and a process-shared lock; each decision is the GCRA of
:mod:`~flowops.gateway.policies.ratelimit.base`, under the lock, so N workers admit exactly
what one would. Replicas on other hosts still need Redis.

The table is open addressing over ``slots`` slots of two numbers: a bucket's 64-bit
digest (0: never used) and its ``tat``. A bucket lives in the first of
:data:`PROBES` slots from its digest's home that holds it, or is placed in the first
free one: never used, or whose ``tat`` has passed (a full bucket, as good as absent).
When all of them hold live buckets, the one nearest to full is dropped (its caller gets
a full bucket back: lenient for it only), and counted in ``forced_evictions``.

A worker killed while it holds the lock would stop the others' decisions; a decision
that waits :data:`LOCK_TIMEOUT` for it is one the store could not make (the route's
``on_store_error`` decides, as for a Redis outage), and the supervisor stops every
worker when one dies.

>>> table = SharedTable(slots=64)
>>> store = SharedStore(table, clock=iter([0.0, 0.0, 0.0, 0.5]).__next__)
>>> from flowops.gateway.policies.ratelimit.limiter import Limit
>>> [store.take_now("iris:id:alice", Limit(rate=2, burst=2)).allowed for _ in range(4)]
[True, True, False, True]
"""

from __future__ import annotations

import hashlib
import math
import mmap
import multiprocessing
import time
from typing import Final

from flowops.gateway.policies.ratelimit.base import (
    Clock,
    Decision,
    Limit,
    StoreStats,
    StoreUnavailableError,
    decision_for,
    gcra,
)

__all__ = ["LOCK_TIMEOUT", "PROBES", "SharedStore", "SharedTable"]

PROBES: Final = 16
"""Slots looked at from a bucket's home slot."""
LOCK_TIMEOUT: Final = 0.25
"""Seconds a decision waits for the lock before the store counts as unavailable."""
_SLOT_BYTES: Final = 16  # an unsigned 64-bit digest and a double


class SharedTable:
    """``slots`` buckets in shared memory and the lock that guards them; make it before
    forking the processes that share it."""

    def __init__(self, slots: int = 100_000) -> None:
        if slots < PROBES:
            raise ValueError(f"slots must be at least {PROBES}, got {slots}")
        self.slots = slots
        self._memory = mmap.mmap(-1, slots * _SLOT_BYTES)  # anonymous, MAP_SHARED
        view = memoryview(self._memory)
        self.digests = view[: slots * 8].cast("Q")
        self.tats = view[slots * 8 :].cast("d")
        self.lock = multiprocessing.get_context("fork").Lock()

    def __repr__(self) -> str:
        return f"SharedTable({self.slots} slots)"

    def used(self) -> int:
        """Slots that ever held a bucket (a scan: for tests and diagnostics)."""
        return sum(1 for digest in self.digests if digest)


class SharedStore:
    """The :class:`~flowops.gateway.policies.ratelimit.base.BucketStore` over a
    :class:`SharedTable`."""

    def __init__(self, table: SharedTable, *, clock: Clock = time.monotonic) -> None:
        self.table = table
        self._clock = clock
        self.forced_evictions = 0
        self.stats = StoreStats()

    def __repr__(self) -> str:
        return f"SharedStore({self.table!r})"

    async def take(self, bucket: str, limit: Limit) -> Decision:
        """Take a token from ``bucket`` (see :meth:`take_now`)."""
        return self.take_now(bucket, limit)

    def take_now(self, bucket: str, limit: Limit) -> Decision:
        """The decision; raises :class:`StoreUnavailableError` when the lock is held
        for longer than :data:`LOCK_TIMEOUT`."""
        digest = _digest(bucket)
        table = self.table
        if not table.lock.acquire(timeout=LOCK_TIMEOUT):
            self.stats.errors += 1
            raise StoreUnavailableError(
                "shared rate-limit table",
                f"its lock was held for over {LOCK_TIMEOUT:g} s",
                retry_after=LOCK_TIMEOUT,
            )
        try:
            now = self._clock()
            slot = self._slot(digest, now)
            tat = table.tats[slot] if table.digests[slot] == digest else now
            allowed, after = gcra(tat, now, limit)
            if allowed:
                table.digests[slot] = digest
                table.tats[slot] = after
        finally:
            table.lock.release()
        return decision_for(allowed, after - now, limit)

    async def close(self) -> None:
        """Nothing to release: the table lives as long as the processes that share it."""

    def _slot(self, digest: int, now: float) -> int:
        """Where ``digest``'s bucket is, or goes."""
        digests, tats, slots = self.table.digests, self.table.tats, self.table.slots
        home = digest % slots
        free = -1
        nearest, nearest_tat = home, math.inf
        for step in range(PROBES):
            slot = (home + step) % slots
            found = digests[slot]
            if found == digest:
                return slot
            if found == 0:  # never used: nothing of this bucket's lies further on
                return free if free >= 0 else slot
            tat = tats[slot]
            if free < 0 and tat <= now:
                free = slot
            if tat < nearest_tat:
                nearest, nearest_tat = slot, tat
        if free >= 0:
            return free
        self.forced_evictions += 1
        return nearest


def _digest(bucket: str) -> int:
    """A 64-bit digest of the bucket's name, never 0 (0 marks an unused slot).

    >>> _digest("iris:id:alice") == _digest("iris:id:alice") != _digest("iris:id:bob")
    True
    """
    digest = hashlib.blake2b(bucket.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1
