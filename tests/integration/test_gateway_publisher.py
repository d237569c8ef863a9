"""The traffic publisher against a real Tansu broker: rows offered arrive on
``flowops.traffic`` as columnar batches with CloudEvents headers; a broker stopped in the
middle (and a new one started on the same port, empty) costs no queued row and never
makes ``offer`` wait; a publisher started before its broker delivers once it is up.

Each test uses models of its own name. Brokers a test starts itself are stopped by
``EmbeddedBroker.stop()`` (their pid) in a ``finally``. Waits are bounded polls of the
publisher's counters: nothing here measures time.
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
from flowops.events import (
    Topics,
    TrafficRow,
    decode_traffic_many,
    describe_topics,
    read_cloudevent_headers,
)
from flowops.gateway.publisher import PublishSettings, TrafficPublisher

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

FAST = PublishSettings(
    batch_size=50,
    linger_ms=5,
    queue_size=1_000,
    request_timeout=2.0,  # a send to a stopped broker fails after this
    retry_backoff=0.05,
    retry_backoff_max=0.5,
)


def row(model: str, i: int, version: str = "1", **extra: Any) -> TrafficRow:
    features = {"age": 20 + i % 50, "region": ["n", "s"][i % 2]}
    return TrafficRow(
        model, version, f"{model}-{i}", 1764291600.0 + i, features, i % 2, 3.0, 200, **extra
    )


async def read_model(bootstrap: str, model: str, rows: int) -> list[Any]:
    """The messages of ``model`` on flowops.traffic, once they hold ``rows`` rows (or more)."""

    def enough(found: list[Any]) -> bool:
        batches = decode_traffic_many([m.value for m in found]).batches
        return sum(batch.rows for batch in batches) >= rows

    return await read_key(bootstrap, Topics.TRAFFIC, model, enough)


def request_ids(messages: list[Any]) -> list[str]:
    decoded = decode_traffic_many([message.value for message in messages])
    assert decoded.errors == []
    return [request_id for batch in decoded.batches for request_id in batch.request_ids]


async def test_offered_rows_arrive_as_columnar_batches(broker: str) -> None:
    model = f"gw-{uuid.uuid4().hex[:8]}"
    publisher = TrafficPublisher.for_kafka(
        KafkaSettings(bootstrap=broker), FAST, source="/flowops/gateway/test"
    )
    await publisher.start()
    offered = [
        row(model, i, version=str(1 + i % 2), variant="b" if i % 3 == 0 else "a")
        for i in range(240)
    ]
    unread = TrafficRow(model, "1", f"{model}-x", 1.0, {}, None, 1.0, 200, parse_error="not JSON")
    assert all(publisher.offer(r) for r in [*offered, unread])
    await until(lambda: publisher.stats().sent == 241, "all sent")
    assert await publisher.stop() == 0

    messages = await read_model(broker, model, 241)
    assert len(messages) < 241 / 10  # rounds of up to 50 rows, a message per version
    decoded = decode_traffic_many([message.value for message in messages])
    by_version = {batch.version: batch for batch in decoded.batches}
    assert sorted(by_version) == ["1", "2"]
    assert sorted(request_ids(messages)) == sorted(r.request_id for r in [*offered, unread])
    one = by_version["1"]
    expected = [r for r in [*offered, unread] if r.version == "1"]
    assert one.request_ids == [r.request_id for r in expected]  # one partition: in order
    assert one.variants == [r.variant for r in expected]
    assert one.unparsable == 1
    assert one.parsed().features["age"] == [r.features["age"] for r in expected[:-1]]
    event = read_cloudevent_headers(messages[0].headers)
    assert (event.type, event.source) == ("dev.flowops.traffic.v1", "/flowops/gateway/test")


async def test_a_broker_stopped_and_replaced_costs_no_queued_row() -> None:
    port = free_port()
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{port}", partitions=3)
    model = f"gw-{uuid.uuid4().hex[:8]}"
    first = EmbeddedBroker(port=port)
    second = EmbeddedBroker(port=port)
    publisher = TrafficPublisher.for_kafka(kafka, FAST)
    try:
        await asyncio.to_thread(first.start)
        await publisher.start()
        for i in range(100):
            publisher.offer(row(model, i))
        await until(lambda: publisher.stats().sent == 100, "the first rows sent")

        await asyncio.to_thread(first.stop)  # memory storage: its topics go with it
        burst = [publisher.offer(row(model, i)) for i in range(100, 400)]
        assert burst == [True] * 300  # plain calls, no await between them:
        assert publisher.queue_depth == 300  # the sender did not run, nothing waited
        await until(lambda: publisher.stats().send_errors >= 1, "the failure noticed")
        assert not publisher.stats().connected
        assert all(publisher.offer(row(model, i)) for i in range(400, 600))  # still down

        await asyncio.to_thread(second.start)  # the same port, empty
        await until(lambda: publisher.stats().sent == 600, "every queued row sent")
        stats = publisher.stats()
        assert (stats.dropped, stats.invalid, stats.queued, stats.in_flight) == (0, 0, 0, 0)
        assert await publisher.stop() == 0

        messages = await read_model(second.bootstrap, model, 500)
        got = request_ids(messages)
        assert sorted(set(got)) == sorted(f"{model}-{i}" for i in range(100, 600))
        assert len(got) == 500, "a row was delivered twice"
        topics = await describe_topics(second.bootstrap, [Topics.TRAFFIC])
        assert topics[Topics.TRAFFIC].partitions == 3  # made by the publisher, as configured
    finally:
        await publisher.stop(drain_timeout=0)
        await asyncio.to_thread(first.stop)
        await asyncio.to_thread(second.stop)


async def test_a_publisher_started_before_its_broker_delivers_once_it_is_up() -> None:
    port = free_port()
    model = f"gw-{uuid.uuid4().hex[:8]}"
    publisher = TrafficPublisher.for_kafka(KafkaSettings(bootstrap=f"127.0.0.1:{port}"), FAST)
    late = EmbeddedBroker(port=port)
    try:
        await publisher.start()
        assert all(publisher.offer(row(model, i)) for i in range(10))
        await until(lambda: publisher.stats().send_errors >= 2, "refused, and tried again")
        await asyncio.to_thread(late.start)
        await until(lambda: publisher.stats().sent == 10, "sent once the broker is up")
        assert await publisher.stop() == 0
        assert sorted(request_ids(await read_model(late.bootstrap, model, 10))) == sorted(
            f"{model}-{i}" for i in range(10)
        )
    finally:
        await publisher.stop(drain_timeout=0)
        await asyncio.to_thread(late.stop)
