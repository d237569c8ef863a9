"""flowops.gateway.publisher: the queue, its bound, rounds, holding and retrying, stop.

A fake sink stands in for Kafka and a fake sleep for the backoff (it records the waits
and only yields); the real broker is in tests/integration/test_gateway_publisher.py.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import until
from pydantic import ValidationError

from flowops.config import KafkaSettings
from flowops.errors import BrokerError
from flowops.events import TrafficRow, decode_traffic, encode_traffic, read_cloudevent_headers
from flowops.gateway.publisher import (
    KafkaTrafficSink,
    PublisherStats,
    PublishSettings,
    TrafficPublisher,
)


def row(i: int, model: str = "m", version: str = "1", **extra: Any) -> TrafficRow:
    return TrafficRow(model, version, f"r-{i}", 1.0 + i, {"x": float(i)}, i, 2.0, 200, **extra)


@dataclass
class FakeSink:
    """Records rounds; ``failures`` makes the next sends (or opens) raise."""

    rounds: list[list[str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    send_failures: int = 0
    open_failures: int = 0
    down: bool = False

    async def open(self) -> None:
        self.events.append("open")
        if self.down or self.open_failures:
            self.open_failures = max(0, self.open_failures - 1)
            raise BrokerError("127.0.0.1:1", "cannot reach the Kafka broker")

    async def send(self, rows: Any) -> None:
        if self.send_failures or self.down:
            self.send_failures = max(0, self.send_failures - 1)
            self.events.append("failed")
            raise BrokerError("127.0.0.1:1", "a message was not delivered")
        for r in rows:
            encode_traffic(r)  # as the real sink would, before sending anything
        self.rounds.append([r.request_id for r in rows])
        self.events.append("sent")

    async def close(self) -> None:
        self.events.append("close")

    @property
    def delivered(self) -> list[str]:
        return [request_id for batch in self.rounds for request_id in batch]


@dataclass
class FakeSleep:
    """Records each backoff and lets the loop run; ``gate`` holds the sender when set."""

    waits: list[float] = field(default_factory=list)
    gate: asyncio.Event | None = None

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)


def publisher(sink: FakeSink, sleep: FakeSleep | None = None, **settings: Any) -> TrafficPublisher:
    options = {"linger_ms": 0} | settings
    return TrafficPublisher(PublishSettings(**options), sink, sleep=sleep or FakeSleep())


# --- offer -----------------------------------------------------------------------------------


def test_offer_is_a_plain_function() -> None:
    assert not inspect.iscoroutinefunction(TrafficPublisher.offer)


@pytest.mark.asyncio
async def test_offers_queue_without_the_sender_running() -> None:
    pub = publisher(FakeSink())
    await pub.start()
    results = [pub.offer(row(i)) for i in range(50)]  # no await in between: nothing yields
    assert results == [True] * 50
    assert pub.queue_depth == 50
    await pub.stop()


@pytest.mark.asyncio
async def test_a_full_queue_drops_and_counts() -> None:
    pub = publisher(FakeSink(), queue_size=3)
    assert [pub.offer(row(i)) for i in range(5)] == [True, True, True, False, False]
    assert (pub.queue_depth, pub.stats().dropped) == (3, 2)


@pytest.mark.asyncio
async def test_rows_offered_before_start_are_sent_after() -> None:
    sink = FakeSink()
    pub = publisher(sink)
    pub.offer(row(0))
    await pub.start()
    await until(lambda: sink.delivered == ["r-0"], "delivered", interval=0)
    assert await pub.stop() == 0


@pytest.mark.asyncio
async def test_disabled_publishing_takes_nothing_and_counts_nothing() -> None:
    sink = FakeSink()
    pub = publisher(sink, enabled=False)
    await pub.start()
    assert pub.offer(row(0)) is False
    assert await pub.stop() == 0
    assert (pub.stats().dropped, sink.events) == (0, [])


# --- rounds -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rounds_take_at_most_batch_size_rows_in_order() -> None:
    sink = FakeSink()
    pub = publisher(sink, batch_size=3)
    for i in range(7):
        pub.offer(row(i))
    await pub.start()
    await until(lambda: len(sink.delivered) == 7, "all delivered", interval=0)
    assert sink.rounds == [["r-0", "r-1", "r-2"], ["r-3", "r-4", "r-5"], ["r-6"]]
    assert pub.stats() == PublisherStats(0, 0, 7, 0, 0, 0, True)
    await pub.stop()


@pytest.mark.asyncio
async def test_a_full_batch_ends_the_linger() -> None:
    sink = FakeSink()
    pub = publisher(sink, batch_size=3, linger_ms=60_000)
    await pub.start()
    for i in range(3):
        pub.offer(row(i))
    await until(lambda: sink.rounds == [["r-0", "r-1", "r-2"]], "a full round sent", interval=0)
    await pub.stop()


@pytest.mark.asyncio
async def test_stop_ends_the_linger_and_sends_what_is_queued() -> None:
    sink = FakeSink()
    pub = publisher(sink, batch_size=100, linger_ms=60_000)
    await pub.start()
    pub.offer(row(0))
    await until(lambda: pub.queue_depth == 1, "queued", interval=0)
    assert await pub.stop(drain_timeout=60) == 0
    assert sink.rounds == [["r-0"]]
    assert sink.events[-1] == "close"
    assert pub.offer(row(1)) is False
    assert pub.stats().dropped == 1


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_failed_round_is_held_and_sent_again_whole() -> None:
    sink = FakeSink(send_failures=2)
    sleep = FakeSleep()
    pub = publisher(sink, sleep, batch_size=2, retry_backoff=0.1, retry_backoff_max=5)
    for i in range(3):
        pub.offer(row(i))
    await pub.start()
    await until(lambda: len(sink.delivered) == 3, "all delivered", interval=0)
    assert sink.rounds == [["r-0", "r-1"], ["r-2"]]
    assert sink.events[:6] == ["open", "failed", "close", "open", "failed", "close"]
    assert sleep.waits == [0.1, 0.2]
    assert (pub.stats().send_errors, pub.stats().sent) == (2, 3)
    await pub.stop()


@pytest.mark.asyncio
async def test_the_backoff_doubles_to_its_bound_and_resets_after_a_success() -> None:
    sink = FakeSink(open_failures=5)
    sleep = FakeSleep()
    pub = publisher(sink, sleep, retry_backoff=1, retry_backoff_max=4)
    pub.offer(row(0))
    await pub.start()
    await until(lambda: sink.delivered == ["r-0"], "delivered", interval=0)
    sink.send_failures = 1
    pub.offer(row(1))
    await until(lambda: sink.delivered == ["r-0", "r-1"], "delivered again", interval=0)
    assert sleep.waits == [1, 2, 4, 4, 4, 1]
    await pub.stop()


@pytest.mark.asyncio
async def test_while_kafka_is_down_offers_fill_the_queue_and_nothing_queued_is_lost() -> None:
    sink = FakeSink(down=True)
    gate = asyncio.Event()
    sleep = FakeSleep(gate=gate)  # the sender waits in its backoff until the gate opens
    pub = publisher(sink, sleep, queue_size=10, batch_size=4)
    await pub.start()
    pub.offer(row(0))
    await until(lambda: pub.stats().send_errors == 1, "the first failure", interval=0)
    accepted = [i for i in range(1, 30) if pub.offer(row(i))]
    assert accepted == list(range(1, 11))  # the bound; row 0 is held outside the queue
    stats = pub.stats()
    assert (stats.in_flight, stats.queued, stats.dropped, stats.connected) == (1, 10, 19, False)
    sink.down = False
    gate.set()
    await until(lambda: len(sink.delivered) == 11, "all delivered", interval=0)
    assert sink.delivered == [f"r-{i}" for i in range(11)]
    await pub.stop()


@pytest.mark.asyncio
async def test_stop_gives_up_after_the_drain_timeout_and_counts_the_rest() -> None:
    sink = FakeSink(down=True)
    pub = publisher(sink, FakeSleep(gate=asyncio.Event()), batch_size=2)
    for i in range(5):
        pub.offer(row(i))
    await pub.start()
    await until(lambda: pub.stats().send_errors == 1, "the first failure", interval=0)
    assert await pub.stop(drain_timeout=0) == 5
    stats = pub.stats()
    assert (stats.queued, stats.in_flight, stats.dropped, stats.sent) == (0, 0, 5, 0)


@pytest.mark.asyncio
async def test_invalid_rows_are_dropped_and_the_others_sent() -> None:
    sink = FakeSink()
    pub = publisher(sink)
    bad = TrafficRow("m", "1", "bad", float("nan"), {}, None, 1.0, 200)
    for r in (row(0), bad, row(1)):
        pub.offer(r)
    await pub.start()
    await until(lambda: sink.delivered == ["r-0", "r-1"], "the valid rows", interval=0)
    assert (pub.stats().invalid, pub.stats().dropped) == (1, 0)
    await pub.stop()


@pytest.mark.asyncio
async def test_an_unexpected_error_is_retried_like_a_broker_failure() -> None:
    sink = FakeSink()
    calls = 0
    original = sink.send

    async def flaky(rows: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        await original(rows)

    sink.send = flaky  # type: ignore[method-assign]
    pub = publisher(sink)
    pub.offer(row(0))
    await pub.start()
    await until(lambda: sink.delivered == ["r-0"], "delivered", interval=0)
    assert pub.stats().send_errors == 1
    await pub.stop()


# --- settings ---------------------------------------------------------------------------------


def test_settings_defaults_and_bounds() -> None:
    settings = PublishSettings()
    assert (settings.queue_size, settings.batch_size, settings.enabled) == (100_000, 1_000, True)
    with pytest.raises(ValidationError, match="retry_backoff_max"):
        PublishSettings(retry_backoff=2, retry_backoff_max=1)
    with pytest.raises(ValidationError):
        PublishSettings(queue_size=0)
    with pytest.raises(ValidationError):
        PublishSettings(surprise=1)  # type: ignore[call-arg]


# --- the Kafka sink, with a fake aiokafka client ----------------------------------------------


@dataclass
class FakeClient:
    sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    stopped: bool = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        self.sent.append((topic, value, key, headers))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@pytest.mark.asyncio
async def test_the_kafka_sink_sends_a_batch_per_model_version_keyed_by_model() -> None:
    client = FakeClient()
    factory: Callable[[], Any] = lambda: client  # noqa: E731
    settings = PublishSettings(create_topic=False)
    sink = KafkaTrafficSink(KafkaSettings(), settings, source="/gw/test", client=factory)
    await sink.open()
    await sink.send([row(0, "a"), row(1, "b"), row(2, "a", variant="x"), row(3, "a", "2")])
    await sink.close()
    assert client.stopped
    got = [(topic, key, decode_traffic(value).request_ids) for topic, value, key, _ in client.sent]
    assert got == [
        ("flowops.traffic", b"a", ["r-0", "r-2"]),
        ("flowops.traffic", b"b", ["r-1"]),
        ("flowops.traffic", b"a", ["r-3"]),
    ]
    assert decode_traffic(client.sent[0][1]).variants == [None, "x"]
    event = read_cloudevent_headers(client.sent[0][3])
    assert (event.type, event.source) == ("dev.flowops.traffic.v1", "/gw/test")


@pytest.mark.asyncio
async def test_the_kafka_sink_must_be_opened_first() -> None:
    sink = KafkaTrafficSink(KafkaSettings(), PublishSettings(), client=FakeClient)
    with pytest.raises(RuntimeError, match="open"):
        await sink.send([row(0)])
    await sink.close()  # closing what was never opened is fine
