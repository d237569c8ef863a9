"""What the traffic agent writes: drift alerts, dead letters and its state records.

One aiokafka producer, idempotence off (Tansu's memory engine rejects idempotent
producers; at-least-once does not need it) and ``acks=all``: a send counts as done when
the broker has it, which is what the checkpoint protocol waits for. Alerts and dead
letters carry CloudEvents headers (binary mode).

Alerts are published at most once per id by this worker: :class:`RecentIds` remembers
the last ids sent (each monitor also drops the ids it emitted before).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka import AIOKafkaProducer

from flowops.config import KafkaSettings
from flowops.drift import Finding
from flowops.events import DeadLetter, DriftAlert, cloudevent_headers
from flowops.kafka_security import client_options
from streams.monitors import Reject
from streams.state import MAX_RECORD_BYTES as _MAX_RECORD_BYTES

__all__ = ["RECENT_IDS", "Publisher", "RecentIds"]

RECENT_IDS: Final = 100_000


class RecentIds:
    """A bounded set of recently seen ids (oldest forgotten first).

    >>> ids = RecentIds(2)
    >>> [ids.add(x) for x in ["a", "b", "a", "c", "a"]]
    [True, True, False, True, True]
    >>> "b" in ids, "c" in ids
    (False, True)
    """

    def __init__(self, size: int = RECENT_IDS) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def add(self, item: str) -> bool:
        """Remember ``item``; False when it was already remembered."""
        if item in self._ids:
            return False
        self._ids[item] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


class Publisher:
    """Sends alerts, dead letters and state records; :meth:`wait` for the acks."""

    def __init__(self, kafka: KafkaSettings, *, source: str, consumer: str) -> None:
        self._kafka = kafka
        self._producer: Any = None  # made in start(): aiokafka wants a running loop
        self._source = source
        self._consumer = consumer
        self._sent = RecentIds()

    async def start(self) -> None:
        """Connect."""
        kafka = self._kafka
        self._producer = AIOKafkaProducer(
            **client_options(kafka),
            client_id=f"{kafka.client_id}-streams",
            acks="all",
            enable_idempotence=False,
            compression_type=None if kafka.compression == "none" else kafka.compression,
            linger_ms=2,
            max_request_size=_MAX_RECORD_BYTES,
        )
        await self._producer.start()

    async def stop(self) -> None:
        """Flush and disconnect."""
        await self._producer.stop()

    async def alerts(
        self, findings: Iterable[Finding], reports: Mapping[str, str] | None = None
    ) -> list[DriftAlert]:
        """Send the alert of each finding not sent before; returns them once acknowledged.

        ``reports`` gives the address of an alert's report by alert id. An id counts as
        sent only when the broker acknowledged it, so a failed send is sent again when
        its rows are replayed.
        """
        now = time.time()
        links = reports or {}
        alerts = {f.alert_id: f for f in findings if f.alert_id not in self._sent}
        sent = [
            DriftAlert.from_finding(f, detected_at=now, report=links.get(key))
            for key, f in alerts.items()
        ]
        await _acked([await self._send_event(alert, now) for alert in sent])
        for alert in sent:
            self._sent.add(alert.alert_id)
        return sent

    async def dead_letters(self, rejects: Sequence[Reject]) -> None:
        """Send a dead letter per rejected record and wait for the acks."""
        now = time.time()
        futures = []
        for reject in rejects:
            letter = DeadLetter.for_message(
                topic=reject.topic,
                partition=reject.partition,
                offset=reject.offset,
                key=reject.key,
                value=reject.value,
                error=reject.error,
                consumer=self._consumer,
                failed_at=now,
            )
            futures.append(await self._send_event(letter, now))
        await _acked(futures)

    async def records(
        self, topic: str, partition: int, records: Sequence[tuple[bytes, bytes]]
    ) -> None:
        """Send records to one partition, in order, and wait until all are acknowledged."""
        futures = [
            await self._producer.send(topic, value, key=key, partition=partition)
            for key, value in records
        ]
        await _acked(futures)

    async def keyed(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Send records to the partitions their keys hash to (murmur2), wait for the acks."""
        futures = [await self._producer.send(topic, value, key=key) for key, value in records]
        await _acked(futures)

    async def everywhere(self, topic: str, partitions: int, values: Sequence[bytes]) -> None:
        """Send each value to every one of ``partitions`` partitions, wait for the acks."""
        futures = [
            await self._producer.send(topic, value, partition=partition)
            for value in values
            for partition in range(partitions)
        ]
        await _acked(futures)

    async def _send_event(self, event: DriftAlert | DeadLetter, now: float) -> Any:
        headers = cloudevent_headers(
            event.EVENT_TYPE, self._source, event.event_id(), datetime.fromtimestamp(now, UTC)
        )
        return await self._producer.send(
            event.TOPIC, event.to_json(), key=event.kafka_key(), headers=headers
        )


async def _acked(futures: Sequence[Any]) -> None:
    """Wait for every send; the first failure is raised after all have settled."""
    if not futures:
        return
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
