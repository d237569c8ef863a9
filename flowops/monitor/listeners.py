"""What the agent does with a round besides its metrics: alert rules and health events.

Neither makes a round wait: health events are queued (a down Kafka never blocks the
agent) and alerts are sent by a task of their own, one send at a time, each send also
carrying the resends and retries that came due (see :class:`~flowops.monitor.alerts.AlertSender`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from flowops.config import KafkaSettings
from flowops.monitor.agent import Round, RoundListener
from flowops.monitor.alerts import AlertEvaluator, AlertSender, AlertSettings
from flowops.monitor.health_events import HealthEventPublisher, HealthEventSettings
from flowops.monitor.metrics import MonitorMetrics

__all__ = ["AlertListener", "HealthListener", "listening"]

log = logging.getLogger("flowops.monitor")


class AlertListener:
    """Rounds into alert transitions, sent to Alertmanager and webhooks in the background."""

    def __init__(
        self, settings: AlertSettings, session: aiohttp.ClientSession, metrics: MonitorMetrics
    ) -> None:
        self.evaluator = AlertEvaluator(settings)
        self.sender = AlertSender(settings, session)
        self.metrics = metrics
        self._sending: set[asyncio.Task[None]] = set()

    async def on_round(self, round_: Round) -> None:
        now = round_.started_at
        changed = self.evaluator.evaluate(round_.results, now)
        firing = self.evaluator.firing()
        self.metrics.firing((a.labels["check"], a.labels["target"]) for a in firing)
        for alert in changed:
            log.warning(
                "alert %s %s: %s %s",
                alert.labels.get("alertname"),
                alert.status,
                alert.labels["check"],
                alert.labels["target"],
            )
        # the sender's lock keeps sends in the rounds' order
        task = asyncio.create_task(self.sender.send([*changed, *firing], now), name="alerts")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        """Let the sends under way finish (each bounded by the sender's timeouts and retries)."""
        await asyncio.gather(*self._sending, return_exceptions=True)


class HealthListener:
    """Rounds into health events on ``flowops.health`` (changes and heartbeats)."""

    def __init__(self, publisher: HealthEventPublisher) -> None:
        self.publisher = publisher

    async def on_round(self, round_: Round) -> None:
        self.publisher.record(round_.results, round_.started_at)


@asynccontextmanager
async def listening(
    kafka: KafkaSettings,
    alerts: AlertSettings,
    health: HealthEventSettings,
    session: aiohttp.ClientSession,
    metrics: MonitorMetrics,
) -> AsyncIterator[list[RoundListener]]:
    """The listeners the settings ask for, started; stopped (events drained, bounded)
    on the way out."""
    listeners: list[RoundListener] = []
    publisher: HealthEventPublisher | None = None
    alerting: AlertListener | None = None
    if health.enabled:
        publisher = HealthEventPublisher.for_kafka(kafka, health, source="/flowops/monitor")
        await publisher.start()
        listeners.append(HealthListener(publisher))
    if alerts.enabled:
        alerting = AlertListener(alerts, session, metrics)
        listeners.append(alerting)
    try:
        yield listeners
    finally:
        if alerting is not None:
            await alerting.close()
        if publisher is not None:
            unsent = await publisher.stop()
            if unsent:
                log.warning("%d health events not delivered at shutdown", unsent)
