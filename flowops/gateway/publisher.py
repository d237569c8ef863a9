"""Traffic to Kafka without ever making a request wait: a bounded queue and a sender task.

The proxy calls :meth:`TrafficPublisher.offer` once per traffic row, after the response
is sent. ``offer`` is a plain function: it appends the row to an in-memory queue and
returns ``True``, or, when ``queue_size`` rows are waiting already, drops the row,
counts it and returns ``False``. It never waits on Kafka, so a slow or down broker
cannot delay or fail a request; it costs the proxy memory up to the bound, no more.

A background task sends the queue in *rounds*:

1. wait for a row, then up to ``linger_ms`` for ``batch_size`` rows; take at most
   ``batch_size`` rows off the queue;
2. send them as one columnar :class:`~flowops.events.TrafficBatch` message per model
   version (:class:`~flowops.events.TrafficProducer`: keyed by model, CloudEvents
   headers, ``acks=all``, ``kafka.compression``, ``kafka.idempotence``), and wait for
   the broker's acknowledgement;
3. when that fails, *hold* the round: close the producer, wait (``retry_backoff``,
   doubling up to ``retry_backoff_max``), reconnect (creating ``flowops.traffic`` when
   it is missing, unless ``create_topic`` is off) and send the same rows again, until
   they are delivered. Meanwhile ``offer`` keeps queueing up to the bound.

So every row that was queued is delivered once Kafka is back, in order, at least once: a
round that failed after the broker had stored part of it is sent again whole. Rows the
codec refuses (a bug upstream of the publisher) are dropped and counted as ``invalid``.

Why the publisher creates its topic: a broker that comes back empty (Tansu with memory
storage; a cluster rebuilt) would otherwise have the topic created by the producer's
first metadata request, with the broker's default partition count (Tansu: 4) instead of
``kafka.partitions``, or, with ``auto.create.topics.enable=false``, not at all. Creating
it is what every FlowOps component does at start; turn ``create_topic`` off where the
gateway's Kafka user may not create topics.

>>> import asyncio
>>> from flowops.events import TrafficRow
>>> class Printed:
...     async def open(self): pass
...     async def send(self, rows): print([row.request_id for row in rows])
...     async def close(self): pass
>>> async def demo():
...     publisher = TrafficPublisher(PublishSettings(linger_ms=0), Printed())
...     await publisher.start()
...     publisher.offer(TrafficRow("m", "1", "r-1", 0.0, {"x": 1.0}, 0, 1.0, 200))
...     return await publisher.stop()
>>> asyncio.run(demo())
['r-1']
0
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flowops.config import KafkaSettings
from flowops.events import Topics, TrafficProducer, TrafficRow, encode_traffic
from flowops.events.producer import ProducerClient
from flowops.events.sender import (
    KafkaSink,
    QueuedPublisher,
    SenderNames,
    SenderStats,
    Sink,
    ordered_backoff,
)

__all__ = [
    "KafkaTrafficSink",
    "PublishSettings",
    "PublisherStats",
    "TrafficPublisher",
    "TrafficSink",
]

log = logging.getLogger("flowops.gateway")

_Sleep = Callable[[float], Awaitable[Any]]
_NAMES = SenderNames(log, "traffic publisher", "rows", "flowops-traffic-publisher")


class PublishSettings(BaseModel):
    """How the gateway publishes traffic to Kafka (``gateway.publish``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: no traffic events at all")
    queue_size: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="rows held in memory while Kafka is slow or down; more are dropped",
    )
    batch_size: int = Field(
        1_000, ge=1, le=100_000, description="most rows sent in one round (one round trip)"
    )
    linger_ms: int = Field(
        50, ge=0, le=60_000, description="how long a round waits to fill batch_size rows"
    )
    drain_timeout: float = Field(
        5.0, ge=0, le=3600, description="seconds stop() gives queued rows to reach Kafka"
    )
    retry_backoff: float = Field(
        0.1, gt=0, le=3600, description="seconds to wait after a failed send; doubles"
    )
    retry_backoff_max: float = Field(
        5.0, gt=0, le=3600, description="the longest wait between two tries"
    )
    request_timeout: float = Field(
        10.0, gt=0, le=3600, description="seconds a send waits for the broker before it fails"
    )
    create_topic: bool = Field(
        True,
        description="create flowops.traffic (kafka.partitions) when it is missing; "
        "false where the gateway may not create topics",
    )

    _backoff_order = model_validator(mode="after")(ordered_backoff)


class TrafficSink(Sink[TrafficRow], Protocol):
    """Where rounds go: :class:`KafkaTrafficSink`, or a fake in tests.

    ``send`` returns once the rows are stored, and raises otherwise (any exception; an
    :class:`~flowops.errors.EventError` means a row cannot be encoded). After a failure
    the publisher calls ``close`` and later ``open`` again.
    """


@dataclass(frozen=True)
class PublisherStats(SenderStats):
    """The publisher's counters at one moment (rows, not messages), for ``/metrics``.

    ``invalid`` counts the rows the codec refused (not counted in ``dropped``).
    """


class TrafficPublisher(QueuedPublisher[TrafficRow]):
    """The bounded queue and the task that publishes it; see the module docstring.

    ``offer`` must be called from the event loop's thread (the gateway's handlers).
    Rows offered before :meth:`start` wait in the queue.
    """

    names = _NAMES
    settings: PublishSettings

    def __init__(
        self, settings: PublishSettings, sink: TrafficSink, *, sleep: _Sleep = asyncio.sleep
    ) -> None:
        super().__init__(
            settings,
            sink,
            batch_size=settings.batch_size,
            linger=settings.linger_ms / 1000,
            check=encode_traffic,
            sleep=sleep,
        )

    @classmethod
    def for_kafka(
        cls, kafka: KafkaSettings, settings: PublishSettings, *, source: str = "/flowops/gateway"
    ) -> TrafficPublisher:
        """A publisher to the ``kafka`` settings' cluster; ``source`` is the ce_source."""
        return cls(settings, KafkaTrafficSink(kafka, settings, source=source))

    def offer(self, row: TrafficRow) -> bool:
        """Queue ``row`` for publishing; ``False`` (and counted) when it is dropped.

        Never waits: this is a plain function, safe on every request's path.
        """
        return self._offer(row)

    def stats(self) -> PublisherStats:
        """The counters now."""
        return self._stats(PublisherStats)


class KafkaTrafficSink(KafkaSink[TrafficRow, TrafficProducer]):
    """Rounds to ``flowops.traffic`` through a :class:`~flowops.events.TrafficProducer`.

    Each :meth:`open` makes a new producer (after creating the topic when it is missing
    and ``create_topic`` is on); :meth:`send` queues one message per model version and
    waits for the broker's acknowledgements. ``client`` makes the aiokafka producer
    (tests pass a fake).
    """

    names = _NAMES

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: PublishSettings,
        *,
        source: str = "/flowops/gateway",
        topic: str = Topics.TRAFFIC,
        client: Callable[[], ProducerClient] | None = None,
    ) -> None:
        super().__init__(
            kafka,
            settings,
            source=source,
            topic=topic,
            client_id=f"{kafka.client_id}-gateway",
            client=client,
        )

    def _make_producer(self, client: ProducerClient) -> TrafficProducer:
        kafka = self.kafka
        return TrafficProducer(
            kafka.bootstrap,
            topic=self.topic,
            source=self.source,
            idempotence=kafka.idempotence,
            client=client,
        )

    async def _publish(self, producer: TrafficProducer, rows: Sequence[TrafficRow]) -> None:
        await producer.send(rows)
