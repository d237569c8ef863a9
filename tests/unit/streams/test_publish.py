"""``streams.publish.Publisher``: alerts once per id, dead letters, acks awaited."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowops.config import KafkaSettings
from flowops.drift import Finding
from flowops.errors import EventError
from flowops.events import DeadLetter, DriftAlert, Topics, read_cloudevent_headers
from streams.monitors import Reject
from streams.publish import Publisher

pytestmark = pytest.mark.asyncio


class FakeProducer:
    """Records sends; each send's future fails when ``fail`` is set."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []
        self.fail = False

    async def send(self, topic: str, value: bytes, **options: Any) -> asyncio.Future[None]:
        self.sent.append((topic, value, options))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            future.set_exception(ConnectionError("broker gone"))
        else:
            future.set_result(None)
        return future


def publisher() -> tuple[Publisher, FakeProducer]:
    fake = FakeProducer()
    publisher = Publisher(KafkaSettings(), source="/flowops/streams/test", consumer="g")
    publisher._producer = fake
    return publisher, fake


def finding(window: int, feature: str = "x") -> Finding:
    return Finding(
        "m", "1", feature, "ks", 0.4, 0.001, 0.05, window, 0.0, 1.0, 10, 10, "critical", "profile"
    )


async def test_an_alert_is_sent_once_per_id_with_cloudevent_headers() -> None:
    pub, fake = publisher()
    sent = await pub.alerts([finding(1), finding(1), finding(2)])
    again = await pub.alerts([finding(1), finding(3)])
    assert [a.window_index for a in sent] == [1, 2]
    assert [a.window_index for a in again] == [3]
    topic, value, options = fake.sent[0]
    assert (topic, options["key"]) == (Topics.ALERTS, b"m")
    assert DriftAlert.from_json(value).alert_id == finding(1).alert_id
    event = read_cloudevent_headers(options["headers"])
    assert (event.id, event.source) == (finding(1).alert_id, "/flowops/streams/test")


async def test_an_alert_not_acknowledged_is_sent_again_later() -> None:
    pub, fake = publisher()
    fake.fail = True
    with pytest.raises(ConnectionError):
        await pub.alerts([finding(1)])
    fake.fail = False
    assert [a.window_index for a in await pub.alerts([finding(1)])] == [1]


async def test_a_dead_letter_keeps_the_bytes_and_the_reason() -> None:
    pub, fake = publisher()
    error = EventError("not JSON", event="traffic", code="bad_json")
    await pub.dead_letters([Reject(Topics.TRAFFIC, 2, 17, b"m", b"{", error)])
    [(topic, value, options)] = fake.sent
    letter = DeadLetter.from_json(value)
    assert (topic, options["key"]) == (Topics.DEADLETTER, Topics.TRAFFIC.encode())
    assert (letter.partition, letter.offset, letter.value_bytes()) == (2, 17, b"{")
    assert (letter.error, letter.consumer) == ("bad_json", "g")
    assert "not JSON" in letter.reason


async def test_state_records_go_to_their_partition_in_order() -> None:
    pub, fake = publisher()
    await pub.records("state", 3, [(b"a", b"1"), (b"b", b"2")])
    assert [(v, o["key"], o["partition"]) for _, v, o in fake.sent] == [
        (b"1", b"a", 3),
        (b"2", b"b", 3),
    ]
