"""Bounded reads for the publishers' tests against a real broker.

:func:`read_key` reads one key's messages of a topic from the beginning, giving up after
``WAIT`` seconds: nothing here measures time. (The tests wait for a publisher's counters
with ``helpers.until``, the tests' one poller.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

WAIT = 60.0  # seconds a condition may take at most (a few seconds expected)


async def read_key(
    bootstrap: str, topic: str, key: str, enough: Callable[[list[Any]], bool]
) -> list[Any]:
    """The messages of ``key`` on ``topic``, read from the beginning until ``enough``
    of them have arrived (or ``WAIT`` seconds have passed)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[Any] = []
    try:
        for _ in range(int(WAIT / 0.5)):
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            found += [m for part in batches.values() for m in part if m.key == key.encode()]
            if enough(found):
                break
    finally:
        await consumer.stop()
    return found
