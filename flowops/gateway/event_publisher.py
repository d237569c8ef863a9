"""The gateway's own events to ``flowops.gateway.events``: each change of a variant's
weight (:mod:`~flowops.gateway.weights`), sent as the traffic is: a bounded queue and a
sender task (:class:`~flowops.events.sender.QueuedPublisher`) with the ``gateway.publish``
settings, so a change never waits on Kafka, and one made while Kafka is down is
delivered once it is back. ``gateway.publish.enabled: false`` turns them off with the
traffic; the log line of each change stays.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from flowops.config import KafkaSettings
from flowops.events import EventProducer, Topics, VariantWeightEvent
from flowops.events.producer import ProducerClient
from flowops.events.sender import KafkaSink, QueuedPublisher, SenderNames, Sink
from flowops.gateway.publisher import PublishSettings

__all__ = ["GatewayEventPublisher", "KafkaGatewayEventSink"]

log = logging.getLogger("flowops.gateway")

_Sleep = Callable[[float], Awaitable[Any]]
_NAMES = SenderNames(log, "gateway events", "events", "flowops-gateway-events")
_BATCH = 100


class GatewayEventPublisher(QueuedPublisher[VariantWeightEvent]):
    """The queue of the gateway's events and the task that sends it."""

    names = _NAMES

    def __init__(
        self,
        settings: PublishSettings,
        sink: Sink[VariantWeightEvent],
        *,
        sleep: _Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(settings, sink, batch_size=_BATCH, sleep=sleep)

    @classmethod
    def for_kafka(
        cls, kafka: KafkaSettings, settings: PublishSettings, *, source: str = "/flowops/gateway"
    ) -> GatewayEventPublisher:
        """A publisher to the ``kafka`` settings' cluster; ``source`` is the ce_source."""
        return cls(settings, KafkaGatewayEventSink(kafka, settings, source=source))

    def offer(self, event: VariantWeightEvent) -> bool:
        """Queue ``event``; ``False`` (and counted) when it is dropped. Never waits."""
        return self._offer(event)


class KafkaGatewayEventSink(KafkaSink[VariantWeightEvent, EventProducer]):
    """Events to ``flowops.gateway.events`` through an :class:`~flowops.events.EventProducer`."""

    names = _NAMES

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: PublishSettings,
        *,
        source: str = "/flowops/gateway",
        client: Callable[[], ProducerClient] | None = None,
    ) -> None:
        super().__init__(
            kafka,
            settings,
            source=source,
            topic=Topics.GATEWAY,
            client_id=f"{kafka.client_id}-gateway-events",
            client=client,
        )

    def _make_producer(self, client: ProducerClient) -> EventProducer:
        return EventProducer(self.kafka.bootstrap, source=self.source, client=client)

    async def _publish(self, producer: EventProducer, events: Sequence[VariantWeightEvent]) -> None:
        for event in events:
            await producer.publish(event)
