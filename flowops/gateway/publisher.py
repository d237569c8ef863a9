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
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flowops.config import KafkaSettings
from flowops.errors import EventError, ServiceError
from flowops.events import (
    Topics,
    TopicSpec,
    TrafficProducer,
    TrafficRow,
    encode_traffic,
    ensure_topics,
)
from flowops.events.producer import ProducerClient

__all__ = [
    "KafkaTrafficSink",
    "PublishSettings",
    "PublisherStats",
    "TrafficPublisher",
    "TrafficSink",
]

log = logging.getLogger("flowops.gateway")

_Sleep = Callable[[float], Awaitable[Any]]


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

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.retry_backoff_max < self.retry_backoff:
            raise ValueError(
                f"retry_backoff_max ({self.retry_backoff_max:g}) is below "
                f"retry_backoff ({self.retry_backoff:g})"
            )
        return self


class TrafficSink(Protocol):
    """Where rounds go: :class:`KafkaTrafficSink`, or a fake in tests.

    ``send`` returns once the rows are stored, and raises otherwise (any exception; an
    :class:`~flowops.errors.EventError` means a row cannot be encoded). After a failure
    the publisher calls ``close`` and later ``open`` again.
    """

    async def open(self) -> None:
        """Connect; raise if the broker cannot be reached."""
        ...

    async def send(self, rows: Sequence[TrafficRow]) -> None:
        """Deliver ``rows``, or raise."""
        ...

    async def close(self) -> None:
        """Disconnect; must not raise."""
        ...


@dataclass(frozen=True)
class PublisherStats:
    """The publisher's counters at one moment (rows, not messages), for ``/metrics``."""

    queued: int
    """Rows waiting in the queue."""
    in_flight: int
    """Rows of the round being sent, or held to be sent again."""
    sent: int
    """Rows the broker acknowledged."""
    dropped: int
    """Rows that will not be published: the queue was full, or the publisher stopped."""
    invalid: int
    """Rows the codec refused (not counted in ``dropped``)."""
    send_errors: int
    """Rounds that failed (each is tried again)."""
    connected: bool
    """Whether the last round, or connection, succeeded."""


