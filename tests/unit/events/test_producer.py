"""flowops.events.producer against a fake Kafka client: topics, keys, headers, batching,
splitting and failures. The real broker is in tests/integration/test_events_kafka.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from flowops.config import KafkaSettings
from flowops.errors import BrokerError, EventError
from flowops.events.codec import decode_traffic
from flowops.events.headers import read_cloudevent_headers
from flowops.events.producer import EventProducer, TrafficProducer
from flowops.events.schemas import HealthEvent
from flowops.events.traffic import TrafficBatch, TrafficRow

pytestmark = pytest.mark.asyncio


@dataclass
class Sent:
    topic: str
    value: bytes
    key: bytes
    headers: list[tuple[str, bytes]]


@dataclass
class FakeClient:
    """Records messages; ``fail`` makes deliveries fail, ``refuse`` makes send raise."""

    sent: list[Sent] = field(default_factory=list)
    started: bool = False
    stopped: bool = False
    fail: BaseException | None = None
    refuse: BaseException | None = None

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        if self.refuse is not None:
            raise self.refuse
        self.sent.append(Sent(topic, value, key, headers))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail is not None:
            future.set_exception(self.fail)
        else:
            future.set_result(None)
        return future


def row(request_id: str, model: str = "credit", version: str = "3", x: float = 1.0) -> TrafficRow:
    return TrafficRow(model, version, request_id, 1.0, {"x": x}, 0.5, 2.0, 200)


async def test_a_row_goes_to_traffic_keyed_by_model_with_cloudevent_headers() -> None:
    client = FakeClient()
    async with TrafficProducer(source="/models/credit", client=client) as producer:
        await producer.send(row("r-1"))
    assert client.started
    assert client.stopped
    [sent] = client.sent
    assert (sent.topic, sent.key) == ("flowops.traffic", b"credit")
    assert decode_traffic(sent.value).request_ids == ["r-1"]
    event = read_cloudevent_headers(sent.headers)
    assert (event.type, event.source, event.content_type) == (
        "dev.flowops.traffic.v1",
        "/models/credit",
        "application/json",
    )
    assert event.time is not None
    assert len(event.id) == 32


async def test_event_ids_differ_per_message() -> None:
    client = FakeClient()
    async with TrafficProducer(client=client) as producer:
        await producer.send(row("a"))
        await producer.send(row("b"))
    ids = {read_cloudevent_headers(s.headers).id for s in client.sent}
    assert len(ids) == 2


async def test_rows_are_sent_as_one_batch_per_model_version() -> None:
    client = FakeClient()
    rows = [row("1"), row("2", model="fraud"), row("3"), row("4", version="4")]
    async with TrafficProducer(client=client) as producer:
        await producer.send(rows)
    batches = [decode_traffic(sent.value) for sent in client.sent]
    assert [(b.model, b.version, b.request_ids) for b in batches] == [
        ("credit", "3", ["1", "3"]),
        ("fraud", "3", ["2"]),
        ("credit", "4", ["4"]),
    ]
    assert [sent.key for sent in client.sent] == [b"credit", b"fraud", b"credit"]


async def test_a_batch_is_one_message() -> None:
    client = FakeClient()
    batch = TrafficBatch.from_rows([row(str(i)) for i in range(100)])
    async with TrafficProducer(client=client) as producer:
        await producer.send(batch)
    [sent] = client.sent
    assert decode_traffic(sent.value) == batch


async def test_a_batch_too_large_for_one_message_is_split_in_order() -> None:
    client = FakeClient()
    batch = TrafficBatch.from_rows([row(str(i), x=float(i)) for i in range(100)])
    async with TrafficProducer(client=client, max_message_bytes=2_000) as producer:
        await producer.send(batch)
    parts = [decode_traffic(sent.value) for sent in client.sent]
    assert len(parts) > 1
    assert all(len(sent.value) <= 2_000 for sent in client.sent)
    assert [rid for part in parts for rid in part.request_ids] == batch.request_ids
    assert [x for part in parts for x in part.features["x"]] == batch.features["x"]


async def test_a_row_larger_than_the_limit_is_still_sent_alone() -> None:
    client = FakeClient()
    async with TrafficProducer(client=client, max_message_bytes=10) as producer:
        await producer.send(TrafficBatch.from_rows([row("a"), row("b")]))
    assert [decode_traffic(s.value).request_ids for s in client.sent] == [["a"], ["b"]]


async def test_a_custom_topic() -> None:
    client = FakeClient()
    async with TrafficProducer(topic="test.traffic", client=client) as producer:
        await producer.send(row("a"))
    assert client.sent[0].topic == "test.traffic"


async def test_invalid_traffic_is_refused_before_sending() -> None:
    client = FakeClient()
    async with TrafficProducer(client=client) as producer:
        with pytest.raises(EventError):
            await producer.send(TrafficRow("m", "1", "r", 1.0, {"x": True}, 0, 1.0, 200))
    assert client.sent == []


async def test_publish_sends_an_event_to_its_topic_with_its_key_and_id() -> None:
    client = FakeClient()
    event = HealthEvent(target="mlflow", check="http", status="down", checked_at=3.0)
    async with EventProducer(source="/flowops/monitor", client=client) as producer:
        await producer.publish(event)
    [sent] = client.sent
    assert (sent.topic, sent.key) == ("flowops.health", b"mlflow")
    assert HealthEvent.from_json(sent.value) == event
    headers = read_cloudevent_headers(sent.headers)
    assert (headers.type, headers.id) == ("dev.flowops.health.v1", event.event_id())


async def test_a_failed_delivery_is_raised_by_flush_once() -> None:
    client = FakeClient(fail=RuntimeError("broker said no"))
    producer = TrafficProducer("h:1", client=client)
    await producer.start()
    await producer.send(row("a"))
    with pytest.raises(BrokerError, match="not delivered: broker said no") as caught:
        await producer.flush()
    assert caught.value.target == "h:1"
    await producer.flush()  # reported once
    await producer.stop()


async def test_a_failed_delivery_is_raised_by_the_next_send() -> None:
    client = FakeClient(fail=RuntimeError("lost"))
    async with TrafficProducer(client=client) as producer:
        await producer.send(row("a"))
        await asyncio.sleep(0)  # let the delivery callback run
        client.fail = None
        with pytest.raises(BrokerError, match="lost"):
            await producer.send(row("b"))
    assert len(client.sent) == 1


async def test_leaving_the_block_raises_a_failed_delivery_and_still_stops() -> None:
    client = FakeClient(fail=RuntimeError("lost"))
    with pytest.raises(BrokerError):
        async with TrafficProducer(client=client) as producer:
            await producer.send(row("a"))
    assert client.stopped


async def test_a_kafka_error_on_send_is_a_broker_error() -> None:
    from aiokafka.errors import KafkaTimeoutError

    client = FakeClient(refuse=KafkaTimeoutError())
    async with TrafficProducer(client=client) as producer:
        with pytest.raises(BrokerError, match=r"cannot send to flowops.traffic"):
            await producer.send(row("a"))


async def test_sending_before_start_says_so() -> None:
    with pytest.raises(RuntimeError, match="start the producer first"):
        await TrafficProducer().send(row("a"))


async def test_from_settings_takes_the_kafka_section() -> None:
    settings = KafkaSettings(bootstrap="k1:9092,k2:9092", client_id="gw", compression="none")
    producer = TrafficProducer.from_settings(settings, source="/gw")
    assert (producer.bootstrap, producer.source, producer.topic) == (
        "k1:9092,k2:9092",
        "/gw",
        "flowops.traffic",
    )


async def test_the_producer_can_be_built_outside_an_event_loop() -> None:
    producer = await asyncio.to_thread(TrafficProducer)  # no loop runs in that thread
    assert producer.bootstrap == "127.0.0.1:9092"
