"""Health events: which results become events (a fake clock: the times passed in), and
the queue and sender task against fake sinks and a fake producer client."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import until
from pydantic import ValidationError

from flowops.config import KafkaSettings
from flowops.errors import BrokerError
from flowops.events import HealthEvent, read_cloudevent_headers
from flowops.monitor.checks import CheckResult
from flowops.monitor.health_events import (
    HealthEventPublisher,
    HealthEventSettings,
    KafkaEventSink,
    health_status,
)


def result(
    ok: bool, target: str = "k:9092", check: str = "kafka.metadata", took: float = 0.25
) -> CheckResult:
    return CheckResult(check, target, ok, took, "OK" if ok else "refused")


@dataclass
class Sink:
    """Stores what it is sent; fails while ``down`` (counting its tries)."""

    down: bool = False
    events: list[HealthEvent] = field(default_factory=list)
    opens: int = 0
    closes: int = 0

    async def open(self) -> None:
        self.opens += 1
        if self.down:
            raise BrokerError("k:9092", "connection refused")

    async def send(self, events: Sequence[HealthEvent]) -> None:
        if self.down:
            raise BrokerError("k:9092", "connection refused")
        self.events.extend(events)

    async def close(self) -> None:
        self.closes += 1


@dataclass
class Sleeps:
    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


def statuses(events: Sequence[HealthEvent]) -> list[tuple[str, str, float]]:
    return [(e.target, e.status, e.checked_at) for e in events]


# -- which results become events -------------------------------------------------------


def test_defaults() -> None:
    settings = HealthEventSettings()
    assert (settings.enabled, settings.heartbeat, settings.degraded_after) == (True, 60.0, None)
    assert settings.queue_size == 10_000
    with pytest.raises(ValidationError, match="retry_backoff_max"):
        HealthEventSettings(retry_backoff=5, retry_backoff_max=1)
    with pytest.raises(ValidationError, match="Extra inputs"):
        HealthEventSettings.model_validate({"heartbeat_seconds": 5})


@pytest.mark.parametrize(
    ("ok", "took", "degraded_after", "status"),
    [
        (True, 0.1, None, "up"),
        (True, 9.0, None, "up"),
        (True, 2.0, 1.0, "degraded"),
        (True, 1.0, 1.0, "up"),
        (False, 0.1, 1.0, "down"),
        (False, 9.0, None, "down"),
    ],
)
def test_status(ok: bool, took: float, degraded_after: float | None, status: str) -> None:
    assert health_status(result(ok, took=took), degraded_after) == status


def test_events_on_a_change_and_every_heartbeat() -> None:
    publisher = HealthEventPublisher(HealthEventSettings(heartbeat=60), Sink())
    rounds: list[tuple[float, bool]] = [
        (0, True),
        (30, True),
        (60, True),
        (90, False),
        (100, False),
        (110, True),
    ]
    rounds += [(140, True), (169.6, True), (200, True), (230, True)]
    events = [e for at, ok in rounds for e in publisher.record([result(ok)], float(at))]
    assert statuses(events) == [
        ("k:9092", "up", 0.0),
        ("k:9092", "up", 60.0),  # heartbeat
        ("k:9092", "down", 90.0),  # change
        ("k:9092", "up", 110.0),  # change
        ("k:9092", "up", 169.6),  # heartbeat: a round half a second early still counts
        ("k:9092", "up", 230.0),
    ]
    assert publisher.stats().queued == 6


def test_every_check_of_every_target_has_its_own_state() -> None:
    publisher = HealthEventPublisher(HealthEventSettings(heartbeat=0), Sink())
    first = publisher.record([result(True, "a"), result(True, "b"), result(True, "a", "x")], 0.0)
    assert len(first) == 3
    second = publisher.record([result(True, "a"), result(False, "b"), result(True, "a", "x")], 5.0)
    assert [(e.target, e.check, e.status) for e in second] == [("b", "kafka.metadata", "down")]
    assert publisher.record([result(True, "a")], 10_000.0) == []  # heartbeat 0: changes only


def test_an_event_carries_the_result() -> None:
    publisher = HealthEventPublisher(HealthEventSettings(degraded_after=0.1), Sink())
    (event,) = publisher.record([result(True, took=0.25)], 1_700_000_000.0)
    assert event == HealthEvent(
        target="k:9092",
        check="kafka.metadata",
        status="degraded",
        latency_ms=250.0,
        detail="OK",
        checked_at=1_700_000_000.0,
    )


def test_a_result_no_event_can_carry_is_counted() -> None:
    publisher = HealthEventPublisher(HealthEventSettings(), Sink())
    assert publisher.record([result(True, target=""), result(True)], 0.0) != []
    assert publisher.stats().invalid == 1


def test_disabled_records_nothing() -> None:
    publisher = HealthEventPublisher(HealthEventSettings(enabled=False), Sink())
    assert publisher.record([result(True)], 0.0) == []


# -- the queue and the sender task -----------------------------------------------------


@pytest.mark.asyncio
async def test_queued_events_are_sent_in_order() -> None:
    sink = Sink()
    publisher = HealthEventPublisher(HealthEventSettings(heartbeat=10), sink)
    await publisher.start()
    for at in range(0, 100, 10):
        publisher.record([result(at % 20 == 0)], float(at))
    await until(lambda: publisher.stats().sent == 10, "sent", interval=0.01)
    assert await publisher.stop() == 0
    assert [e.checked_at for e in sink.events] == [float(at) for at in range(0, 100, 10)]


@pytest.mark.asyncio
async def test_a_down_sink_never_makes_a_round_wait_and_gets_the_events_once_up() -> None:
    sink = Sink(down=True)
    sleeps = Sleeps()
    settings = HealthEventSettings(queue_size=3, retry_backoff=0.1, retry_backoff_max=0.4)
    publisher = HealthEventPublisher(settings, sink, sleep=sleeps)
    await publisher.start()
    publisher.record([result(True, "a")], 0.0)
    await until(lambda: publisher.stats().send_errors >= 4, "tried again", interval=0.01)
    assert sleeps.waits[:4] == [0.1, 0.2, 0.4, 0.4]
    stats = publisher.stats()
    assert (stats.connected, stats.in_flight, stats.queued) == (False, 1, 0)

    targets = [result(False, name) for name in "bcdef"]
    queued = publisher.record(targets, 1.0)  # a plain call: nothing awaited
    assert [e.target for e in queued] == ["b", "c", "d"]
    assert publisher.stats().dropped == 2
    again = publisher.record(targets, 2.0)  # the dropped ones are offered again
    assert again == []
    assert publisher.stats().dropped == 4

    sink.down = False
    await until(lambda: publisher.stats().sent == 4, "delivered once up", interval=0.01)
    assert publisher.stats().connected
    later = publisher.record(targets, 3.0)
    assert [e.target for e in later] == ["e", "f"]
    await until(lambda: publisher.stats().sent == 6, "the rest delivered", interval=0.01)
    assert await publisher.stop() == 0
    assert [e.target for e in sink.events] == ["a", "b", "c", "d", "e", "f"]
    assert sink.closes >= 1


@pytest.mark.asyncio
async def test_stop_counts_what_could_not_be_delivered() -> None:
    sink = Sink(down=True)
    publisher = HealthEventPublisher(HealthEventSettings(), sink, sleep=Sleeps())
    await publisher.start()
    publisher.record([result(True, "a"), result(True, "b")], 0.0)
    await until(lambda: publisher.stats().send_errors >= 1, "failed", interval=0.01)
    assert await publisher.stop(drain_timeout=0) == 2
    assert publisher.stats().dropped == 2
    assert publisher.record([result(False, "a")], 1.0) == []  # stopped: refused


# -- the Kafka sink --------------------------------------------------------------------


@dataclass
class FakeClient:
    messages: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    started: bool = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def send(
        self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        self.messages.append((topic, key, value, headers))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.mark.asyncio
async def test_the_kafka_sink_publishes_on_flowops_health_keyed_by_target() -> None:
    client = FakeClient()
    settings = HealthEventSettings(create_topic=False)
    sink = KafkaEventSink(KafkaSettings(), settings, source="/test", client=lambda: client)
    publisher = HealthEventPublisher(settings, sink)
    await publisher.start()
    publisher.record([result(False, "http://m:8000", "serving.ready")], 1.5)
    await until(lambda: publisher.stats().sent == 1, "sent", interval=0.01)
    await publisher.stop()
    ((topic, key, value, headers),) = client.messages
    assert (topic, key) == ("flowops.health", b"http://m:8000")
    assert HealthEvent.from_json(value).status == "down"
    cloud = read_cloudevent_headers(headers)
    assert (cloud.type, cloud.source, cloud.id) == (
        "dev.flowops.health.v1",
        "/test",
        "http://m:8000/serving.ready/1.5",
    )
    assert not client.started
