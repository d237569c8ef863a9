"""Health events against a real Tansu broker: on ``flowops.health`` when a check changes
state and as a heartbeat; with no broker, rounds go on without waiting and the events
arrive once one is up, and again after it was stopped and replaced on the same port.

Each test uses targets of its own name. Times given to ``record`` are the rounds' times
as data (a fake clock); waits are bounded polls of the publisher's counters. Brokers a
test starts itself are stopped by ``EmbeddedBroker.stop()`` (their pid) in a ``finally``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from broker_polls import read_key
from helpers import until

from flowops.broker import EmbeddedBroker, free_port
from flowops.config import KafkaSettings
from flowops.events import HealthEvent, Topics, read_cloudevent_headers
from flowops.monitor.checks import CheckResult
from flowops.monitor.health_events import HealthEventPublisher, HealthEventSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

FAST = HealthEventSettings(
    heartbeat=60,
    request_timeout=2.0,  # a send to a stopped broker fails after this
    retry_backoff=0.05,
    retry_backoff_max=0.5,
)


async def read_target(bootstrap: str, target: str, count: int) -> list[Any]:
    """The messages of ``target`` on flowops.health, once there are ``count`` (or more)."""
    return await read_key(bootstrap, Topics.HEALTH, target, lambda found: len(found) >= count)


def probe(target: str, ok: bool) -> CheckResult:
    return CheckResult("service.ready", target, ok, 0.02, "OK" if ok else "connection refused")


def events(messages: list[Any]) -> list[tuple[str, float]]:
    decoded = [HealthEvent.from_json(message.value) for message in messages]
    return [(event.status, event.checked_at) for event in decoded]


async def test_events_on_a_change_and_as_a_heartbeat(broker: str) -> None:
    target = f"http://svc-{uuid.uuid4().hex[:8]}:8080"
    publisher = HealthEventPublisher.for_kafka(KafkaSettings(bootstrap=broker), FAST)
    await publisher.start()
    try:
        for at, ok in [(0, True), (30, True), (60, True), (90, False), (120, False)]:
            publisher.record([probe(target, ok)], 1_764_291_600.0 + at)
        await until(lambda: publisher.stats().sent == 3, "sent")
    finally:
        assert await publisher.stop() == 0

    messages = await read_target(broker, target, 3)
    assert events(messages) == [
        ("up", 1_764_291_600.0),
        ("up", 1_764_291_660.0),  # the heartbeat
        ("down", 1_764_291_690.0),  # the change
    ]
    header = read_cloudevent_headers(messages[0].headers)
    assert (header.type, header.source) == ("dev.flowops.health.v1", "/flowops/monitor")


async def test_no_broker_never_makes_a_round_wait_and_events_arrive_once_one_is_up() -> None:
    port = free_port()
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{port}")
    target = f"http://svc-{uuid.uuid4().hex[:8]}:8080"
    first, second = EmbeddedBroker(port=port), EmbeddedBroker(port=port)
    publisher = HealthEventPublisher.for_kafka(kafka, FAST)
    try:
        await publisher.start()
        queued = [publisher.record([probe(target, i % 2 == 0)], float(i)) for i in range(4)]
        assert [len(q) for q in queued] == [1, 1, 1, 1]  # plain calls: nothing waited
        await until(lambda: publisher.stats().send_errors >= 2, "refused, and tried again")
        assert not publisher.stats().connected

        await asyncio.to_thread(first.start)
        await until(lambda: publisher.stats().sent == 4, "sent once the broker is up")
        assert events(await read_target(first.bootstrap, target, 4)) == [
            ("up", 0.0),
            ("down", 1.0),
            ("up", 2.0),
            ("down", 3.0),
        ]

        await asyncio.to_thread(first.stop)  # memory storage: its topics go with it
        for i in range(4, 8):
            assert len(publisher.record([probe(target, i % 2 == 0)], float(i))) == 1
        await until(lambda: publisher.stats().send_errors >= 3, "the outage noticed")
        await asyncio.to_thread(second.start)  # the same port, empty
        await until(lambda: publisher.stats().sent == 8, "sent once it is back")
        stats = publisher.stats()
        assert (stats.dropped, stats.queued, stats.in_flight) == (0, 0, 0)
        assert await publisher.stop() == 0
        assert [at for _, at in events(await read_target(second.bootstrap, target, 4))] == [
            4.0,
            5.0,
            6.0,
            7.0,
        ]
    finally:
        await publisher.stop(drain_timeout=0)
        await asyncio.to_thread(first.stop)
        await asyncio.to_thread(second.stop)
