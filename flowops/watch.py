"""Tailing ``flowops.drift.alerts``: what ``flowops drift watch`` does, without the display.

:func:`tail_alerts` reads the topic without a consumer group (every watcher sees every
alert and commits nothing), from the end or from the beginning, and yields each alert
once: :class:`AlertFilter` keeps one model's alerts when asked, and drops an alert whose
``alert_id`` it has seen (a worker that restarts may publish an alert again, with the same
id). :func:`watch` runs it until ``max_alerts`` alerts, ``timeout`` seconds, Ctrl-C or
SIGTERM, and hands each alert to a ``show`` callback.

>>> from flowops.events import DriftAlert
>>> alert = DriftAlert(alert_id="a1", model="credit", version="3", feature="age",
...     test="ks", statistic=0.31, pvalue=0.0004, threshold=0.05, window_start=0.0,
...     window_end=60.0, window_index=0, n_reference=1000, n_current=500,
...     severity="critical", reference="profile", detected_at=61.5)
>>> only_credit = AlertFilter("credit")
>>> [only_credit.accept(b"credit", alert.to_json()) is not None for _ in range(2)]
[True, False]
>>> only_credit.stats
WatchStats(alerts=1, duplicates=1)
"""

from __future__ import annotations

import asyncio
import signal
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from flowops.errors import BrokerError, EventError

if TYPE_CHECKING:
    from flowops.config import KafkaSettings
    from flowops.events import DriftAlert

__all__ = ["REMEMBERED_IDS", "AlertFilter", "WatchStats", "tail_alerts", "watch"]

REMEMBERED_IDS: Final = 100_000
"""How many alert ids a watcher remembers to drop duplicates (the oldest are forgotten)."""

_POLL_MS: Final = 500
_FETCH_MAX_WAIT_MS: Final = 100  # Tansu holds a fetch this long even when data arrives
_END_PROBE_SECONDS: Final = 10.0


@dataclass
class WatchStats:
    """What a watcher let through and what it dropped as a duplicate."""

    alerts: int = 0
    duplicates: int = 0


class AlertFilter:
    """Decides, message by message, what a watcher shows: no I/O, so tests need no broker."""

    def __init__(self, model: str | None = None, *, remember: int = REMEMBERED_IDS) -> None:
        self.model = model
        self.stats = WatchStats()
        self._key = None if model is None else model.encode()
        self._remember = remember
        self._seen: OrderedDict[str, None] = OrderedDict()

    def accept(self, key: bytes | None, value: bytes | None) -> DriftAlert | None:
        """The alert in a message, or None for another model's alert or a duplicate.

        Raises :class:`~flowops.errors.EventError` for a message that is not a drift alert.
        """
        from flowops.events import DriftAlert

        if self._key is not None and key is not None and key != self._key:
            return None  # alerts are keyed by model: no need to decode the others
        if value is None:
            raise EventError("an empty message", event=DriftAlert.NAME, code="bad_json")
        alert = DriftAlert.from_json(value)
        if self.model is not None and alert.model != self.model:
            return None
        if not self._first_time(alert.alert_id):
            self.stats.duplicates += 1
            return None
        self.stats.alerts += 1
        return alert

    def _first_time(self, alert_id: str) -> bool:
        if alert_id in self._seen:
            self._seen.move_to_end(alert_id)
            return False
        self._seen[alert_id] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return True


