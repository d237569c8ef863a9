"""flowops.events.sender: the queue and sender task the publishers share, over a publisher
of plain strings, a fake sink and a fake sleep; and the Kafka sink over a fake client.

The traffic and health-event publishers' own tests (tests/unit/gateway/test_publisher.py,
tests/unit/monitor/test_health_events.py) cover rounds, holding and draining through
their public APIs; this module covers what they leave to the base: the ``check`` hook,
the logs of an outage, the stats type, the settings check and the sink's closing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from flowops.config import KafkaSettings
from flowops.errors import BrokerError, EventError
from flowops.events.producer import EventProducer, ProducerClient
from flowops.events.schemas import HealthEvent
from flowops.events.sender import (
    KafkaSink,
    QueuedPublisher,
    SenderNames,
    SenderStats,
    ordered_backoff,
)

LOG = logging.getLogger("flowops.test.sender")
NAMES = SenderNames(LOG, "words", "words", "test-words")


class Settings(BaseModel):
    enabled: bool = True
    queue_size: int = 100
    drain_timeout: float = 5.0
    retry_backoff: float = 1.0
    retry_backoff_max: float = 4.0
    request_timeout: float = 1.0
    create_topic: bool = False

    _backoff_order = model_validator(mode="after")(ordered_backoff)


def refuse_bad(word: str) -> None:
    if word.startswith("bad"):
        raise EventError(f"cannot encode {word!r}", event="word")


@dataclass
class Sink:
    """Records rounds; the next opens raise ``refusals`` and the next sends ``failures``,
    one each."""

    failures: list[Exception] = field(default_factory=list)
    refusals: list[Exception] = field(default_factory=list)
    rounds: list[list[str]] = field(default_factory=list)

    async def open(self) -> None:
        if self.refusals:
            raise self.refusals.pop(0)

    async def send(self, words: Sequence[str]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        for word in words:
            refuse_bad(word)  # as a real sink would, before sending anything
        self.rounds.append(list(words))

    async def close(self) -> None:
        pass


class Words(QueuedPublisher[str]):
    names = NAMES

    def offer(self, word: str) -> bool:
        return self._offer(word)


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def words(sink: Sink, check: Callable[[str], object] | None = None, **settings: Any) -> Words:
    return Words(Settings(**settings), sink, batch_size=10, check=check, sleep=no_sleep)


@pytest.mark.asyncio
async def test_items_the_check_refuses_are_dropped_and_counted() -> None:
    sink = Sink()
    pub = words(sink, check=refuse_bad)
    for word in ["a", "bad-1", "b"]:
        pub.offer(word)
    await pub.start()
    assert await pub.stop() == 0  # stop drains the queue
    assert sink.rounds == [["a", "b"]]
    assert pub.stats() == SenderStats(0, 0, 2, 0, 1, 0, False)


@pytest.mark.asyncio
async def test_without_a_check_an_encoding_failure_is_retried() -> None:
    sink = Sink(failures=[EventError("not now", event="word")])
    pub = words(sink)
    pub.offer("a")
    await pub.start()
    assert await pub.stop() == 0
    assert sink.rounds == [["a"]]
    assert (pub.stats().invalid, pub.stats().send_errors) == (0, 1)


@pytest.mark.asyncio
async def test_an_outage_is_logged_once_and_its_end_too(caplog: pytest.LogCaptureFixture) -> None:
    refused = BrokerError("k:9092", "connection refused")
    sink = Sink(refusals=[refused, refused, refused])
    pub = words(sink)
    pub.offer("a")
    with caplog.at_level(logging.DEBUG, logger=LOG.name):
        await pub.start()
        assert await pub.stop() == 0
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert logged == [
        ("WARNING", "words: sending failed (k:9092: connection refused); holding 1 words, 0 queued; retrying in 1 s"),  # noqa: E501
        ("DEBUG", "words: sending failed (k:9092: connection refused); holding 1 words, 0 queued; retrying in 2 s"),  # noqa: E501
        ("DEBUG", "words: sending failed (k:9092: connection refused); holding 1 words, 0 queued; retrying in 4 s"),  # noqa: E501
        ("INFO", "words: sending resumed after 3 failed tries"),
    ]  # fmt: skip
    assert not any(r.exc_info for r in caplog.records)  # broker failures: no traceback


@pytest.mark.asyncio
async def test_an_unexpected_error_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pub = words(Sink(failures=[RuntimeError("a bug")]))
    pub.offer("a")
    await pub.start()
    assert await pub.stop() == 0
    (failed,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert failed.exc_info is not None
    assert repr(failed.exc_info[1]) == "RuntimeError('a bug')"


@pytest.mark.asyncio
async def test_stop_logs_what_it_could_not_deliver(caplog: pytest.LogCaptureFixture) -> None:
    pub = words(Sink())
    pub.offer("a")  # never started
    assert await pub.stop() == 1
    assert caplog.messages == ["words: stopped with 1 words undelivered"]
    assert pub.offer("b") is False
    assert pub.stats().dropped == 2


def test_the_backoff_check_names_both_settings() -> None:
    assert Settings(retry_backoff=2, retry_backoff_max=2).retry_backoff_max == 2
    with pytest.raises(ValidationError, match=r"retry_backoff_max \(1\) is below retry_backoff"):
        Settings(retry_backoff=2, retry_backoff_max=1)


# -- the Kafka sink -------------------------------------------------------------------------


@dataclass
class FakeClient:
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    stop_error: Exception | None = None

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        if self.stop_error is not None:
            raise self.stop_error

    async def send(
        self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        self.messages.append((topic, key))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class HealthSink(KafkaSink[HealthEvent, EventProducer]):
    names = NAMES

    def _make_producer(self, client: ProducerClient) -> EventProducer:
        return EventProducer(self.kafka.bootstrap, source=self.source, client=client)

    async def _publish(self, producer: EventProducer, items: Sequence[HealthEvent]) -> None:
        for item in items:
            await producer.publish(item)


def health_sink(client: FakeClient) -> HealthSink:
    kafka = KafkaSettings()
    return HealthSink(
        kafka, Settings(), source="/t", topic="flowops.health", client_id="t", client=lambda: client
    )


def event(target: str) -> HealthEvent:
    return HealthEvent(
        target=target, check="c", status="up", latency_ms=1.0, detail="OK", checked_at=1.0
    )


@pytest.mark.asyncio
async def test_the_kafka_sink_sends_a_round_and_closes() -> None:
    client = FakeClient()
    sink = health_sink(client)
    with pytest.raises(RuntimeError, match="open the sink first"):
        await sink.send([event("a")])
    await sink.open()
    await sink.send([event("a"), event("b")])
    assert client.messages == [("flowops.health", b"a"), ("flowops.health", b"b")]
    await sink.close()
    await sink.close()  # closing twice, or what was never opened, is fine


@pytest.mark.asyncio
async def test_closing_to_a_broker_that_is_gone_does_not_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = health_sink(FakeClient(stop_error=BrokerError("k:9092", "gone")))
    await sink.open()
    with caplog.at_level(logging.DEBUG, logger=LOG.name):
        await sink.close()
    assert caplog.messages == ["words: closing the producer: k:9092: gone"]