class TrafficPublisher:
    """The bounded queue and the task that publishes it; see the module docstring.

    ``offer`` must be called from the event loop's thread (the gateway's handlers).
    Rows offered before :meth:`start` wait in the queue.
    """

    def __init__(
        self, settings: PublishSettings, sink: TrafficSink, *, sleep: _Sleep = asyncio.sleep
    ) -> None:
        self.settings = settings
        self._sink = sink
        self._sleep = sleep
        self._queue: deque[TrafficRow] = deque()
        self._held: list[TrafficRow] = []
        self._accepting = settings.enabled
        self._closing = False
        self._connected = False
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self.invalid = 0
        self.send_errors = 0

    @classmethod
    def for_kafka(
        cls, kafka: KafkaSettings, settings: PublishSettings, *, source: str = "/flowops/gateway"
    ) -> TrafficPublisher:
        """A publisher to the ``kafka`` settings' cluster; ``source`` is the ce_source."""
        return cls(settings, KafkaTrafficSink(kafka, settings, source=source))

    # -- the proxy's side ------------------------------------------------------------

    def offer(self, row: TrafficRow) -> bool:
        """Queue ``row`` for publishing; ``False`` (and counted) when it is dropped.

        Never waits: this is a plain function, safe on every request's path.
        """
        if not self._accepting:
            if self.settings.enabled:
                self.dropped += 1
            return False
        queue = self._queue
        if len(queue) >= self.settings.queue_size:
            self.dropped += 1
            return False
        queue.append(row)
        self._wake.set()
        if len(queue) >= self.settings.batch_size:
            self._full.set()
        return True

    @property
    def queue_depth(self) -> int:
        """Rows waiting in the queue."""
        return len(self._queue)

    def stats(self) -> PublisherStats:
        """The counters now."""
        return PublisherStats(
            queued=len(self._queue),
            in_flight=len(self._held),
            sent=self.sent,
            dropped=self.dropped,
            invalid=self.invalid,
            send_errors=self.send_errors,
            connected=self._connected,
        )

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the sender task; returns at once, whether Kafka answers or not."""
        if self._task is None and self.settings.enabled:
            self._task = asyncio.create_task(self._run(), name="flowops-traffic-publisher")

    async def stop(self, drain_timeout: float | None = None) -> int:
        """Refuse new rows, send what is queued for up to ``drain_timeout`` seconds
        (``settings.drain_timeout`` by default), disconnect; return the rows left undelivered
        (counted as dropped)."""
        timeout = self.settings.drain_timeout if drain_timeout is None else drain_timeout
        self._accepting = False
        self._closing = True
        self._wake.set()
        self._full.set()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._disconnect()
        lost = len(self._queue) + len(self._held)
        if lost:
            log.warning("traffic publisher stopped with %d rows undelivered", lost)
        self.dropped += lost
        self._queue.clear()
        self._held = []
        return lost

    # -- the sender task -------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.settings.retry_backoff
        failures = 0  # in a row
        while True:
            if not self._held:
                self._held = await self._next_round()
                if not self._held:
                    return  # closing, and nothing left
            try:
                await self._deliver(self._held)
            except Exception as exc:
                failures += 1
                await self._failed(exc, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_backoff_max)
                continue
            if failures:
                log.info("traffic publishing resumed after %d failed tries", failures)
            backoff, failures = self.settings.retry_backoff, 0
            self.sent += len(self._held)
            self._held = []

    async def _next_round(self) -> list[TrafficRow]:
        """Up to ``batch_size`` rows, after lingering for more; ``[]`` once closing."""
        queue, settings = self._queue, self.settings
        while not queue:
            if self._closing:
                return []
            self._wake.clear()
            await self._wake.wait()
        if len(queue) < settings.batch_size and settings.linger_ms and not self._closing:
            self._full.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), settings.linger_ms / 1000)
        return [queue.popleft() for _ in range(min(len(queue), settings.batch_size))]

    async def _deliver(self, rows: list[TrafficRow]) -> None:
        if not self._connected:
            await self._sink.open()
            self._connected = True
        try:
            await self._sink.send(rows)
        except EventError:
            self._held = rows = self._valid(rows)
            if rows:
                await self._sink.send(rows)

    def _valid(self, rows: list[TrafficRow]) -> list[TrafficRow]:
        """The rows the codec takes; the others are counted and logged (once a round)."""
        valid: list[TrafficRow] = []
        errors: list[EventError] = []
        for row in rows:
            try:
                encode_traffic(row)
            except EventError as exc:
                errors.append(exc)
            else:
                valid.append(row)
        if errors:
            self.invalid += len(errors)
            log.error("traffic publisher: %d invalid rows dropped: %s", len(errors), errors[0])
        return valid

    async def _failed(self, exc: Exception, backoff: float) -> None:
        """Disconnect, count the failure, and say so (the first time, then quietly)."""
        first = self._connected or self.send_errors == 0
        await self._disconnect()
        self.send_errors += 1
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "traffic publishing failed (%s); holding %d rows, %d queued; retrying in %g s",
            str(exc) or type(exc).__name__,
            len(self._held),
            len(self._queue),
            backoff,
            exc_info=_unexpected(exc),
        )

    async def _disconnect(self) -> None:
        if self._connected:
            self._connected = False
            await self._sink.close()


def _unexpected(exc: Exception) -> bool:
    """Whether ``exc`` is not a broker failure (then its traceback is logged: a bug)."""
    return not isinstance(exc, KafkaError | ServiceError | OSError | TimeoutError)


class KafkaTrafficSink:
    """Rounds to ``flowops.traffic`` through a :class:`~flowops.events.TrafficProducer`.

    Each :meth:`open` makes a new producer (after creating the topic when it is missing
    and ``create_topic`` is on); :meth:`send` queues one message per model version and
    waits for the broker's acknowledgements. ``client`` makes the aiokafka producer
    (tests pass a fake).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: PublishSettings,
        *,
        source: str = "/flowops/gateway",
        topic: str = Topics.TRAFFIC,
        client: Callable[[], ProducerClient] | None = None,
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.source = source
        self.topic = topic
        self._client = client or self._aiokafka
        self._producer: TrafficProducer | None = None

    async def open(self) -> None:
        kafka = self.kafka
        if self.settings.create_topic:
            await ensure_topics(
                kafka.bootstrap,
                kafka.partitions,
                replication=kafka.replication,
                topics=[TopicSpec(self.topic)],
                timeout=self.settings.request_timeout,
            )
        producer = TrafficProducer(
            kafka.bootstrap,
            topic=self.topic,
            source=self.source,
            idempotence=kafka.idempotence,
            client=self._client(),
        )
        await producer.start()
        self._producer = producer

    async def send(self, rows: Sequence[TrafficRow]) -> None:
        if self._producer is None:
            raise RuntimeError("open the sink first")
        await self._producer.send(rows)
        await self._producer.flush()

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.stop(), self.settings.request_timeout)
        except Exception as exc:  # closing a producer to a broker that is gone: say, go on
            log.debug("closing the traffic producer: %s", exc)

    def _aiokafka(self) -> ProducerClient:
        """An aiokafka producer as :class:`~flowops.events.EventProducer` makes one, with
        this sink's timeout and no linger (each round waits for its acknowledgement)."""
        kafka = self.kafka
        client: ProducerClient = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap,
            client_id=f"{kafka.client_id}-gateway",
            acks="all",
            compression_type=None if kafka.compression == "none" else kafka.compression,
            enable_idempotence=kafka.idempotence,
            linger_ms=0,
            request_timeout_ms=int(self.settings.request_timeout * 1000),
        )
        return client
