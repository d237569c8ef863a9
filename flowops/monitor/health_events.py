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
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flowops.config import KafkaSettings
from flowops.events import EventProducer, HealthEvent, Topics
from flowops.events.producer import ProducerClient
from flowops.events.sender import (
    KafkaSink,
    QueuedPublisher,
    SenderNames,
    SenderStats,
    Sink,
    ordered_backoff,
)
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
_NAMES = SenderNames(log, "health events", "events", "flowops-health-events")


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

    _backoff_order = model_validator(mode="after")(ordered_backoff)


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


class EventSink(Sink[HealthEvent], Protocol):
    """Where events go: :class:`KafkaEventSink`, or a fake in tests.

    ``send`` returns once the events are stored, and raises otherwise. After a failure
    the publisher calls ``close``, and ``open`` before it tries again.
    """


@dataclass(frozen=True)
class HealthPublisherStats(SenderStats):
    """The publisher's counters at one moment, for ``/metrics``.

    ``invalid`` counts the results no event can carry (an empty target); they are logged.
    """


@dataclass(frozen=True, slots=True)
class _Last:
    status: HealthStatus
    at: float


class HealthEventPublisher(QueuedPublisher[HealthEvent]):
    """Health events from check results, queued and sent; see the module docstring.

    Call :meth:`record` from the event loop's thread. Events recorded before
    :meth:`start` wait in the queue.
    """

    names = _NAMES
    settings: HealthEventSettings

    def __init__(
        self, settings: HealthEventSettings, sink: EventSink, *, sleep: _Sleep = asyncio.sleep
    ) -> None:
        super().__init__(settings, sink, batch_size=_BATCH, sleep=sleep)
        self._last: dict[tuple[str, str], _Last] = {}

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

    def stats(self) -> HealthPublisherStats:
        """The counters now."""
        return self._stats(HealthPublisherStats)


class KafkaEventSink(KafkaSink[HealthEvent, EventProducer]):
    """Health events to ``flowops.health`` through an :class:`~flowops.events.EventProducer`.

    Each :meth:`open` creates the topic when it is missing (unless ``create_topic`` is
    off) and makes a new producer; :meth:`send` publishes and waits for the broker's
    acknowledgements. ``client`` makes the aiokafka producer (tests pass a fake).
    """

    names = _NAMES

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: HealthEventSettings,
        *,
        source: str = "/flowops/monitor",
        client: Callable[[], ProducerClient] | None = None,
    ) -> None:
        super().__init__(
            kafka,
            settings,
            source=source,
            topic=Topics.HEALTH,
            client_id=f"{kafka.client_id}-monitor",
            client=client,
        )

    def _make_producer(self, client: ProducerClient) -> EventProducer:
        return EventProducer(self.kafka.bootstrap, source=self.source, client=client)

    async def _publish(self, producer: EventProducer, events: Sequence[HealthEvent]) -> None:
        for event in events:
            await producer.publish(event)