async def tail_alerts(
    kafka: KafkaSettings,
    alerts: AlertFilter,
    *,
    from_beginning: bool = False,
    on_ready: Callable[[list[int]], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> AsyncGenerator[DriftAlert, None]:
    """The alerts ``alerts`` accepts, as they arrive, for as long as the caller reads.

    Creates the FlowOps topics that are missing first (so that the alerts topic has
    ``kafka.partitions`` partitions), assigns every partition of the alerts topic, and
    calls ``on_ready`` with them once it is positioned: an alert published after that is
    seen. A message that is not a drift alert goes to ``on_skip`` (a line saying where it
    is and why). Raises :class:`~flowops.errors.BrokerError` when the broker does not answer.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    from flowops.events import Topics, ensure_topics
    from flowops.kafka_security import client_options

    await ensure_topics(kafka, kafka.partitions, replication=kafka.replication)
    consumer = AIOKafkaConsumer(
        **client_options(kafka),
        client_id=f"{kafka.client_id}-watch",
        enable_auto_commit=False,
        fetch_max_wait_ms=_FETCH_MAX_WAIT_MS,
    )
    try:
        await consumer.start()
        partitions = sorted(consumer.partitions_for_topic(Topics.ALERTS) or ())
        if not partitions:
            await consumer.topics()  # fetches the metadata of every topic
            partitions = sorted(consumer.partitions_for_topic(Topics.ALERTS) or ())
        if not partitions:
            raise KafkaError(f"the broker names no partition of {Topics.ALERTS}")
        tps = [TopicPartition(Topics.ALERTS, p) for p in partitions]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await _seek_to_end(consumer, tps)
        for tp in tps:
            await consumer.position(tp)
    except KafkaError as exc:
        await consumer.stop()
        raise BrokerError(kafka.bootstrap, f"cannot read {Topics.ALERTS}: {exc}") from None
    try:
        if on_ready is not None:
            on_ready(partitions)
        while True:
            batches = await consumer.getmany(timeout_ms=_POLL_MS)
            for tp, messages in sorted(batches.items()):
                for message in messages:
                    alert = _accept(alerts, message, tp.partition, on_skip)
                    if alert is not None:
                        yield alert
    finally:
        await consumer.stop()


async def _seek_to_end(consumer: Any, tps: list[Any]) -> None:
    """Position every partition after its last message.

    Tansu 0.6 answers a ListOffsets request for the latest offset with one past the
    *first* offset of the partition's last record batch, so ``seek_to_end`` alone would
    replay the rest of that batch (the worker sends alerts in batches). A fetch reports
    the partition's true high watermark: fetch once from there, drop what came, and seek
    to it. With Apache Kafka both agree and this costs one fetch.
    """
    await consumer.seek_to_end(*tps)
    deadline = asyncio.get_running_loop().time() + _END_PROBE_SECONDS
    while any(consumer.highwater(tp) is None for tp in tps):
        if asyncio.get_running_loop().time() > deadline:
            break  # keep seek_to_end's answer for partitions that never reported one
        await consumer.getmany(*tps, timeout_ms=_FETCH_MAX_WAIT_MS)
    for tp in tps:
        highwater = consumer.highwater(tp)
        if highwater is not None:
            consumer.seek(tp, highwater)


def _accept(
    alerts: AlertFilter, message: Any, partition: int, on_skip: Callable[[str], None] | None
) -> DriftAlert | None:
    try:
        return alerts.accept(message.key, message.value)
    except EventError as exc:
        if on_skip is not None:
            on_skip(f"skipped partition {partition} offset {message.offset}: {exc}")
        return None


def watch(
    kafka: KafkaSettings,
    *,
    show: Callable[[DriftAlert], None],
    say: Callable[[str], None],
    model: str | None = None,
    from_beginning: bool = False,
    max_alerts: int | None = None,
    timeout: float | None = None,
) -> WatchStats:
    """Show alerts until ``max_alerts`` were shown, ``timeout`` seconds have passed since
    the watcher was ready, or Ctrl-C or SIGTERM; return what it let through and dropped.

    ``say`` gets a line when the watcher is ready and for each message it skips.
    Raises :class:`~flowops.errors.BrokerError` when the broker does not answer.
    """
    alerts = AlertFilter(model)
    # Ctrl-C or SIGTERM (each cancels the task): a normal way to stop
    with suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(_watch(kafka, alerts, show, say, from_beginning, max_alerts, timeout))
    return alerts.stats


async def _watch(
    kafka: KafkaSettings,
    alerts: AlertFilter,
    show: Callable[[DriftAlert], None],
    say: Callable[[str], None],
    from_beginning: bool,
    max_alerts: int | None,
    timeout: float | None,
) -> None:
    from flowops.events import Topics

    _cancel_on_signals()
    loop = asyncio.get_running_loop()
    deadline = asyncio.Timeout(None)

    def ready(partitions: list[int]) -> None:
        if timeout is not None:
            deadline.reschedule(loop.time() + timeout)
        start = "the beginning" if from_beginning else "the end"
        which = f"model {alerts.model}" if alerts.model is not None else "every model"
        say(
            f"watching {Topics.ALERTS} at {kafka.bootstrap} ({len(partitions)} partitions) "
            f"from {start}, {which}; Ctrl-C to stop"
        )

    stream = tail_alerts(kafka, alerts, from_beginning=from_beginning, on_ready=ready, on_skip=say)
    shown = 0
    try:
        async with deadline, aclosing(stream):
            async for alert in stream:
                show(alert)
                shown += 1
                if max_alerts is not None and shown >= max_alerts:
                    return
    except TimeoutError:
        if not deadline.expired():
            raise


def _cancel_on_signals() -> None:
    """SIGINT (Ctrl-C) and SIGTERM cancel the watcher's task, which then stops cleanly.

    Installed on the loop rather than left to Python's default, so that Ctrl-C works
    even where the shell started the command with SIGINT ignored (in the background).
    """
    task = asyncio.current_task()
    if task is None:
        return
    loop = asyncio.get_running_loop()
    # not possible outside the main thread, or on a platform without signals
    with suppress(NotImplementedError, RuntimeError, ValueError):
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
