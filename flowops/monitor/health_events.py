"""Health events on ``flowops.health``: when a check changes state, and as a heartbeat.

The agent hands each round's :class:`~flowops.monitor.checks.CheckResult` to
:meth:`HealthEventPublisher.record`, a plain function: it turns the results into
:class:`~flowops.events.HealthEvent` where one is due and appends them to a bounded
in-memory queue. An event is due for a (target, check) the first time it is seen, when its
status differs from the last event queued for it, and every ``heartbeat`` seconds
otherwise. The status is:

* ``up``: the check passed;
* ``degraded``: the check passed, but took longer than ``degraded_after`` seconds (off
  by default): a canary that answers slowly is up for alerts and people should still see
  it. Nothing else is degraded: a probe's verdict is pass or fail;
* ``down``: the check failed.

A background task sends the queue to Kafka (keyed by target, CloudEvents headers) and
waits for the broker's acknowledgement; when that fails it holds the events, reconnects
with a doubling backoff and sends them again, so they arrive in order, at least once, once
Kafka is back. ``record`` never waits on Kafka: with the queue full (``queue_size``) it
drops the event, counts it, and offers the (target, check) again at the next round. So a
Kafka outage costs memory up to the bound, never a round.

>>> import asyncio
>>> from flowops.monitor.checks import CheckResult
>>> class Printed:
...     async def open(self): pass
...     async def send(self, events): print([(e.target, e.status) for e in events])
...     async def close(self): pass
>>> async def demo():
...     publisher = HealthEventPublisher(HealthEventSettings(), Printed())
...     await publisher.start()
...     publisher.record([CheckResult("kafka.metadata", "k:9092", False, 0.2, "refused")], 0.0)
...     publisher.record([CheckResult("kafka.metadata", "k:9092", False, 0.2, "refused")], 5.0)
...     return await publisher.stop()
>>> asyncio.run(demo())
[('k:9092', 'down')]
0
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flowops.config import KafkaSettings
from flowops.errors import ServiceError
from flowops.events import EventProducer, HealthEvent, Topics, TopicSpec, ensure_topics
from flowops.events.producer import ProducerClient
from flowops.monitor.checks import CheckResult

__all__ = [
    "EventSink",
    "HealthEventPublisher",
    "HealthEventSettings",
    "HealthPublisherStats",
    "KafkaEventSink",
    "health_status",
]

log = logging.getLogger("flowops.monitor")

HealthStatus = Literal["up", "degraded", "down"]
_Sleep = Callable[[float], Awaitable[Any]]
_BATCH = 500  # most events sent in one round trip
_JITTER = 0.5  # seconds a round may start early and still be a heartbeat's round


class HealthEventSettings(BaseModel):
    """The monitor's health events (``monitor.health_events``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: no health events at all")
    heartbeat: float = Field(
        60.0,
        ge=0,
        le=86_400,
        description="seconds between two events of an unchanged check; 0: on changes only",
    )
    degraded_after: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="a passing check slower than this many seconds is 'degraded'; default: never",
    )
    queue_size: int = Field(
        10_000, ge=1, le=1_000_000, description="events held while Kafka is down; more drop"
    )
    retry_backoff: float = Field(
        0.2, gt=0, le=3600, description="seconds to wait after a failed send; doubles"
    )
    retry_backoff_max: float = Field(
        10.0, gt=0, le=3600, description="the longest wait between two tries"
    )
    request_timeout: float = Field(
        10.0, gt=0, le=3600, description="seconds a send waits for the broker before it fails"
    )
    drain_timeout: float = Field(
        5.0, ge=0, le=3600, description="seconds stop() gives queued events to reach Kafka"
    )
    create_topic: bool = Field(
        True, description="create flowops.health (kafka.partitions) when it is missing"
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.retry_backoff_max < self.retry_backoff:
            raise ValueError(
                f"retry_backoff_max ({self.retry_backoff_max:g}) is below "
                f"retry_backoff ({self.retry_backoff:g})"
            )
        return self


def health_status(result: CheckResult, degraded_after: float | None = None) -> HealthStatus:
    """A check result's status; see the module docstring.

    >>> health_status(CheckResult("c", "t", True, 2.5, "OK"), degraded_after=1.0)
    'degraded'
    """
    if not result.success:
        return "down"
    if degraded_after is not None and result.duration_seconds > degraded_after:
        return "degraded"
    return "up"


class EventSink(Protocol):
    """Where events go: :class:`KafkaEventSink`, or a fake in tests.

    ``send`` returns once the events are stored, and raises otherwise. After a failure
    the publisher calls ``close``, and ``open`` before it tries again.
    """

    async def open(self) -> None:
        """Connect; raise if the broker cannot be reached."""
        ...

    async def send(self, events: Sequence[HealthEvent]) -> None:
        """Deliver ``events``, or raise."""
        ...

    async def close(self) -> None:
        """Disconnect; must not raise."""
        ...


@dataclass(frozen=True)
class HealthPublisherStats:
    """The publisher's counters at one moment, for ``/metrics``."""

    queued: int
    """Events waiting in the queue."""
    in_flight: int
    """Events being sent, or held to be sent again."""
    sent: int
    """Events the broker acknowledged."""
    dropped: int
    """Events not published: the queue was full, or the publisher stopped."""
    invalid: int
    """Results no event can carry (an empty target); logged."""
    send_errors: int
    """Sends that failed (each is tried again)."""
    connected: bool
    """Whether the last send, or connection, succeeded."""


@dataclass(frozen=True, slots=True)
class _Last:
    status: HealthStatus
    at: float


class HealthEventPublisher:
    """Health events from check results, queued and sent; see the module docstring.

    Call :meth:`record` from the event loop's thread. Events recorded before
    :meth:`start` wait in the queue.
    """

    def __init__(
        self, settings: HealthEventSettings, sink: EventSink, *, sleep: _Sleep = asyncio.sleep
    ) -> None:
        self.settings = settings
        self._sink = sink
        self._sleep = sleep
        self._last: dict[tuple[str, str], _Last] = {}
        self._queue: deque[HealthEvent] = deque()
        self._held: list[HealthEvent] = []
        self._accepting = settings.enabled
        self._closing = False
        self._connected = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self.invalid = 0
        self.send_errors = 0

    @classmethod
    def for_kafka(
        cls,
        kafka: KafkaSettings,
        settings: HealthEventSettings,
        *,
        source: str = "/flowops/monitor",
    ) -> HealthEventPublisher:
        """A publisher to the ``kafka`` settings' cluster; ``source`` is the ce_source."""
        return cls(settings, KafkaEventSink(kafka, settings, source=source))

    # -- the agent's side ------------------------------------------------------------

    def record(self, results: Iterable[CheckResult], now: float) -> list[HealthEvent]:
        """Queue the events due for a round's results, checked at ``now`` (Unix seconds);
        return the events queued. Never waits."""
        if not self._accepting:
            return []
        queued: list[HealthEvent] = []
        for result in results:
            event = self._due(result, now)
            if event is not None and self._offer(event):
                self._last[(event.target, event.check)] = _Last(event.status, now)
                queued.append(event)
        return queued

    def _due(self, result: CheckResult, now: float) -> HealthEvent | None:
        status = health_status(result, self.settings.degraded_after)
        if self._quiet(self._last.get((result.target, result.check)), status, now):
            return None
        try:
            return HealthEvent(
                target=result.target,
                check=result.check,
                status=status,
                latency_ms=result.duration_seconds * 1000,
                detail=result.detail,
                checked_at=now,
            )
        except ValidationError as exc:
            self.invalid += 1
            log.error("health events: no event for %r: %s", result, exc)
            return None

    def _quiet(self, last: _Last | None, status: HealthStatus, now: float) -> bool:
        """Whether nothing is due: the same status as the last event, and no heartbeat."""
        if last is None or last.status != status:
            return False
        heartbeat = self.settings.heartbeat
        return not heartbeat or now - last.at < heartbeat - _JITTER

    def _offer(self, event: HealthEvent) -> bool:
        if len(self._queue) >= self.settings.queue_size:
            self.dropped += 1
            return False
        self._queue.append(event)
        self._wake.set()
        return True

    def stats(self) -> HealthPublisherStats:
        """The counters now."""
        return HealthPublisherStats(
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
            self._task = asyncio.create_task(self._run(), name="flowops-health-events")

    async def stop(self, drain_timeout: float | None = None) -> int:
        """Refuse new events, send what is queued for up to ``drain_timeout`` seconds
        (``settings.drain_timeout`` by default), disconnect; return the events left
        undelivered (counted as dropped)."""
        timeout = self.settings.drain_timeout if drain_timeout is None else drain_timeout
        self._accepting = False
        self._closing = True
        self._wake.set()
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
            log.warning("health events: stopped with %d events undelivered", lost)
        self.dropped += lost
        self._queue.clear()
        self._held = []
        return lost

    # -- the sender task -------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.settings.retry_backoff
        while True:
            if not self._held:
                self._held = await self._next_batch()
                if not self._held:
                    return  # closing, and nothing left
            try:
                await self._deliver(self._held)
            except Exception as exc:
                await self._failed(exc, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_backoff_max)
                continue
            backoff = self.settings.retry_backoff
            self.sent += len(self._held)
            self._held = []

    async def _next_batch(self) -> list[HealthEvent]:
        queue = self._queue
        while not queue:
            if self._closing:
                return []
            self._wake.clear()
            await self._wake.wait()
        return [queue.popleft() for _ in range(min(len(queue), _BATCH))]

    async def _deliver(self, events: list[HealthEvent]) -> None:
        if not self._connected:
            await self._sink.open()
            if self.send_errors:
                log.info("health events: Kafka answers again")
            self._connected = True
        await self._sink.send(events)

    async def _failed(self, exc: Exception, backoff: float) -> None:
        """Disconnect, count, and say so (at the first failure of an outage, then quietly)."""
        first = self._connected or self.send_errors == 0
        await self._disconnect()
        self.send_errors += 1
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "health events: sending failed (%s); holding %d, %d queued; retrying in %g s",
            str(exc) or type(exc).__name__,
            len(self._held),
            len(self._queue),
            backoff,
            exc_info=not isinstance(exc, KafkaError | ServiceError | OSError | TimeoutError),
        )

    async def _disconnect(self) -> None:
        if self._connected:
            self._connected = False
            await self._sink.close()


class KafkaEventSink:
    """Health events to ``flowops.health`` through an :class:`~flowops.events.EventProducer`.

    Each :meth:`open` creates the topic when it is missing (unless ``create_topic`` is
    off) and makes a new producer; :meth:`send` publishes and waits for the broker's
    acknowledgements. ``client`` makes the aiokafka producer (tests pass a fake).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: HealthEventSettings,
        *,
        source: str = "/flowops/monitor",
        client: Callable[[], ProducerClient] | None = None,
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.source = source
        self._client = client or self._aiokafka
        self._producer: EventProducer | None = None

    async def open(self) -> None:
        kafka = self.kafka
        if self.settings.create_topic:
            await ensure_topics(
                kafka.bootstrap,
                kafka.partitions,
                replication=kafka.replication,
                topics=[TopicSpec(Topics.HEALTH)],
                timeout=self.settings.request_timeout,
            )
        producer = EventProducer(kafka.bootstrap, source=self.source, client=self._client())
        await producer.start()
        self._producer = producer

    async def send(self, events: Sequence[HealthEvent]) -> None:
        if self._producer is None:
            raise RuntimeError("open the sink first")
        for event in events:
            await self._producer.publish(event)
        await self._producer.flush()

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.stop(), self.settings.request_timeout)
        except Exception as exc:  # closing a producer to a broker that is gone: say, go on
            log.debug("health events: closing the producer: %s", exc)

    def _aiokafka(self) -> ProducerClient:
        kafka = self.kafka
        client: ProducerClient = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap,
            client_id=f"{kafka.client_id}-monitor",
            acks="all",
            compression_type=None if kafka.compression == "none" else kafka.compression,
            enable_idempotence=kafka.idempotence,
            linger_ms=0,
            request_timeout_ms=int(self.settings.request_timeout * 1000),
        )
        return client
