"""Events on a real Tansu broker: topics, and what TrafficProducer writes read back with
a plain aiokafka consumer (key, partition, CloudEvents headers, decoded batch)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from flowops.broker import EmbeddedBroker, free_port
from flowops.errors import BrokerError
from flowops.events import (
    TOPICS,
    DriftAlert,
    EventProducer,
    Topics,
    TrafficBatch,
    TrafficProducer,
    TrafficRow,
    decode_traffic,
    decode_traffic_many,
    describe_topics,
    ensure_topics,
    read_cloudevent_headers,
)
from flowops.events.producer import Compression

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def fresh_broker() -> AsyncIterator[str]:
    """A broker of this test's own, for what must see an empty broker."""
    async with EmbeddedBroker(port=free_port()) as broker:
        yield broker.bootstrap


@pytest_asyncio.fixture
async def topic(broker: str) -> str:
    """A new three-partition topic on the session's broker."""
    name = f"test.traffic.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 3, 1)])
    finally:
        await admin.close()
    return name


async def consume(broker: str, topic: str, count: int) -> list[Any]:
    """The first ``count`` messages of ``topic`` (bounded: gives up after 20 empty polls)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest")
    await consumer.start()
    messages: list[Any] = []
    try:
        for _ in range(20):
            batches = await consumer.getmany(timeout_ms=500)
            messages += [m for part in batches.values() for m in part]
            if len(messages) >= count:
                break
    finally:
        await consumer.stop()
    return messages


def rows(model: str, count: int, version: str = "3") -> list[TrafficRow]:
    return [
        TrafficRow(
            model,
            version,
            f"{model}-{i}",
            1764291600.0 + i / 10,
            {"age": 20 + i, "income": None if i % 3 else 5e4, "region": ["n", "s"][i % 2]},
            {"score": i / count},
            5.0 + i,
            200 if i % 5 else 503,
        )
        for i in range(count)
    ]


# --- topics ---------------------------------------------------------------------------


async def test_ensure_topics_creates_every_topic_with_its_partitions_and_config(
    fresh_broker: str,
) -> None:
    created = await ensure_topics(fresh_broker, partitions=5)
    assert created == [spec.name for spec in TOPICS]
    described = await describe_topics(fresh_broker, created)
    assert {name: info.partitions for name, info in described.items()} == dict.fromkeys(created, 5)
    assert described[Topics.REFERENCES].configs.get("cleanup.policy") == "compact"
    assert "cleanup.policy" not in described[Topics.TRAFFIC].configs


async def test_ensure_topics_is_idempotent_and_keeps_existing_topics(fresh_broker: str) -> None:
    await ensure_topics(fresh_broker, partitions=2)
    assert await ensure_topics(fresh_broker, partitions=7) == []
    described = await describe_topics(fresh_broker, [Topics.TRAFFIC])
    assert described[Topics.TRAFFIC].partitions == 2


async def test_ensure_topics_creates_only_what_is_missing(fresh_broker: str) -> None:
    await ensure_topics(fresh_broker, partitions=1, topics=TOPICS[:2])
    assert await ensure_topics(fresh_broker, partitions=1) == [spec.name for spec in TOPICS[2:]]


async def test_describe_topics_leaves_missing_topics_alone(fresh_broker: str) -> None:
    assert await describe_topics(fresh_broker, ["no.such.topic"]) == {}
    assert await describe_topics(fresh_broker, ["no.such.topic"]) == {}  # not auto-created


# --- producing and consuming ---------------------------------------------------------------


async def test_a_traffic_batch_arrives_as_one_message_with_key_and_headers(
    broker: str, topic: str
) -> None:
    batch = TrafficBatch.from_rows(rows("credit", 50))
    async with TrafficProducer(broker, topic=topic, source="/models/credit") as producer:
        await producer.send(batch)
    [message] = await consume(broker, topic, 1)
    assert message.key == b"credit"
    assert decode_traffic(message.value) == batch
    event = read_cloudevent_headers(message.headers)
    assert (event.specversion, event.type, event.source) == (
        "1.0",
        "dev.flowops.traffic.v1",
        "/models/credit",
    )
    assert dict(message.headers)["content-type"] == b"application/json"


async def test_each_model_stays_in_one_partition(broker: str, topic: str) -> None:
    models = [f"model-{i}" for i in range(8)]
    async with TrafficProducer(broker, topic=topic) as producer:
        for model in models:
            for row in rows(model, 3):
                await producer.send(row)
    messages = await consume(broker, topic, 24)
    partitions: dict[bytes, set[int]] = {}
    for message in messages:
        partitions.setdefault(message.key, set()).add(message.partition)
    assert sorted(partitions) == sorted(model.encode() for model in models)
    assert all(len(found) == 1 for found in partitions.values())
    assert len({p for found in partitions.values() for p in found}) > 1  # spread out


async def test_one_row_messages_decode_many_at_once(broker: str, topic: str) -> None:
    sent = rows("fraud", 200)
    async with TrafficProducer(broker, topic=topic) as producer:
        for row in sent:
            await producer.send(row)
    messages = await consume(broker, topic, 200)
    decoded = decode_traffic_many([message.value for message in messages])
    assert decoded.errors == []
    [batch] = decoded.batches
    assert batch.request_ids == [row.request_id for row in sent]  # one partition, in order
    assert batch.status.tolist() == [row.status for row in sent]
    assert np.array_equal(batch.timestamps, [row.timestamp for row in sent])


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
async def test_tansu_takes_every_compression(
    broker: str, topic: str, compression: Compression
) -> None:
    batch = TrafficBatch.from_rows(rows("credit", 300))
    async with TrafficProducer(broker, topic=topic, compression=compression) as producer:
        await producer.send(batch)
    [message] = await consume(broker, topic, 1)
    assert decode_traffic(message.value) == batch


async def test_a_large_batch_is_split_and_every_row_arrives(broker: str, topic: str) -> None:
    batch = TrafficBatch.from_rows(rows("big", 2_000))
    async with TrafficProducer(broker, topic=topic, max_message_bytes=50_000) as producer:
        await producer.send(batch)
    messages = await consume(broker, topic, 2)
    decoded = decode_traffic_many([message.value for message in messages])
    assert len(messages) > 1
    assert decoded.batches[0].request_ids == batch.request_ids


async def test_an_alert_is_published_to_the_alerts_topic(broker: str) -> None:
    await ensure_topics(broker)
    model = f"m-{uuid.uuid4().hex[:8]}"
    alert = DriftAlert(
        alert_id=f"{model}-a",
        model=model,
        version="1",
        feature="age",
        test="psi",
        statistic=0.4,
        pvalue=None,
        threshold=0.2,
        window_start=0.0,
        window_end=60.0,
        window_index=0,
        n_reference=100,
        n_current=100,
        severity="critical",
        reference="first_window",
        detected_at=61.0,
    )
    async with EventProducer(broker, source="/flowops/streams") as producer:
        await producer.publish(alert)
    messages = await consume(broker, Topics.ALERTS, 1_000)
    [message] = [m for m in messages if m.key == model.encode()]
    assert DriftAlert.from_json(message.value) == alert
    assert read_cloudevent_headers(message.headers).id == alert.alert_id


async def test_tansu_rejects_idempotent_producers(broker: str, topic: str) -> None:
    """Why ``kafka.idempotence`` is off by default: Tansu's memory engine answers the
    InitProducerId request with an error. If this starts to pass, Tansu gained it."""
    with pytest.raises(BrokerError, match=r"kafka\.idempotence"):
        await send_one_idempotently(broker, topic)


async def send_one_idempotently(broker: str, topic: str) -> None:
    # the refusal comes at start or at the first send, as aiokafka's sender meets it
    async with TrafficProducer(broker, topic=topic, idempotence=True) as producer:
        await producer.send(rows("credit", 1)[0])


async def test_no_broker_is_a_broker_error() -> None:
    with pytest.raises(BrokerError, match="cannot start a producer"):
        async with TrafficProducer(f"127.0.0.1:{free_port()}"):
            pass
